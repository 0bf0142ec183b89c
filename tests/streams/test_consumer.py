"""The consumer service's own decisions (fetching and committing run against a real broker in tests/dmm)."""

from __future__ import annotations

import time
from typing import Any

from settings import Settings
from streams.consumer import EventConsumer


async def _unused(*_: object) -> Any:
    raise AssertionError("not called by these tests")


def test_windows_are_flushed_every_second_live_and_every_five_while_a_backlog_drains() -> None:
    consumer = EventConsumer(Settings(), _unused, _unused, _unused, _unused, holding=lambda: 0, stopped=lambda: None)
    consumer._last_commit = time.monotonic() - 2.0  # two seconds since the last flush and commit
    assert consumer.flush_due(backlog=False)
    assert not consumer.flush_due(backlog=True)
    consumer._last_commit = time.monotonic() - 5.5
    assert consumer.flush_due(backlog=True)
