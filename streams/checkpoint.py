"""Offsets of dm.events on their way to a commit: stored, then taken by a flush, then committed.

A batch's offsets may be committed only once its rows are stored *and* the windows it
touched are flushed (a commit before would let a crash lose them). The consumer tells
the checkpoint when a batch is stored (`stored`); a flush `take`s every offset stored so
far and, once the windows are written and the broker has the commit, confirms it
(`committed`), or hands the offsets back (`failed`) for the next flush to retry. Pure
bookkeeping: no broker, no store, no clock but the one it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


class Checkpoint:
    """Per partition: the next offset to commit, once stored; and what was last committed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stored: dict[int, int] = {}  # partition -> next offset to commit (stored, not yet taken by a flush)
        self.committed_offsets: dict[int, int] = {}  # partition -> the last next-offset the broker acknowledged
        self._taken_at = clock()  # when a flush last took offsets (flushes are timed from there)

    @property
    def pending(self) -> int:
        """Partitions with stored offsets waiting for the next flush and commit."""
        return len(self._stored)

    def holds(self, partitions: set[int]) -> bool:
        """Whether offsets of any of these partitions are stored and not yet taken by a flush."""
        return not partitions.isdisjoint(self._stored)

    def stored(self, processed: Mapping[int, int]) -> None:
        """A batch is stored: per partition, the last offset it processed (a later batch's is higher)."""
        for partition, offset in processed.items():
            self._stored[partition] = offset + 1

    def due(self, interval_s: float) -> bool:
        """Whether `interval_s` has passed since a flush last took offsets."""
        return self._clock() - self._taken_at >= interval_s

    def take(self) -> dict[int, int]:
        """Every stored offset, for a flush to make durable and commit (the next flush is timed from now)."""
        taken, self._stored = self._stored, {}
        self._taken_at = self._clock()
        return taken

    def committed(self, taken: Mapping[int, int]) -> None:
        """The flush wrote the windows and the broker acknowledged the commit of `taken`."""
        for partition, offset in taken.items():
            self.committed_offsets[partition] = max(offset, self.committed_offsets.get(partition, -1))

    def failed(self, taken: Mapping[int, int]) -> None:
        """The flush or the commit failed: `taken` waits for the next one, unless a batch stored since (its offset
        higher) took its place."""
        for partition, offset in taken.items():
            self._stored.setdefault(partition, offset)
