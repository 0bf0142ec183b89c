"""Replaying a JSONL file into dm.events, byte for byte, keyed as exchanges key their messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dmm.producer import EventProducer

_KEY_FIELD = {"listing": "product_id", "trade": "product_id", "usage": "product_id", "heartbeat": "exchange_id"}
_PROGRESS_EVERY_BYTES = 1 << 20


def line_key(line: bytes) -> bytes | None:
    """The contract key of a line that parses as a JSON object with the right string field, else None."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly nested
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return None
    field = _KEY_FIELD.get(obj["type"])
    value = obj.get(field) if field is not None else None
    if not isinstance(value, str):
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        return None


def replay_file(path: Path, producer: EventProducer, on_progress: Callable[[int], None] | None = None) -> int:
    """Publish every line of `path` (without its trailing b"\\n") and flush; return how many were delivered.

    `on_progress` receives byte counts read so far, in increments. Raises DeliveryError if any message was lost.
    """
    count = 0
    unreported = 0
    with path.open("rb") as lines:
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            producer.publish_raw(line, line_key(line))
            count += 1
            unreported += len(raw)
            if on_progress is not None and unreported >= _PROGRESS_EVERY_BYTES:
                on_progress(unreported)
                unreported = 0
    if on_progress is not None and unreported:
        on_progress(unreported)
    producer.flush()
    return count
