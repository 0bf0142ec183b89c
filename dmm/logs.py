"""Structured logging: one JSON object per line (or readable text with DMM_LOG_JSON=false).

Each line: `ts` (UTC, milliseconds), `level` (lower case), `logger`, `msg`, then the record's `extra` fields
(empty ones left out) and `exc` (the traceback) last. python-json-logger does the record walking and the
JSON; this module only names the fields.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

_FIELDS = {"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"}
_ALWAYS = {"ts", "level", "logger", "msg"}


class JsonFormatter(_LibraryJsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields=_FIELDS,
            json_default=str,
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        exc = log_data.pop("exc", None)
        entry = {key: value for key, value in log_data.items() if key in _ALWAYS or value not in ("", None)}
        if exc:
            entry["exc"] = exc
        return entry


def logging_config(json_lines: bool, level: str) -> dict[str, Any]:
    """A dictConfig for the whole process (Faust's worker applies it too)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if json_lines else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr, "formatter": "main"}},
        "root": {"level": level, "handlers": ["stderr"]},
    }
