"""Event-time market windows (minutes, hours, China days), computed by the worker itself.

A row of `market_1m`, `market_1h` or `market_1d` is always a cell's whole total
(ReplacingMergeTree on the cell, newest `updated_at` wins), never a delta: a retried
write, a replay or a crash between flushes can never count an event twice. A window's
totals come one of two ways:

- *kept*: a window later than every event stored when this pipeline started, while it
  owns every partition, has every one of its events pass through here. Its cells are
  running totals of the stored batches' on-time rows (a minute's distinct buyers and
  sellers as sets), added up on flush; the flush writes the cells that changed. Nothing
  is read back: re-reading a filling minute cost more as it filled (~0.3 s near the end
  of a minute at 10k events/s, which every batch waiting to be stored waited behind),
  and an hour or a day re-read from its minutes or hours grows the same way.
- *recomputed*: any other window (it holds events stored before this pipeline began,
  or other workers store events of its cells) is marked dirty and rebuilt on flush:
  a minute from the stored events, then an hour from its minutes, then a day from its
  hours.

A crash loses kept totals, never rows: on restore, every window the last flush may
have missed is recomputed, and windows are kept only after the latest event stored.

`public_1d` (public data delivered per China day and product) is rebuilt from the stored
events, not kept: a day written to is rebuilt once it closes (`WindowFlusher._closed`),
so no flush re-reads a day while it fills; its China month (`public_1mo`) is rebuilt from
its days right after.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.clock import CHINA_OFFSET_MS, DAY_MS, china_day_start_ms
from sinks.clickhouse.first_seen import record_first_seen
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import Store
from sinks.clickhouse.windows import (
    ADDED_UP,
    CELL,
    HOUR_MS,
    MARKET_1D,
    MARKET_1H,
    MARKET_1M,
    MINUTE_MS,
    fill_console_days,
    recompute_console_days,
    recompute_days,
    recompute_hours,
    recompute_minutes,
    recompute_public_days,
    recompute_public_months,
    write_cells,
)

CellKey = tuple[int, str, str, str, str, str, int]  # the window's start (ms since the epoch), then `CELL`
_ZERO = Decimal("0.00")
_KEYS = ["window", *CELL]
_COUNTED = {  # the columns the windows add up, per event table (the rest of a stored batch is let go)
    "trades": ["occurred_at", "late", *CELL, "event_id", "amount", "quantity", "data_bytes", "buyer_id", "seller_id"],
    "usage": ["occurred_at", "late", *(c for c in CELL if c != "venue"), "calls", "bytes"],
    "listings": ["occurred_at", "late", *(c for c in CELL if c != "venue"), "event_id", "action"],
}


def window_start_ms(occurred_ms: int) -> int:
    return occurred_ms - occurred_ms % MINUTE_MS


def _hour(minute: int) -> int:
    return minute - minute % HOUR_MS


@dataclass(slots=True)
class Cell:
    """One kept cell's running totals: a field per measure (`sinks.clickhouse.windows.MEASURES`), a minute's
    distinct buyers and sellers as sets (they do not add up over minutes)."""

    trades: int = 0
    traded_amount: Decimal = _ZERO
    quantity: int = 0
    data_bytes: int = 0
    buyers: set[str] = field(default_factory=set)
    sellers: set[str] = field(default_factory=set)
    usage_calls: int = 0
    usage_bytes: int = 0
    usage_records: int = 0
    new_listings: int = 0


@dataclass(slots=True)
class Grain:
    """One table's windows: kept ones with their cells, dirty ones to recompute."""

    table: str
    schema: pa.Schema
    of_minute: Callable[[int], int]  # the start of the window holding a minute (ms since the epoch)
    span_ms: int
    recompute: Callable[[Store, list[int], datetime], None]
    kept: dict[int, dict[CellKey, Cell]] = field(default_factory=dict)  # window -> its cells
    unwritten: set[CellKey] = field(default_factory=set)  # kept cells changed since they were last written
    dirty: set[int] = field(default_factory=set)
    stored: set[int] = field(default_factory=set)  # kept windows with rows stored since the last take
    floor: int | None = None  # the latest window that may hold stored events not kept here

    def route(self, minutes: Iterable[int]) -> bool:
        """Minutes with on-time events just stored: keep their windows, or mark them dirty. Returns whether
        any is kept."""
        keeping = False
        for window in {self.of_minute(minute) for minute in minutes}:
            if window not in self.kept:
                if self.floor is not None and window <= self.floor:
                    self.dirty.add(window)
                    continue
                self.kept[window] = {}
            self.stored.add(window)
            keeping = True
        return keeping

    def cell(self, key: CellKey) -> Cell | None:
        """The kept cell of a minute's `key` (its window in place of the minute), None if its window is not
        kept. The cell counts as changed."""
        window = self.of_minute(key[0])
        cells = self.kept.get(window)
        if cells is None:
            return None
        if window != key[0]:
            key = (window, *key[1:])
        self.unwritten.add(key)
        found = cells.get(key)
        if found is None:
            found = cells[key] = Cell()
        return found

    def release(self, watermark_ms: int, lateness_ms: int) -> None:
        """Let go of kept windows too old for an on-time event (a minute's margin), once written: one event
        more would make them recomputed."""
        unwritten = {key[0] for key in self.unwritten}
        closed = watermark_ms - lateness_ms - MINUTE_MS - self.span_ms
        for window in [w for w in self.kept if w < closed and w not in unwritten]:
            del self.kept[window]
            self.floor = window if self.floor is None else max(self.floor, window)

    @property
    def pending(self) -> set[int]:
        return self.dirty | self.stored | {key[0] for key in self.unwritten}


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush writes, taken at once between batches (`WindowFlusher.take`)."""

    updated_at: datetime
    dirty: dict[str, list[int]]  # per table, windows to recompute
    cells: dict[str, pa.Table]  # per table, the kept cells changed since they were last written
    console_days: list[int]  # the China days (their start) of `market_1d` written, for `console_1d` after it
    public_days: list[int]  # the China days (their start) of `public_1d` to rebuild: written to, and closed


class WindowFlusher:
    """Routes each stored batch's minutes (`stored`); `take` and `write` flush them."""

    def __init__(self, store: Store, keep: bool, lateness_ms: int, max_windows_per_statement: int = 500) -> None:
        """`keep`: this pipeline owns every partition, so it may keep windows (see the module's docstring)."""
        self.store = store
        self.keep = keep
        self.lateness_ms = lateness_ms
        self.max_windows = max_windows_per_statement
        self.grains = (  # in the order they are written: each recomputed from the one before
            Grain("market_1m", MARKET_1M, lambda minute: minute, MINUTE_MS, recompute_minutes),
            Grain("market_1h", MARKET_1H, _hour, HOUR_MS, recompute_hours),
            Grain("market_1d", MARKET_1D, china_day_start_ms, DAY_MS, recompute_days),
        )
        self._stored: list[Mapping[str, pa.Table]] = []  # tables of the batches stored since the last take
        # China days written to since their `public_1d` was rebuilt, rebuilt once they close (`_closed`)
        self.public_pending: set[int] = set()

    @property
    def pending(self) -> int:
        """Windows with events stored and not yet written (a flush under way writes some of them)."""
        return sum(len(grain.pending) for grain in self.grains)

    def restore(self, state: StateReader) -> None:
        """Mark dirty every window the last flush may have missed, and keep windows only after the latest event.

        First, `console_1d` gets the days `market_1d` holds and it lacks: a store created before it has none, and
        the schema (`Store.apply_schema`) only runs DDL, so filling it falls to the worker's start. Once every day
        is there it reads the two tables' day keys and writes nothing. It runs before the unflushed windows are
        read, which are found from the latest flush of the rollups, `console_1d` among them."""
        fill_console_days(self.store, datetime.now(UTC))
        # The windows the last flush may have missed, and the minutes of the days counted before the rollups counted
        # usage events (a store from before the column: recomputed once).
        unflushed = state.unflushed_windows() + state.unmetered_minutes()
        latest = state.latest_event_ms()
        # `public_1d`'s days left behind `console_1d` (a store from before it: all of them): those closed are rebuilt
        # now, the others once they close, as if this worker had written them.
        stale = state.stale_public_days()
        closed = [day for day in stale if latest is not None and self._closed(day, latest)]
        recompute_public_days(self.store, closed, datetime.now(UTC))
        self.public_pending.update(set(stale) - set(closed))
        # `public_1mo`'s months older than one of their days (those just rebuilt, those a flush stopped before
        # rebuilding, all of them in a store from before the table)
        recompute_public_months(self.store, state.stale_public_months(), datetime.now(UTC))
        for grain in self.grains:
            grain.dirty.update(grain.of_minute(minute) for minute in unflushed)
            grain.floor = None if latest is None else grain.of_minute(window_start_ms(latest))

    def stored(self, minutes: set[int], tables: Mapping[str, pa.Table]) -> None:
        """A batch was stored with on-time events in these minutes (its `tables`, as written)."""
        if not self.keep:
            for grain in self.grains:
                grain.dirty.update(grain.of_minute(minute) for minute in minutes)
            return
        keeping = [grain.route(minutes) for grain in self.grains]  # a list: every grain routes them
        if any(keeping):
            self._stored.append({table: tables[table].select(_COUNTED[table]) for table in _COUNTED if table in tables})

    def take(self, watermark_ms: int) -> Flush:
        """What to write now, the kept cells added up (batches stored from now on wait for the next take)."""
        for table, add in (("trades", _add_trades), ("usage", _add_usage), ("listings", _add_listings)):
            batches = [tables[table] for tables in self._stored if table in tables]
            if batches:
                add(self.grains, _on_time(table, pa.concat_tables(batches)))
        self._stored = []
        updated_at = datetime.now(UTC)
        days = self.grains[-1]
        console_days = sorted(days.dirty | {key[0] for key in days.unwritten})
        self.public_pending.update(console_days)
        public_days = sorted(day for day in self.public_pending if self._closed(day, watermark_ms))
        self.public_pending.difference_update(public_days)
        taken = Flush(
            updated_at,
            {grain.table: sorted(grain.dirty) for grain in self.grains},
            {grain.table: _rows(grain, updated_at) for grain in self.grains if grain.unwritten},
            console_days,
            public_days,
        )
        for grain in self.grains:
            grain.dirty, grain.stored = set(), set()
            grain.release(watermark_ms, self.lateness_ms)
        return taken

    def write(self, flush: Flush) -> None:
        """Store the kept cells and recompute the dirty windows, minutes first, then hours, then days, then the
        closed public days from the events and their months from them, then the console's days from `market_1d`
        (last: the console reads how far the rollups are flushed from them), then feed `first_seen` the events stored
        since it was fed (may be run again after a failure: every statement writes whole totals, and a first sighting
        fed twice is one)."""
        for grain in self.grains:
            cells, dirty = flush.cells.get(grain.table), flush.dirty[grain.table]
            if cells is not None:
                write_cells(self.store, grain.table, cells)
            for i in range(0, len(dirty), self.max_windows):
                grain.recompute(self.store, dirty[i : i + self.max_windows], flush.updated_at)
        recompute_public_days(self.store, flush.public_days, flush.updated_at)
        recompute_public_months(self.store, flush.public_days, flush.updated_at)
        for i in range(0, len(flush.console_days), self.max_windows):
            recompute_console_days(self.store, flush.console_days[i : i + self.max_windows], flush.updated_at)
        record_first_seen(self.store)

    def written(self) -> None:
        """The flush taken last is stored: its cells are no longer to be written."""
        for grain in self.grains:
            grain.unwritten.clear()

    def failed(self, flush: Flush) -> None:
        """The flush taken last was not stored (the worker stops): its dirty windows are dirty again."""
        for grain in self.grains:
            grain.dirty.update(flush.dirty[grain.table])
        self.public_pending.update(flush.public_days)

    def _closed(self, day: int, watermark_ms: int) -> bool:
        """No on-time event of the China day starting at `day` can arrive any more (a minute's margin, as kept
        windows are let go): its `public_1d` rows may be rebuilt for good."""
        return day + DAY_MS + MINUTE_MS <= watermark_ms - self.lateness_ms


