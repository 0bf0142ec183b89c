"""The one-minute market aggregate, recomputed from the stored events (idempotent by construction).

`recompute` rebuilds every cell of the given minutes from `trades`, `usage` and
`listings` (late rows excluded) and upserts them into `market_1m`
(ReplacingMergeTree on the cell, newest `updated_at` wins). Recomputing instead of
adding deltas means a retry, a replay or a crash between flushes can never count an
event twice, and the aggregate always sums to the event tables.
"""

from __future__ import annotations

from datetime import datetime

from sinks.clickhouse.store import Store

MINUTE_MS = 60_000

_CELL = "exchange_id, sector, category, source, venue, high_quality"


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


def recompute(store: Store, windows: list[int], updated_at: datetime) -> None:
    """Rebuild the given minutes (ms since the epoch) of `market_1m` in one statement."""
    store.command(recompute_sql(store.database, windows, updated_at))
