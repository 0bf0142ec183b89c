"""The market's event time when dm.events has several partitions: the slowest partition with a backlog.

Each partition's watermark is the latest occurred_at it delivered. Partitions are
consumed at different speeds (a backlog on one, a rebalance, a fetch that brings one
partition first), so the latest time seen on *any* partition would run ahead of the
others: their on-time events would look late, their exchanges silent, their windows
closed. The market watermark is therefore the minimum over partitions that still
hold something back:
- a partition *caught up* (everything it holds was processed) has nothing older
  coming that is not genuinely late, so it does not hold the market back until it
  delivers again;
- a partition that delivered nothing for `idle_ms` of wall-clock time does not either
  (a stuck fetch cannot freeze the market).
When every partition is caught up, the watermark is the latest occurred_at seen
anywhere. It never goes back: a partition that joins later with older events does
not reopen what was closed. With one partition this is exactly the latest
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
        self._caught_up: set[int] = set()  # partitions with nothing left to deliver, as of the last batch
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
        self._caught_up = set()
        self.value = min(latest.values(), default=0)

    def expect(self, partitions: set[int]) -> None:
        """The partitions this worker now owns: one not heard from yet holds the market where it is until it
        delivers, is found caught up, or goes idle, so the first fetch (often one partition's) cannot run ahead."""
        now = self._wall_ms()
        for partition in partitions - set(self._latest):
            self._latest[partition] = self.value
            self._heard[partition] = now
        for partition in set(self._latest) - partitions:
            del self._latest[partition], self._heard[partition]
            self._caught_up.discard(partition)

    def alone(self, partition: int) -> bool:
        """No other partition holds the market's event time: it is then the latest event time `partition` gave."""
        return not self._latest or (len(self._latest) == 1 and partition in self._latest)

    def advance(self, partition: int, at_ms: int, peeked: int | None = None) -> int:
        """An event of `partition` happened at `at_ms` (delivered now); returns the market watermark.
        `peeked`: what `peek` gave for this very event, if the caller asked already (saves asking twice)."""
        self.value = self.peek(partition, at_ms) if peeked is None else peeked
        self._heard[partition] = self._wall_ms()
        self._caught_up.discard(partition)
        if at_ms > self._latest.get(partition, -1):
            self._latest[partition] = at_ms
        return self.value

    def peek(self, partition: int, at_ms: int) -> int:
        """The market watermark `advance` would give, without recording the event."""
        if self.alone(partition):
            return max(self.value, at_ms)
        latest = self._latest
        now = self._wall_ms()
        own = latest.get(partition, -1)
        slowest = max(own, at_ms)
        caught_up, heard, idle_ms = self._caught_up, self._heard, self.idle_ms
        for p, newest in latest.items():  # per event: a plain loop, the cheap test first
            if newest < slowest and p != partition and p not in caught_up and now - heard[p] <= idle_ms:
                slowest = newest
        return max(slowest, self.value)

    def heard_at(self, partition: int, wall_ms: float) -> None:
        """`partition` last delivered at `wall_ms`, as someone else saw it (the market stage reads the store
        later than the rows were stored: the time it observes them says nothing of the partition)."""
        if partition in self._heard:
            self._heard[partition] = wall_ms

    def is_quiet(self, partition: int) -> bool:
        """Delivered nothing for `idle_ms` of wall-clock time (a partition never heard from is not quiet)."""
        heard = self._heard.get(partition)
        return heard is not None and self._wall_ms() - heard > self.idle_ms

    def caught_up(self, partitions: set[int]) -> int:
        """After a batch: these partitions have nothing left to deliver. Returns the market watermark."""
        self._caught_up |= partitions & set(self._latest)
        now = self._wall_ms()
        holding = [
            newest
            for p, newest in self._latest.items()
            if p not in self._caught_up and now - self._heard[p] <= self.idle_ms
        ]
        candidate = min(holding) if holding else max(self._latest.values(), default=0)
        self.value = max(self.value, candidate)
        return self.value
