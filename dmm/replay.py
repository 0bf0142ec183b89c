"""Replaying a JSONL file into dm.events, byte for byte, keyed (and signed, given keys) as exchanges send them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmm.producer import EventProducer
from models.keys import KeyRing, SigningKey

_KEY_FIELD = {"listing": "product_id", "trade": "product_id", "usage": "product_id", "heartbeat": "exchange_id"}
_PROGRESS_EVERY_BYTES = 1 << 20


def line_key(line: bytes) -> bytes | None:
    """The contract key of a line that parses as a JSON object with the right string field, else None."""
    return _key(_document(line))


def line_signing_key(line: bytes, keys: KeyRing) -> SigningKey | None:
    """The key `dmm replay --keys` signs a line with: the first of its exchange's in the keys file; None (sent
    unsigned) for a line that is no JSON object or names an exchange without a key."""
    return _signing_key(_document(line), keys)


def replay_file(
    path: Path,
    producer: EventProducer,
    on_progress: Callable[[int], None] | None = None,
    keys: KeyRing | None = None,
) -> int:
    """Publish every line of `path` (without its trailing b"\\n") and flush; return how many were delivered.

    `keys`: sign each line with its exchange's key (`line_signing_key`). `on_progress` receives byte counts read
    so far, in increments. Raises DeliveryError if any message was lost.
    """
    count = 0
    unreported = 0
    with path.open("rb") as lines:
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            document = _document(line)
            producer.publish_raw(line, _key(document), _signing_key(document, keys) if keys is not None else None)
            count += 1
            unreported += len(raw)
            if on_progress is not None and unreported >= _PROGRESS_EVERY_BYTES:
                on_progress(unreported)
                unreported = 0
    if on_progress is not None and unreported:
        on_progress(unreported)
    producer.flush()
    return count


def _document(line: bytes) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is none (not JSON, not UTF-8, absurdly nested, not an object)."""
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _signing_key(document: dict[str, Any] | None, keys: KeyRing) -> SigningKey | None:
    return keys.signing_key(document.get("exchange_id")) if document is not None else None


def _key(document: dict[str, Any] | None) -> bytes | None:
    """The contract key of a parsed line: its type's key field, when that is a string."""
    if document is None or not isinstance(document.get("type"), str):
        return None
    field = _KEY_FIELD.get(document["type"])
    value = document.get(field) if field is not None else None
    if not isinstance(value, str):
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        return None