def _on_time(table: str, rows: pa.Table) -> pa.Table:
    """The rows the windows count, with their minute as `window`."""
    windows = pc.cast(rows.column("occurred_at"), pa.int64()).to_numpy() // (MINUTE_MS * 1000) * MINUTE_MS
    mask = rows.column("late").to_numpy() == 0
    if table == "listings":
        mask &= pc.equal(rows.column("action"), "list").to_numpy(zero_copy_only=False)
        for name in ("sector", "category", "source"):
            rows = rows.set_column(rows.schema.get_field_index(name), name, pc.fill_null(rows.column(name), "unknown"))
    if table != "trades":
        rows = rows.append_column("venue", pa.array([""] * rows.num_rows, pa.string()))
    return rows.append_column("window", pa.array(windows, pa.int64())).filter(pa.array(mask))


def _groups(rows: pa.Table, measures: list[tuple[str, str]]) -> tuple[list[CellKey], list[list[Any]]]:
    """The rows' cells, with each measure per cell as Arrow's Python values (ints, Decimals, lists of ids)."""
    grouped = rows.group_by(_KEYS, use_threads=False).aggregate(measures)
    keys = list(zip(*(grouped.column(name).to_pylist() for name in _KEYS), strict=True))
    return keys, [grouped.column(f"{name}_{how}").to_pylist() for name, how in measures]


