"""One-minute event-time market windows, computed by the worker itself.

Every accepted event within the allowed lateness marks its minute dirty. On a
timer the worker recomputes each dirty minute *from the stored events* and
upserts the result into `market_1m` (ReplacingMergeTree on the cell, newest
`updated_at` wins). Recomputing instead of adding deltas makes a flush
idempotent: a retry, a replay or a crash between flushes can never count an
event twice, and the aggregate always sums to the event tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import Store
from sinks.clickhouse.windows import MINUTE_MS, recompute


def window_start_ms(occurred_ms: int) -> int:
    return occurred_ms - occurred_ms % MINUTE_MS


class WindowFlusher:
    """Collects dirty minutes; `take` and `rebuild` recompute them in the store."""

    def __init__(self, store: Store, max_windows_per_statement: int = 500) -> None:
        self.store = store
        self.dirty: set[int] = set()
        self.max_windows = max_windows_per_statement

    def restore(self, state: StateReader) -> None:
        self.dirty.update(state.unflushed_windows())

    def take(self) -> list[int]:
        """The dirty minutes, to `rebuild`; minutes made dirty from now on wait for the next take."""
        windows, self.dirty = sorted(self.dirty), set()
        return windows

    def rebuild(self, windows: list[int]) -> int:
        """Recompute these minutes (may be run again after a failure: a recompute is idempotent); returns how many."""
        updated_at = datetime.now(UTC)
        for i in range(0, len(windows), self.max_windows):
            recompute(self.store, windows[i : i + self.max_windows], updated_at)
        return len(windows)
