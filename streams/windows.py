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

from sinks.clickhouse import Store

MINUTE_MS = 60_000

_CELL = "exchange_id, sector, category, source, venue, high_quality"


def window_start_ms(occurred_ms: int) -> int:
    return occurred_ms - occurred_ms % MINUTE_MS


def recompute_sql(database: str, windows: list[int], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding every cell of the given minutes (ms since epoch)."""
    lo, hi = min(windows) // 1000, max(windows) // 1000 + 60
    minutes = ", ".join(str(w // 1000) for w in sorted(windows))
    span = (
        f"occurred_at >= toDateTime64({lo}, 6, 'UTC') AND occurred_at < toDateTime64({hi}, 6, 'UTC') "
        f"AND late = 0 AND toUnixTimestamp(toStartOfMinute(occurred_at)) IN ({minutes})"
    )
    stamp = updated_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"""
INSERT INTO {database}.market_1m
SELECT
    window_start, {_CELL},
    countIf(kind = 'trade') AS trades,
    sumIf(amount, kind = 'trade') AS traded_amount,
    sumIf(quantity, kind = 'trade') AS quantity,
    sumIf(data_bytes, kind = 'trade') AS data_bytes,
    uniqExactIf(buyer_id, kind = 'trade') AS buyers,
    uniqExactIf(seller_id, kind = 'trade') AS sellers,
    sumIf(calls, kind = 'usage') AS usage_calls,
    sumIf(bytes, kind = 'usage') AS usage_bytes,
    countIf(kind = 'listing') AS new_listings,
    toDateTime64('{stamp}', 3, 'UTC') AS updated_at
FROM
(
    SELECT 'trade' AS kind, toStartOfMinute(occurred_at) AS window_start, exchange_id, sector, category, source,
           venue, high_quality, amount, quantity, ifNull(data_bytes, 0) AS data_bytes, buyer_id, seller_id,
           toUInt64(0) AS calls, toUInt64(0) AS bytes
    FROM {database}.trades FINAL WHERE {span}
    UNION ALL
    SELECT 'usage', toStartOfMinute(occurred_at), exchange_id, sector, category, source,
           '', high_quality, toDecimal128(0, 2), toUInt64(0), toUInt64(0), buyer_id, '', calls, bytes
    FROM {database}.usage FINAL WHERE {span}
    UNION ALL
    SELECT 'listing', toStartOfMinute(occurred_at), exchange_id, ifNull(sector, 'unknown'),
           ifNull(category, 'unknown'), ifNull(source, 'unknown'), '', high_quality, toDecimal128(0, 2),
           toUInt64(0), toUInt64(0), '', '', toUInt64(0), toUInt64(0)
    FROM {database}.listings FINAL WHERE {span} AND action = 'list'
)
GROUP BY window_start, {_CELL}
"""


def unflushed_windows_sql(database: str) -> str:
    """Minutes holding events stored after the last flush began (a crash may have skipped them)."""
    since = f"(SELECT max(updated_at) FROM {database}.market_1m) - INTERVAL 10 SECOND"
    return " UNION DISTINCT ".join(
        f"SELECT DISTINCT toUnixTimestamp(toStartOfMinute(occurred_at)) * 1000 AS window_ms "
        f"FROM {database}.{table} WHERE late = 0 AND ingested_at >= {since}"
        for table in ("trades", "usage", "listings")
    )


class WindowFlusher:
    """Collects dirty minutes; `flush` rebuilds them in the store."""

    def __init__(self, store: Store, max_windows_per_statement: int = 500) -> None:
        self.store = store
        self.dirty: set[int] = set()
        self.max_windows = max_windows_per_statement

    def touch(self, occurred_ms: int) -> None:
        self.dirty.add(window_start_ms(occurred_ms))

    def restore(self) -> None:
        self.dirty.update(int(r["window_ms"]) for r in self.store.rows(unflushed_windows_sql(self.store.database)))

    def flush(self) -> int:
        """Recompute every dirty minute; returns how many. Dirty set is kept if the store fails."""
        if not self.dirty:
            return 0
        windows = sorted(self.dirty)
        updated_at = datetime.now(UTC)
        for i in range(0, len(windows), self.max_windows):
            self.store.command(recompute_sql(self.store.database, windows[i : i + self.max_windows], updated_at))
        self.dirty.difference_update(windows)
        return len(windows)
