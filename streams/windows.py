"""One-minute event-time market windows, computed by the worker itself.

A row of `market_1m` is always a cell's whole total (ReplacingMergeTree on the cell,
newest `updated_at` wins), never a delta: a retried write, a replay or a crash
between flushes can never count an event twice. A minute's totals come one of two ways:

- *kept*: a minute later than every event stored when this pipeline started, while it
  owns every partition, has every one of its events pass through here. Its cells are
  running totals of the stored batches' on-time rows (distinct buyers and sellers as
  sets), added up on flush; the flush writes the cells that changed. Nothing is read
  back: reading a filling minute back costs more as it fills (~0.3 s near the end of
  a minute at 10k events/s, which every batch waiting to be stored waited behind).
- *recomputed*: any other minute (it holds events stored before this pipeline began,
  or other workers store events of its cells) is marked dirty and rebuilt on flush
  from the stored events.

A crash loses kept totals, never rows: on restore, every minute the last flush may
have missed is recomputed, and kept minutes start after the latest one stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import Store
from sinks.clickhouse.windows import CELL, MARKET_1M, MINUTE_MS, recompute_minutes, roll_up, write_cells

CellKey = tuple[int, str, str, str, str, str, int]  # the minute (ms since the epoch), then `CELL`
_ZERO = Decimal("0.00")
_KEYS = ["window", *CELL]
_COUNTED = {  # the columns a kept minute adds up, per event table (the rest of a stored batch is let go)
    "trades": ["occurred_at", "late", *CELL, "event_id", "amount", "quantity", "data_bytes", "buyer_id", "seller_id"],
    "usage": ["occurred_at", "late", *(c for c in CELL if c != "venue"), "calls", "bytes"],
    "listings": ["occurred_at", "late", *(c for c in CELL if c != "venue"), "event_id", "action"],
}


def window_start_ms(occurred_ms: int) -> int:
    return occurred_ms - occurred_ms % MINUTE_MS


@dataclass(slots=True)
class Cell:
    """One kept cell's running totals: `market_1m`'s measures, with its distinct buyers and sellers."""

    trades: int = 0
    traded_amount: Decimal = _ZERO
    quantity: int = 0
    data_bytes: int = 0
    buyers: set[str] = field(default_factory=set)
    sellers: set[str] = field(default_factory=set)
    usage_calls: int = 0
    usage_bytes: int = 0
    new_listings: int = 0


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush writes, taken at once between batches (`WindowFlusher.take`)."""

    updated_at: datetime
    dirty: list[int]  # minutes to recompute from the store
    cells: pa.Table | None  # the kept cells changed since they were last written, as `market_1m` rows

    @property
    def minutes(self) -> list[int]:
        """Every minute it writes, to roll up."""
        kept: list[int] = []
        if self.cells is not None:
            seconds = pc.cast(self.cells.column("window_start"), pa.int64()).to_numpy()
            kept = (seconds * 1000).tolist()
        return sorted(set(self.dirty).union(kept))


