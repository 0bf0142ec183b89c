"""File output: the stream as JSONL, one event per line, exactly the bytes that would be published."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dmm.simulator.wire import Message


def write_jsonl(messages: Iterable[Message], path: Path) -> int:
    """Write each message's value as one line; returns how many lines were written."""
    count = 0
    with path.open("wb") as out:
        for message in messages:
            out.write(message.value + b"\n")
            count += 1
    return count