def _add_trades(grains: tuple[Grain, ...], rows: pa.Table) -> None:
    rows = rows.set_column(
        rows.schema.get_field_index("data_bytes"), "data_bytes", pc.fill_null(rows.column("data_bytes"), 0)
    )
    keys, (count, amount, quantity, data_bytes, buyers, sellers) = _groups(
        rows,
        [
            ("event_id", "count"),
            ("amount", "sum"),
            ("quantity", "sum"),
            ("data_bytes", "sum"),
            ("buyer_id", "distinct"),
            ("seller_id", "distinct"),
        ],
    )
    minutes = grains[0]
    for key, n, paid, units, volume, bought, sold in zip(
        keys, count, amount, quantity, data_bytes, buyers, sellers, strict=True
    ):
        for grain in grains:
            cell = grain.cell(key)
            if cell is None:
                continue
            cell.trades += n
            cell.traded_amount += paid
            cell.quantity += units
            cell.data_bytes += volume
            if grain is minutes:
                # Interned: each batch's ids are new strings, so every cell would keep its own copy of an id;
                # interned, all cells share one per id, freed once no cell holds it.
                cell.buyers.update(map(sys.intern, bought))
                cell.sellers.update(map(sys.intern, sold))


def _add_usage(grains: tuple[Grain, ...], rows: pa.Table) -> None:
    keys, (calls, volume, records) = _groups(rows, [("calls", "sum"), ("bytes", "sum"), ("calls", "count")])
    for key, n, size, count in zip(keys, calls, volume, records, strict=True):
        for grain in grains:
            cell = grain.cell(key)
            if cell is not None:
                cell.usage_calls += n
                cell.usage_bytes += size
                cell.usage_records += count


