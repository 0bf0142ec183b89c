"""Synthetic market history generated inside ClickHouse, for timing regulator questions at scale.

`dmm bench --query-rows N` needs N stored trades (100M: a year of a large market) in
minutes, which no Python producer can give. ClickHouse makes them itself from
`numbers()`, in chunks, with the exchanges, sectors and dimensions of the real tables (and
the heartbeats the exchanges send meanwhile);
the minute, hour and day rollups (and the console's and the public data's days) are then
built day by day with the worker's own recompute statements. The rows are plausible, not a
simulation: this is for timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import get_args

from models.clock import CHINA_STANDARD_TIME
from models.events import Category, Pricing, Source
from sinks.clickhouse.store import Store
from sinks.clickhouse.windows import (
    recompute_console_days_sql,
    recompute_days_sql,
    recompute_hours_sql,
    recompute_public_days_sql,
    recompute_public_months_sql,
    recompute_sql,
)

CHUNK_ROWS = 5_000_000
PRODUCTS = 50_000  # the synthetic trades' and usage's products, each listed once (`insert_listings`)
HEARTBEAT_EVERY_S = 10  # as the simulator's exchanges send them
HEARTBEAT_DAYS = 90  # the heartbeats table's TTL keeps this long of them


def _pick(name: str, values: list[str], expression: str, parameters: dict[str, str]) -> str:
    """One of `values`, chosen by an integer expression; the values are added to `parameters` (named `name_i`)."""
    named = {f"{name}_{index}": value for index, value in enumerate(values)}
    parameters.update(named)
    listed = ", ".join(f"{{{placeholder}:String}}" for placeholder in named)
    return f"[{listed}][1 + ({expression}) % {len(values)}]"


def _spread(rows: int, start: datetime, days: int) -> Iterator[tuple[str, str, int]]:
    """`rows` events spread evenly over `days` days from `start`, in chunks: per chunk, its row number as SQL (over
    `numbers(count)`), its event time in seconds since the epoch as SQL, and its row count."""
    for first in range(0, rows, CHUNK_ROWS):
        n = f"(number + {first})"
        yield n, f"{int(start.timestamp())} + intDiv({n} * {days * 86_400}, {rows})", min(CHUNK_ROWS, rows - first)


def insert_trades(
    store: Store, rows: int, start: datetime, days: int, exchanges: list[str], sectors: list[str],
    progress: Callable[[int], None] = lambda done: None,
) -> None:
    """`rows` trades spread evenly over `days` days from `start`, inserted in chunks, each stored (`ingested_at`)
    when it occurred, as a live market's would be."""
    db, done = store.database, 0
    for n, at, count in _spread(rows, start, days):
        chosen: dict[str, str] = {}
        store.command(
            f"INSERT INTO {db}.trades (exchange_id, event_id, occurred_at, trade_id, product_id, buyer_id, seller_id, "
            "price, quantity, amount, currency, venue, purpose, data_bytes, sector, category, source, high_quality, "
            "late, src_partition, src_offset, ingested_at) "
            f"SELECT {_pick('exchange', exchanges, f'cityHash64({n}, 1)', chosen)} AS exchange_id, "
            f"concat('SYN-T-', toString({n})), "
            f"toDateTime64({at}, 6, 'UTC'), concat('SYN-', toString({n})), "
            f"concat('SYN-P-', toString(cityHash64({n}, 2) % {PRODUCTS})), "
            f"concat('B', toString(cityHash64({n}, 3) % 200000)), concat('S', toString(cityHash64({n}, 4) % 20000)), "
            f"toDecimal128(100 + cityHash64({n}, 5) % 100000, 2) AS p, "
            f"1 + cityHash64({n}, 6) % 5 AS q, p * q, 'CNY', "
            f"if(cityHash64({n}, 7) % 10 < 7, 'on_exchange', 'off_exchange_registered'), "
            f"{_pick('purpose', ['commercial', 'research', 'public_governance'], f'cityHash64({n}, 8)', chosen)}, "
            f"cityHash64({n}, 9) % 1000000000, {_pick('sector', sectors, f'cityHash64({n}, 10)', chosen)}, "
            f"{_pick('category', list(get_args(Category)), f'cityHash64({n}, 11)', chosen)}, "
            f"{_pick('source', list(get_args(Source)), f'cityHash64({n}, 12)', chosen)}, "
            f"toUInt8(cityHash64({n}, 13) % 10 < 4), 0, 0, {n}, "
            f"toDateTime64({at}, 3, 'UTC') "
            f"FROM numbers({count})",
            chosen,
        )
        done += count
        progress(done)


