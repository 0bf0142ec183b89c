"""The market aggregates' rows: one-minute cells written whole, or recomputed from the stored events.

A row of `market_1m` is always a cell's whole total, never a delta (ReplacingMergeTree
on the cell, newest `updated_at` wins), so a retry, a replay or a crash between
flushes can never count an event twice. `write_cells` stores totals the worker kept
itself (`streams.windows`); `recompute_minutes` rebuilds every cell of the given
minutes from `trades`, `usage` and `listings` (late rows excluded), `recompute_hours`
hours (`market_1h`) from their minutes and `recompute_days` China days (`market_1d`)
from their hours, then `recompute_console_days` the console's days (`console_1d`) from those.
`recompute_public_days` rebuilds China days of `public_1d` (public data delivered, per product) from the events,
`recompute_public_months` their China months (`public_1mo`) from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import NamedTuple

import pyarrow as pa

from models.clock import china_day
from sinks.clickhouse.store import Store

MINUTE_MS = 60_000
HOUR_MS = 3_600_000

CHINA = "Asia/Shanghai"  # the day tables' calendar (`models.clock.CHINA_STANDARD_TIME`)
PUBLIC_DAYS_PER_STATEMENT = 31  # a rebuild of `public_1d` reads its days' events: a month at most at once
CELL = ("exchange_id", "sector", "category", "source", "venue", "high_quality")
_CELL = ", ".join(CELL)


class Measure(NamedTuple):
    """One measure of a market window cell, declared once: its column (in `market_1m` and, when it adds up over
    minutes, `market_1h` and `market_1d`), its type, and a minute's value from the stored events (an aggregate
    over the union of trades, usage and new listings that `minute_cells_sql` reads, told apart by `kind`)."""

    column: str
    type: pa.DataType
    of_events: str
    adds_up: bool = True  # an hour's (a day's) value is the sum of its minutes': distinct counts do not


MEASURES = (  # in the tables' column order
    Measure("trades", pa.uint64(), "countIf(kind = 'trade')"),
    Measure("traded_amount", pa.decimal128(38, 2), "sumIf(amount, kind = 'trade')"),
    Measure("quantity", pa.uint64(), "sumIf(quantity, kind = 'trade')"),
    Measure("data_bytes", pa.uint64(), "sumIf(data_bytes, kind = 'trade')"),
    Measure("buyers", pa.uint64(), "uniqExactIf(buyer_id, kind = 'trade')", adds_up=False),
    Measure("sellers", pa.uint64(), "uniqExactIf(seller_id, kind = 'trade')", adds_up=False),
    Measure("usage_calls", pa.uint64(), "sumIf(calls, kind = 'usage')"),
    Measure("usage_bytes", pa.uint64(), "sumIf(bytes, kind = 'usage')"),
    Measure("usage_records", pa.uint64(), "countIf(kind = 'usage')"),
    Measure("new_listings", pa.uint64(), "countIf(kind = 'listing')"),
)
ADDED_UP = tuple(measure.column for measure in MEASURES if measure.adds_up)  # the measures of every grain

MARKET_1M = pa.schema(
    [
        ("window_start", pa.timestamp("s", tz="UTC")),
        *((column, pa.uint8() if column == "high_quality" else pa.string()) for column in CELL),
        *((measure.column, measure.type) for measure in MEASURES),
        ("updated_at", pa.timestamp("ms", tz="UTC")),
    ]
)
_MINUTE_ONLY = {measure.column for measure in MEASURES if not measure.adds_up}
MARKET_1H = pa.schema([field for field in MARKET_1M if field.name not in _MINUTE_ONLY])
MARKET_1D = pa.schema([pa.field("day", pa.date32()), *list(MARKET_1H)[1:]])
_OF_EVENTS = ",\n    ".join(f"{measure.of_events} AS {measure.column}" for measure in MEASURES)  # a minute's
_SUMMED = ", ".join(f"sum({column}) AS {column}" for column in ADDED_UP)  # an hour from its minutes, a day its hours


def dates_sql(days: Iterable[date]) -> str:
    """Days as ClickHouse Date literals, comma-separated (for `IN (...)`), in the order given."""
    return ", ".join(f"toDate('{day.isoformat()}')" for day in days)


def _stamp(updated_at: datetime) -> str:
    return f"toDateTime64('{updated_at.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"


def recompute_sql(database: str, windows: list[int], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding every cell of the given minutes (ms since epoch)."""
    return f"INSERT INTO {database}.market_1m {minute_cells_sql(database, windows, updated_at)}"


