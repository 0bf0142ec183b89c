"""The JSON log line: the fields the tests, runbooks and log shippers read (`ts`, `level`, `logger`, `msg`, extras,
`exc`), one object per line."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import pytest

from dmm.logs import JsonFormatter, logging_config


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dmm.test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.removeHandler(handler)


def _entries(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_names_time_level_logger_message_and_the_extras_given(lines) -> None:
    logger, out = lines
    logger.warning("store write failed: %s", "超时", extra={"attempt": 3, "table": "trades", "empty": "", "none": None})
    [entry] = _entries(out)
    assert list(entry) == ["ts", "level", "logger", "msg", "attempt", "table"]
    assert entry["level"] == "warning"
    assert entry["logger"] == "dmm.test.logs"
    assert entry["msg"] == "store write failed: 超时"
    assert (entry["attempt"], entry["table"]) == (3, "trades")
    ts = datetime.fromisoformat(str(entry["ts"]))
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert len(str(entry["ts"]).split(".")[1]) == len("123+00:00")  # milliseconds
    assert "超时" in out.getvalue()  # not \\u-escaped


def test_an_exception_comes_last_as_its_traceback_and_odd_values_as_text(lines) -> None:
    logger, out = lines
    try:
        raise ValueError("bad batch")
    except ValueError:
        logger.critical("unexpected error", exc_info=True, extra={"offsets": range(3)})
    [entry] = _entries(out)
    assert list(entry)[-1] == "exc"
    assert "ValueError: bad batch" in str(entry["exc"])
    assert entry["level"] == "critical"
    assert entry["offsets"] == "range(0, 3)"


def test_the_text_format_when_json_is_off() -> None:
    config = logging_config(json_lines=False, level="INFO")
    assert config["formatters"]["main"] == {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    assert logging_config(json_lines=True, level="INFO")["formatters"]["main"] == {"()": JsonFormatter}