def _add_listings(grains: tuple[Grain, ...], rows: pa.Table) -> None:
    keys, (count,) = _groups(rows, [("event_id", "count")])
    for key, n in zip(keys, count, strict=True):
        for grain in grains:
            cell = grain.cell(key)
            if cell is not None:
                cell.new_listings += n


def _rows(grain: Grain, updated_at: datetime) -> pa.Table:
    """The grain's changed cells as rows of its table."""
    keys = list(grain.unwritten)
    cells = [grain.kept[key[0]][key] for key in keys]
    windows, exchanges, sectors, categories, sources, venues, quality = zip(*keys, strict=True)
    starts = np.asarray(windows, np.int64)
    columns: dict[str, object] = {
        "window_start": pa.array(starts // 1000).cast(pa.timestamp("s", tz="UTC")),
        "day": pa.array((starts + CHINA_OFFSET_MS) // DAY_MS, pa.int32()).cast(pa.date32()),
        "exchange_id": exchanges,
        "sector": sectors,
        "category": categories,
        "source": sources,
        "venue": venues,
        "high_quality": quality,
        **{name: list(map(attrgetter(name), cells)) for name in ADDED_UP},
        "buyers": [len(c.buyers) for c in cells],
        "sellers": [len(c.sellers) for c in cells],
        "updated_at": [updated_at] * len(cells),
    }
    arrays = [
        column if isinstance(column := columns[f.name], pa.Array) else pa.array(column, f.type) for f in grain.schema
    ]
    return pa.Table.from_arrays(arrays, schema=grain.schema)