def minute_cells_sql(database: str, windows: list[int], updated_at: datetime) -> str:
    """SELECT of every cell of the given minutes (ms since epoch) from the stored events, as `market_1m` holds
    them (the tests compare the worker's own totals with it)."""
    lo, hi = min(windows) // 1000, max(windows) // 1000 + 60
    minutes = ", ".join(str(w // 1000) for w in sorted(windows))
    span = (
        f"occurred_at >= toDateTime64({lo}, 6, 'UTC') AND occurred_at < toDateTime64({hi}, 6, 'UTC') "
        f"AND late = 0 AND toUnixTimestamp(toStartOfMinute(occurred_at)) IN ({minutes})"
    )
    return f"""
SELECT
    window_start, {_CELL},
    {_OF_EVENTS},
    {_stamp(updated_at)} AS updated_at
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


def recompute_hours_sql(database: str, hours: list[int], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding the given hours (ms since the epoch) of market_1h from market_1m."""
    starts = ", ".join(str(h // 1000) for h in sorted(hours))
    lo, hi = min(hours) // 1000, max(hours) // 1000 + 3600
    return (
        f"INSERT INTO {database}.market_1h SELECT toStartOfHour(window_start) AS hour, {_CELL}, {_SUMMED}, "
        f"{_stamp(updated_at)} AS updated_at FROM {database}.market_1m FINAL "
        f"WHERE window_start >= toDateTime({lo}, 'UTC') AND window_start < toDateTime({hi}, 'UTC') "
        f"AND toUnixTimestamp(toStartOfHour(window_start)) IN ({starts}) GROUP BY hour, {_CELL}"
    )


def recompute_days_sql(database: str, days: list[date], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding the given China Standard Time days of market_1d from market_1h."""
    listed = dates_sql(sorted(days))
    return (
        f"INSERT INTO {database}.market_1d SELECT toDate(window_start, '{CHINA}') AS day, {_CELL}, "
        f"{_SUMMED}, {_stamp(updated_at)} AS updated_at FROM {database}.market_1h FINAL "
        f"WHERE toDate(window_start, '{CHINA}') IN ({listed}) GROUP BY day, {_CELL}"
    )


def recompute_console_days_sql(database: str, days: list[date], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding the given China days of console_1d from market_1d (a cell of usage or listings
    alone gives a row of zeros: every day market_1d holds is in console_1d, so its latest `updated_at` is the
    flush's)."""
    listed = dates_sql(sorted(days))
    return _console_days(database, f"day IN ({listed})", updated_at)


def missing_console_days_sql(database: str, updated_at: datetime) -> str:
    """INSERT ... SELECT of the days market_1d holds and console_1d does not (all of them in a store created
    before it): reads the days' keys, not their rows, once every day is there."""
    return _console_days(
        database,
        f"day IN (SELECT DISTINCT day FROM {database}.market_1d) "
        f"AND day NOT IN (SELECT DISTINCT day FROM {database}.console_1d)",
        updated_at,
    )


def _console_days(database: str, days: str, updated_at: datetime) -> str:
    return (
        f"INSERT INTO {database}.console_1d SELECT day, exchange_id, sector, sum(trades), sum(traded_amount), "
        f"sumIf(traded_amount, venue = 'on_exchange'), sumIf(traded_amount, high_quality = 1), sum(usage_records), "
        f"sum(usage_calls), sum(usage_bytes), {_stamp(updated_at)} "
        f"FROM {database}.market_1d FINAL WHERE {days} GROUP BY day, exchange_id, sector"
    )


def recompute_public_days_sql(database: str, days: list[date], updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding the given China days of public_1d from the on-time trades and usage of `source =
    public` (the console reads the late ones raw), each day with its mark: a row of product '' and zeros, so a day
    rebuilt with nothing delivered is told from a day never rebuilt."""
    ordered = sorted(days)
    listed = dates_sql(ordered)
    lo = f"toDateTime64('{ordered[0].isoformat()} 00:00:00', 6, '{CHINA}')"
    hi = f"toDateTime64('{ordered[-1].isoformat()} 00:00:00', 6, '{CHINA}') + INTERVAL 1 DAY"
    rows = (
        f"occurred_at >= {lo} AND occurred_at < {hi} AND toDate(occurred_at, '{CHINA}') IN ({listed}) "
        f"AND late = 0 AND source = 'public'"
    )
    return (
        f"INSERT INTO {database}.public_1d SELECT day, product_id, sum(trades), sum(amount), sum(calls), "
        f"{_stamp(updated_at)} FROM ("
        f"SELECT toDate(occurred_at, '{CHINA}') AS day, product_id, toUInt64(1) AS trades, amount, "
        f"toUInt64(0) AS calls FROM {database}.trades FINAL WHERE {rows} "
        f"UNION ALL SELECT toDate(occurred_at, '{CHINA}'), product_id, 0, toDecimal128(0, 2), calls "
        f"FROM {database}.usage FINAL WHERE {rows} "
        f"UNION ALL SELECT arrayJoin([{listed}]), '', 0, toDecimal128(0, 2), 0"
        f") GROUP BY day, product_id"
    )


def stale_public_days_sql(database: str) -> str:
    """The China days whose `public_1d` is older than their `console_1d` (a flush wrote them since) or missing (a
    store created before the table), as `day` (YYYY-MM-DD): `public_1d` holds all of a day's on-time rows once it
    is rebuilt after the day's last flush. Reads the days' stamps only (their marks' and `console_1d`'s)."""
    return (
        f"SELECT toString(day) AS day FROM (SELECT day, max(updated_at) AS flushed FROM {database}.console_1d "
        f"GROUP BY day) AS c LEFT JOIN (SELECT day, max(updated_at) AS built FROM {database}.public_1d "
        f"WHERE product_id = '' GROUP BY day) AS p USING (day) WHERE p.built < c.flushed ORDER BY day"
    )


def recompute_public_months_sql(database: str, month: date, updated_at: datetime) -> str:
    """INSERT ... SELECT rebuilding the China month starting on `month` of public_1mo from its days in public_1d (as
    they are now: the console reads the month only while none of them is rebuilt after it), with its mark."""
    first = f"toDate('{month.isoformat()}')"
    return (
        f"INSERT INTO {database}.public_1mo SELECT {first} AS month, product_id, sum(trades), sum(amount), "
        f"sum(calls), {_stamp(updated_at)} FROM (SELECT product_id, trades, amount, calls FROM {database}.public_1d "
        f"FINAL WHERE day >= {first} AND day < {first} + INTERVAL 1 MONTH AND product_id != '' "
        f"UNION ALL SELECT '', 0, toDecimal128(0, 2), 0) GROUP BY product_id"
    )


def stale_public_months_sql(database: str) -> str:
    """The China months (their first day, YYYY-MM-DD) whose `public_1mo` mark is older than the newest `public_1d`
    mark of their days, or missing (a flush stopped between the two, a store created before the table). Reads the
    marks only."""
    return (
        f"SELECT toString(month) AS month FROM (SELECT toStartOfMonth(day) AS month, max(updated_at) AS days_built "
        f"FROM {database}.public_1d WHERE product_id = '' GROUP BY month) AS d LEFT JOIN (SELECT month, "
        f"max(updated_at) AS built FROM {database}.public_1mo WHERE product_id = '' GROUP BY month) AS m "
        f"USING (month) WHERE m.built < d.days_built ORDER BY month"
    )


def write_cells(store: Store, table: str, cells: pa.Table) -> None:
    """Whole totals of cells of `market_1m`, `market_1h` or `market_1d` (`MARKET_1M`, `MARKET_1H`, `MARKET_1D`'s
    columns), stamped with their `updated_at`."""
    stamp = cells.column("updated_at")[0].value
    store.insert(table, cells, f"{table}:{stamp}:{cells.num_rows}")


def recompute_minutes(store: Store, windows: list[int], updated_at: datetime) -> None:
    """Rebuild every cell of the given minutes (ms since the epoch) of `market_1m` from the stored events."""
    store.command(recompute_sql(store.database, windows, updated_at))


def recompute_hours(store: Store, hours: list[int], updated_at: datetime) -> None:
    """Rebuild every cell of the given hours (ms since the epoch) of `market_1h` from `market_1m`."""
    store.command(recompute_hours_sql(store.database, hours, updated_at))


def recompute_days(store: Store, days: list[int], updated_at: datetime) -> None:
    """Rebuild every cell of the given China days (their start, ms since the epoch) of `market_1d` from
    `market_1h`."""
    store.command(recompute_days_sql(store.database, _china_dates(days), updated_at))


def recompute_console_days(store: Store, days: list[int], updated_at: datetime) -> None:
    """Rebuild the given China days (their start, ms since the epoch) of `console_1d` from `market_1d`."""
    store.command(recompute_console_days_sql(store.database, _china_dates(days), updated_at))


def _china_dates(days: list[int]) -> list[date]:
    """China days given by their start (ms since the epoch, as the worker's windows are) as the dates the day
    tables are keyed by."""
    return [china_day(day) for day in days]


def fill_console_days(store: Store, updated_at: datetime) -> None:
    """Fill `console_1d` with the days of `market_1d` it lacks (a store created before it)."""
    store.command(missing_console_days_sql(store.database, updated_at))


def recompute_public_days(store: Store, days: list[int], updated_at: datetime) -> None:
    """Rebuild the given China days (their start, ms since the epoch) of `public_1d` from the stored events, a
    month of them at most per statement (each reads its days' events)."""
    dates = _china_dates(sorted(days))
    for i in range(0, len(dates), PUBLIC_DAYS_PER_STATEMENT):
        store.command(recompute_public_days_sql(store.database, dates[i : i + PUBLIC_DAYS_PER_STATEMENT], updated_at))


def recompute_public_months(store: Store, days: list[int], updated_at: datetime) -> None:
    """Rebuild the China months holding the given China days (their start, ms since the epoch) of `public_1mo` from
    `public_1d`, a month per statement (each reads its days' rows)."""
    for month in sorted({day.replace(day=1) for day in _china_dates(days)}):
        store.command(recompute_public_months_sql(store.database, month, updated_at))