class WindowFlusher:
    """Routes each stored batch's minutes (`stored`); `take` and `write` flush them."""

    def __init__(self, store: Store, keep: bool, lateness_ms: int, max_windows_per_statement: int = 500) -> None:
        """`keep`: this pipeline owns every partition, so it may keep minutes (see the module's docstring)."""
        self.store = store
        self.keep = keep
        self.lateness_ms = lateness_ms
        self.max_windows = max_windows_per_statement
        self.dirty: set[int] = set()
        self.kept: dict[int, dict[CellKey, Cell]] = {}  # minute -> its cells
        self.unwritten: set[CellKey] = set()  # kept cells changed since they were last written
        self._stored: list[Mapping[str, pa.Table]] = []  # tables of the batches stored since the last take
        self._stored_minutes: set[int] = set()  # the kept minutes they hold
        self._floor: int | None = None  # the latest minute that may hold stored events not kept here

    @property
    def pending(self) -> int:
        """Minutes with events stored and not yet written (a flush under way writes some of them)."""
        return len(self.dirty | self._stored_minutes | {key[0] for key in self.unwritten})

    def restore(self, state: StateReader) -> None:
        self.dirty.update(state.unflushed_windows())
        latest = state.latest_event_ms()
        self._floor = None if latest is None else window_start_ms(latest)

    def stored(self, minutes: set[int], tables: Mapping[str, pa.Table]) -> None:
        """A batch was stored with on-time events in these minutes (its `tables`, as written)."""
        if not self.keep:
            self.dirty |= minutes
            return
        floor, kept, keeping = self._floor, self.kept, False
        for minute in minutes:
            if minute not in kept:
                if floor is not None and minute <= floor:
                    self.dirty.add(minute)
                    continue
                kept[minute] = {}
            self._stored_minutes.add(minute)
            keeping = True
        if keeping:
            self._stored.append({table: tables[table].select(_COUNTED[table]) for table in _COUNTED if table in tables})

    def take(self, watermark_ms: int) -> Flush:
        """What to write now, the kept cells added up (batches stored from now on wait for the next take). Kept
        minutes too old for an on-time event, and written, are let go: an event more would be recomputed."""
        for table, add in (("trades", _add_trades), ("usage", _add_usage), ("listings", _add_listings)):
            batches = [tables[table] for tables in self._stored if table in tables]
            if batches:
                add(self.kept, self.unwritten, _on_time(table, pa.concat_tables(batches), self.kept.keys()))
        updated_at = datetime.now(UTC)
        cells = _rows(self.kept, self.unwritten, updated_at) if self.unwritten else None
        taken = Flush(updated_at, sorted(self.dirty), cells)
        self.dirty, self._stored, self._stored_minutes = set(), [], set()
        self._release(watermark_ms)
        return taken

    def write(self, flush: Flush) -> int:
        """Store the kept cells, recompute the dirty minutes, then roll both up into hours and days (may be run
        again after a failure: every statement writes whole totals). Returns how many minutes it wrote."""
        if flush.cells is not None:
            write_cells(self.store, flush.cells)
        for i in range(0, len(flush.dirty), self.max_windows):
            recompute_minutes(self.store, flush.dirty[i : i + self.max_windows], flush.updated_at)
        minutes = flush.minutes
        for i in range(0, len(minutes), self.max_windows):
            roll_up(self.store, minutes[i : i + self.max_windows], flush.updated_at)
        return len(minutes)

    def written(self) -> None:
        """The flush taken last is stored: its cells are no longer to be written."""
        self.unwritten.clear()

    def failed(self, flush: Flush) -> None:
        """The flush taken last was not stored (the worker stops): its dirty minutes are dirty again."""
        self.dirty.update(flush.dirty)

    def _release(self, watermark_ms: int) -> None:
        closed = watermark_ms - self.lateness_ms - 2 * MINUTE_MS  # a minute's margin past the allowed lateness
        unwritten = {key[0] for key in self.unwritten}
        for minute in [m for m in self.kept if m < closed and m not in unwritten]:
            del self.kept[minute]
            self._floor = minute if self._floor is None else max(self._floor, minute)


def _on_time(table: str, rows: pa.Table, kept: Iterable[int]) -> pa.Table:
    """The rows that count in a kept minute, with their minute as `window`."""
    windows = pc.cast(rows.column("occurred_at"), pa.int64()).to_numpy() // (MINUTE_MS * 1000) * MINUTE_MS
    mask = (rows.column("late").to_numpy() == 0) & np.isin(windows, np.fromiter(kept, np.int64))
    if table == "listings":
        mask &= pc.equal(rows.column("action"), "list").to_numpy(zero_copy_only=False)
        rows = rows.set_column(
            rows.schema.get_field_index("sector"), "sector", pc.fill_null(rows.column("sector"), "unknown")
        )
        for name in ("category", "source"):
            rows = rows.set_column(rows.schema.get_field_index(name), name, pc.fill_null(rows.column(name), "unknown"))
    if table != "trades":
        rows = rows.append_column("venue", pa.array([""] * rows.num_rows, pa.string()))
    return rows.append_column("window", pa.array(windows, pa.int64())).filter(pa.array(mask))


