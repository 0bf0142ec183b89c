"""The market's event time when dm.events has several partitions: the slowest partition still sending.

Each partition's watermark is the latest occurred_at it delivered. Partitions are
consumed at different speeds (a backlog on one, a rebalance, a slow fetch), so the
latest time seen on *any* partition would run ahead of the others: their on-time
events would look late, their exchanges silent and their windows closed. The market
watermark is therefore the minimum over partitions, leaving out a partition that has
delivered nothing for `idle_ms` of wall-clock time (so a quiet partition cannot
freeze the market). It never goes back: a partition that joins later with older
events does not reopen what was closed. With one partition it is simply the latest
occurred_at, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class MarketClock:
    def __init__(self, idle_ms: int, wall_ms: Callable[[], float] = lambda: time.monotonic() * 1000) -> None:
        self.idle_ms = idle_ms
        self._wall_ms = wall_ms
        self._latest: dict[int, int] = {}  # partition -> latest occurred_at delivered (ms)
        self._heard: dict[int, float] = {}  # partition -> wall-clock ms it last delivered
        self.value = 0

    @property
    def partitions(self) -> dict[int, int]:
        """Per partition, the latest occurred_at it delivered (ms)."""
        return dict(self._latest)

    def restore(self, latest: dict[int, int]) -> None:
        """Per-partition watermarks as stored; every partition counts as heard from now."""
        now = self._wall_ms()
        self._latest = dict(latest)
        self._heard = {partition: now for partition in latest}
        self.value = min(latest.values(), default=0)

    def expect(self, partitions: set[int]) -> None:
        """The partitions this worker now owns: one not heard from yet holds the market where it is until it
        delivers or goes idle, so the first fetch (often from one partition only) cannot run ahead."""
        now = self._wall_ms()
        for partition in partitions - set(self._latest):
            self._latest[partition] = self.value
            self._heard[partition] = now
        for partition in set(self._latest) - partitions:
            del self._latest[partition], self._heard[partition]

    def advance(self, partition: int, at_ms: int) -> int:
        """An event of `partition` happened at `at_ms` (delivered now); returns the market watermark."""
        now = self._wall_ms()
        self._heard[partition] = now
        if at_ms > self._latest.get(partition, -1):
            self._latest[partition] = at_ms
        if len(self._latest) == 1:
            slowest = at_ms if at_ms > self.value else self.value
        else:
            sending = [latest for p, latest in self._latest.items() if now - self._heard[p] <= self.idle_ms]
            slowest = min(sending) if sending else self.value
        if slowest > self.value:
            self.value = slowest
        return self.value
