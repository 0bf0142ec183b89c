"""The simulation's agenda: actions due at event times, run strictly in time order.

Running one action at a time, earliest first, is what makes the output stream ordered by
event time without sorting; ties keep the order they were scheduled in (deterministic).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

Action = Callable[[int], object]  # called with its moment (ms); what it returns is not used


class Agenda:
    def __init__(self, start_ms: int) -> None:
        self._heap: list[tuple[int, int, Action]] = []
        self._order = itertools.count()
        self.now = start_ms

    def at(self, ms: int, action: Action) -> None:
        """Run `action(ms)` when event time reaches `ms`; the past cannot be scheduled."""
        if ms < self.now:
            raise ValueError(f"cannot schedule at {ms}, event time is already {self.now}")
        heapq.heappush(self._heap, (ms, next(self._order), action))

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_next(self) -> None:
        """Run the earliest due action."""
        ms, _, action = heapq.heappop(self._heap)
        self.now = ms
        action(ms)