def _groups(rows: pa.Table, measures: list[tuple[str, str]]) -> tuple[list[CellKey], list[list[object]]]:
    grouped = rows.group_by(_KEYS, use_threads=False).aggregate(measures)
    keys = list(zip(*(grouped.column(name).to_pylist() for name in _KEYS), strict=True))
    return keys, [grouped.column(f"{name}_{how}").to_pylist() for name, how in measures]


def _cell(kept: dict[int, dict[CellKey, Cell]], unwritten: set[CellKey], key: CellKey) -> Cell:
    unwritten.add(key)
    cells = kept[key[0]]
    found = cells.get(key)
    if found is None:
        found = cells[key] = Cell()
    return found


def _add_trades(kept: dict[int, dict[CellKey, Cell]], unwritten: set[CellKey], rows: pa.Table) -> None:
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
    for key, n, paid, units, volume, bought, sold in zip(
        keys, count, amount, quantity, data_bytes, buyers, sellers, strict=True
    ):
        cell = _cell(kept, unwritten, key)
        cell.trades += n  # type: ignore[operator]
        cell.traded_amount += paid  # type: ignore[operator]
        cell.quantity += units  # type: ignore[operator]
        cell.data_bytes += volume  # type: ignore[operator]
        cell.buyers.update(bought)  # type: ignore[arg-type]
        cell.sellers.update(sold)  # type: ignore[arg-type]


def _add_usage(kept: dict[int, dict[CellKey, Cell]], unwritten: set[CellKey], rows: pa.Table) -> None:
    keys, (calls, volume) = _groups(rows, [("calls", "sum"), ("bytes", "sum")])
    for key, n, size in zip(keys, calls, volume, strict=True):
        cell = _cell(kept, unwritten, key)
        cell.usage_calls += n  # type: ignore[operator]
        cell.usage_bytes += size  # type: ignore[operator]


def _add_listings(kept: dict[int, dict[CellKey, Cell]], unwritten: set[CellKey], rows: pa.Table) -> None:
    keys, (count,) = _groups(rows, [("event_id", "count")])
    for key, n in zip(keys, count, strict=True):
        _cell(kept, unwritten, key).new_listings += n  # type: ignore[operator]


def _rows(kept: dict[int, dict[CellKey, Cell]], keys: set[CellKey], updated_at: datetime) -> pa.Table:
    """The given kept cells as `market_1m` rows."""
    ordered = sorted(keys)
    cells = [kept[key[0]][key] for key in ordered]
    minutes, exchanges, sectors, categories, sources, venues, quality = zip(*ordered, strict=True)
    columns = {
        "window_start": pa.array(np.asarray(minutes, np.int64) // 1000).cast(MARKET_1M.field("window_start").type),
        "exchange_id": exchanges,
        "sector": sectors,
        "category": categories,
        "source": sources,
        "venue": venues,
        "high_quality": quality,
        "trades": [c.trades for c in cells],
        "traded_amount": [c.traded_amount for c in cells],
        "quantity": [c.quantity for c in cells],
        "data_bytes": [c.data_bytes for c in cells],
        "buyers": [len(c.buyers) for c in cells],
        "sellers": [len(c.sellers) for c in cells],
        "usage_calls": [c.usage_calls for c in cells],
        "usage_bytes": [c.usage_bytes for c in cells],
        "new_listings": [c.new_listings for c in cells],
        "updated_at": [updated_at] * len(cells),
    }
    return pa.Table.from_arrays(
        [pa.array(columns[f.name], f.type) if f.name != "window_start" else columns[f.name] for f in MARKET_1M],
        schema=MARKET_1M,
    )