def insert_usage(
    store: Store, rows: int, start: datetime, days: int, exchanges: list[str], sectors: list[str],
    progress: Callable[[int], None] = lambda done: None,
) -> None:
    """`rows` usage events spread evenly over `days` days from `start`, on the synthetic trades' products, inserted
    in chunks, each stored when it occurred (the console's metering and public supply read them)."""
    db, done = store.database, 0
    for n, at, count in _spread(rows, start, days):
        chosen: dict[str, str] = {}
        store.command(
            f"INSERT INTO {db}.usage (exchange_id, event_id, occurred_at, product_id, buyer_id, calls, bytes, sector, "
            "category, source, high_quality, late, src_partition, src_offset, ingested_at) "
            f"SELECT {_pick('exchange', exchanges, f'cityHash64({n}, 21)', chosen)}, concat('SYN-U-', toString({n})), "
            f"toDateTime64({at}, 6, 'UTC'), concat('SYN-P-', toString(cityHash64({n}, 22) % {PRODUCTS})), "
            f"concat('B', toString(cityHash64({n}, 23) % 200000)), 1 + cityHash64({n}, 24) % 1000, "
            f"cityHash64({n}, 25) % 10000000, {_pick('sector', sectors, f'cityHash64({n}, 26)', chosen)}, "
            f"{_pick('category', list(get_args(Category)), f'cityHash64({n}, 27)', chosen)}, "
            f"{_pick('source', list(get_args(Source)), f'cityHash64({n}, 28)', chosen)}, "
            f"toUInt8(cityHash64({n}, 29) % 10 < 4), 0, 1, {n}, toDateTime64({at}, 3, 'UTC') FROM numbers({count})",
            chosen,
        )
        done += count
        progress(done)


def insert_listings(store: Store, start: datetime, days: int, exchanges: list[str], sectors: list[str]) -> None:
    """A `list` event for each of the `PRODUCTS` products, spread over `days` days from `start`, on one exchange and
    recognised by another (the console's catalogue, recognition and public data's pricing read them)."""
    chosen: dict[str, str] = {}
    n = "number"
    at = f"{int(start.timestamp())} + intDiv({n} * {days * 86_400}, {PRODUCTS})"
    store.command(
        f"INSERT INTO {store.database}.listings (exchange_id, event_id, occurred_at, action, product_id, seller_id, "
        "category, source, sector, pricing, high_quality, recognized_by, late, src_partition, src_offset, ingested_at) "
        f"SELECT {_pick('exchange', exchanges, f'cityHash64({n}, 31)', chosen)}, concat('SYN-L-', toString({n})), "
        f"toDateTime64({at}, 6, 'UTC'), 'list', concat('SYN-P-', toString({n})), "
        f"concat('S', toString(cityHash64({n}, 32) % 20000)), "
        f"{_pick('category', list(get_args(Category)), f'cityHash64({n}, 33)', chosen)}, "
        f"{_pick('source', list(get_args(Source)), f'cityHash64({n}, 34)', chosen)}, "
        f"{_pick('sector', sectors, f'cityHash64({n}, 35)', chosen)}, "
        f"{_pick('pricing', list(get_args(Pricing)), f'cityHash64({n}, 36)', chosen)}, "
        f"toUInt8(cityHash64({n}, 37) % 10 < 4), [{_pick('recognizer', exchanges, f'cityHash64({n}, 38)', chosen)}], "
        f"0, 2, {n}, toDateTime64({at}, 3, 'UTC') FROM numbers({PRODUCTS})",
        chosen,
    )


def insert_heartbeats(store: Store, end: datetime, days: int, exchanges: list[str]) -> int:
    """A heartbeat every `HEARTBEAT_EVERY_S` seconds from each exchange over the last `days` days before `end` (at
    most the `HEARTBEAT_DAYS` the table keeps), each stored when it occurred (the console's feeds read them); the
    number inserted."""
    span_s = min(days, HEARTBEAT_DAYS) * 86_400
    rows = span_s // HEARTBEAT_EVERY_S * len(exchanges)
    chosen: dict[str, str] = {}
    n = "number"
    at = f"{int(end.timestamp()) - span_s} + intDiv({n}, {len(exchanges)}) * {HEARTBEAT_EVERY_S}"
    store.command(
        f"INSERT INTO {store.database}.heartbeats (exchange_id, event_id, occurred_at, seq, late, src_partition, "
        "src_offset, ingested_at) "
        f"SELECT {_pick('exchange', exchanges, f'{n} % {len(exchanges)}', chosen)}, concat('SYN-H-', toString({n})), "
        f"toDateTime64({at}, 6, 'UTC'), intDiv({n}, {len(exchanges)}), 0, 3, {n}, toDateTime64({at}, 3, 'UTC') "
        f"FROM numbers({rows})",
        chosen,
    )
    return rows


def build_rollups(
    store: Store, start: datetime, days: int, progress: Callable[[int], None] = lambda done: None
) -> None:
    """market_1m, market_1h, market_1d, public_1d and console_1d for every day of the history, a day (a month for
    the day tables) per statement (bounded memory), then public_1mo for every month of it, a month per statement."""
    updated_at = datetime.now(UTC)
    for day in range(days):
        day_start = start + timedelta(days=day)
        minutes = [int((day_start + timedelta(minutes=m)).timestamp() * 1000) for m in range(1440)]
        store.command(recompute_sql(store.database, minutes, updated_at))
        store.command(recompute_hours_sql(store.database, minutes[::60], updated_at))
        progress(day + 1)
    first = start.astimezone(CHINA_STANDARD_TIME).date()
    china_days = [first + timedelta(days=d) for d in range(days + 1)]
    for i in range(0, len(china_days), 31):
        store.command(recompute_days_sql(store.database, china_days[i : i + 31], updated_at))
        store.command(recompute_public_days_sql(store.database, china_days[i : i + 31], updated_at))
        store.command(recompute_console_days_sql(store.database, china_days[i : i + 31], updated_at))
    for month in sorted({day.replace(day=1) for day in china_days}):
        store.command(recompute_public_months_sql(store.database, month, updated_at))
