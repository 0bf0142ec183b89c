"""The consumer service's own decisions (fetching and committing run against a real broker in tests/dmm)."""

from __future__ import annotations

from typing import Any

from settings import Settings
from streams.checkpoint import Checkpoint
from streams.consumer import EventConsumer


class _Unused:
    """A batch handler these tests never call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} not called by these tests")


def test_windows_are_flushed_every_second_live_and_every_five_while_a_backlog_drains() -> None:
    now = [0.0]
    consumer = EventConsumer(Settings(), _Unused())
    consumer.checkpoint = Checkpoint(clock=lambda: now[0])
    now[0] = 2.0  # two seconds since the last flush and commit
    assert consumer.flush_due(backlog=False)
    assert not consumer.flush_due(backlog=True)
    now[0] = 5.5
    assert consumer.flush_due(backlog=True)
