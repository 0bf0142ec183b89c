"""An in-memory store for unit tests of the pipeline stages: no ClickHouse, no SQL.

`MemoryStore` keeps what the worker inserts as Arrow tables (with the insert
deduplication a retried write relies on) and records statements it is asked to run
(window recomputes) without running them. `MemoryState` answers the restore questions
of `StateReader` from those tables, in Python, so a pipeline restored from it rebuilds
its marks, identities, book and detector state like one restored from ClickHouse.
The real-store and real-broker tests keep covering the SQL itself.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import pyarrow as pa

from models import Listing, Trade
from models.clock import to_ms
from settings import SqlSettings
from sinks.clickhouse.state import (
    EVENT_TABLES,
    WINDOWED_TABLES,
    LogProgress,
    StateReader,
    StoredAlert,
    StoredIncident,
    StoredTrade,
    identity_digest,
)
from sinks.clickhouse.store import InOrder, Parameters, Reads, Staged, Write


class MemoryStore:
    database = "datamarket"

    def __init__(self) -> None:
        self.tables: dict[str, list[pa.Table]] = defaultdict(list)
        self.commands: list[str] = []
        self._tokens: set[tuple[str, str]] = set()

    def apply_schema(self) -> None:
        return None

    def insert(self, table: str, batch: pa.Table, token: str) -> None:
        if (table, token) not in self._tokens:  # as insert_deduplication_token: a retry lands once
            self._tokens.add((table, token))
            self.tables[table].append(batch)

    def stage(self, writes: Sequence[Write]) -> Staged:
        return InOrder(self, writes)

    def command(self, sql: str, parameters: Parameters | None = None) -> None:
        self.commands.append(sql)

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError("the memory store answers typed questions (MemoryState), not SQL")

    def arrow(self, sql: str, parameters: Parameters | None = None) -> pa.Table:
        raise NotImplementedError("the memory store answers typed questions (MemoryState), not SQL")

    def reads(self, limits: SqlSettings) -> Reads:
        raise NotImplementedError("the memory store answers typed questions (MemoryState), not SQL")

    def close(self) -> None:
        return None

    def pylist(self, table: str) -> list[dict[str, Any]]:
        """Every row inserted into `table`, in insert order."""
        return [row for batch in self.tables[table] for row in batch.to_pylist()]


class MemoryState(StateReader):
    """`StateReader`'s answers computed from a `MemoryStore`'s tables."""

    def __init__(self, store: MemoryStore, not_after_ms: int | None = None) -> None:
        self.memory = store
        self.db = store.database
        self.not_after_ms = not_after_ms

    def progress(self, topic: str, topic_id: str) -> LogProgress:
        marks: dict[int, int] = {}
        for row in self.memory.pylist("processed_batches"):
            if row["src_topic"] == topic and row["topic_id"] == topic_id and row["src_partition"] >= 0:
                marks[row["src_partition"]] = max(marks.get(row["src_partition"], -1), row["last_offset"])
        return LogProgress(marks, {}, "0")

    def partition_watermarks(self, progress: LogProgress) -> dict[int, int]:
        latest: dict[int, int] = {}
        for row in self._within_bound(self._events()):
            latest[row["src_partition"]] = max(latest.get(row["src_partition"], 0), _ms(row["occurred_at"]))
        return latest

    def listings(self) -> list[Listing]:
        rows = self.memory.pylist("listings")
        rows.sort(key=lambda r: (r["occurred_at"], r["src_partition"], r["src_offset"]))
        return [_model(Listing, "listing", row) for row in rows]

    def identity_digests(self, since_ms: int, until_ms: int | None = None) -> pa.Table:
        until = until_ms if until_ms is not None else 2**63
        rows = [r for r in self._events() if since_ms <= _ms(r["occurred_at"]) < until]
        return pa.table(
            {
                "digest": pa.array([identity_digest(r["exchange_id"], r["event_id"]) for r in rows], pa.binary(16)),
                "src_partition": pa.array([r["src_partition"] for r in rows], pa.int64()),
                "src_offset": pa.array([r["src_offset"] for r in rows], pa.int64()),
                "occurred_ms": pa.array([_ms(r["occurred_at"]) for r in rows], pa.int64()),
                "content_digest": pa.array([r["content_digest"] for r in rows], pa.uint64()),
            }
        )

    def identity_counts(self, since_ms: int, every_ms: int) -> dict[int, int]:
        times = (_ms(row["occurred_at"]) for row in self._events())
        return dict(Counter(ms // every_ms for ms in times if ms >= since_ms))

    def recent_trades(self, since_ms: int, until_ms: int | None = None) -> list[StoredTrade]:
        until = until_ms if until_ms is not None else 2**63
        rows = [
            r for r in self._within_bound(self.memory.pylist("trades")) if since_ms <= _ms(r["occurred_at"]) < until
        ]
        rows.sort(key=lambda r: (r["occurred_at"], r["exchange_id"], r["event_id"]))
        return [StoredTrade(_model(Trade, "trade", row), bool(row["late"])) for row in rows]

    def trade_legs(self, since_ms: int, until_ms: int | None = None) -> pa.Table:
        trades = [stored.trade for stored in self.recent_trades(since_ms, until_ms)]
        legs = [{c: getattr(t, c) for c in _LEG_SCHEMA.names} for t in trades if t.buyer_id != t.seller_id]
        return pa.Table.from_pylist(legs, _LEG_SCHEMA)

    def trade_counts(self, since_ms: int, every_ms: int) -> dict[int, int]:
        times = (_ms(row["occurred_at"]) for row in self.memory.pylist("trades"))
        return dict(Counter(ms // every_ms for ms in times if ms >= since_ms))

    def exchange_spans(self, since_ms: int) -> dict[str, tuple[int, int]]:
        spans: dict[str, tuple[int, int]] = {}
        for row in self._within_bound(self._events()):
            at = _ms(row["occurred_at"])
            if at >= since_ms:
                first, last = spans.get(row["exchange_id"], (at, at))
                spans[row["exchange_id"]] = (min(first, at), max(last, at))
        return spans

    def latest_events(self, since_ms: int) -> dict[str, tuple[int, str]]:
        latest: dict[str, tuple[int, str]] = {}
        for row in self._within_bound(self._events()):
            at = (_ms(row["occurred_at"]), row["event_id"])
            if at[0] >= since_ms and at > latest.get(row["exchange_id"], (-1, "")):
                latest[row["exchange_id"]] = at
        return latest

    def stored_alerts(self, kind: str, since_ms: int = 0) -> list[StoredAlert]:
        return [
            StoredAlert(r["dedup_key"], r["exchange_id"], r["product_id"], list(r["event_ids"]),
                        _ms_or_none(r["window_start"]), _ms_or_none(r["window_end"]))
            for r in self.memory.pylist("alerts")
            if r["kind"] == kind and (r["window_end"] is None or _ms(r["window_end"]) >= since_ms)
        ]

    def incidents(self, detected_since_ms: int) -> list[StoredIncident]:
        return [
            StoredIncident(r["dedup_key"], list(r["event_ids"]), _ms(r["detected_at"]))
            for r in self.memory.pylist("alerts")
            if _ms(r["detected_at"]) >= detected_since_ms
        ]

    def resolutions(self, since_ms: int) -> list[tuple[str, int]]:
        return [
            (r["dedup_key"], _ms(r["at"]))
            for r in self.memory.pylist("alert_actions")
            if r["action"] == "resolve" and _ms(r["at"]) >= since_ms
        ]

    def accepted_rule_changes(self) -> list[dict[str, Any]]:
        return [json.loads(r["change"]) for r in self.memory.pylist("rule_changes") if r["accepted"] and r["key_id"]]

    def unflushed_windows(self) -> list[int]:
        return []

    def unmetered_minutes(self) -> list[int]:
        return []

    def stale_public_days(self) -> list[int]:
        return []

    def stale_public_months(self) -> list[int]:
        return []

    def latest_event_ms(self) -> int | None:
        times = [_ms(r["occurred_at"]) for t in WINDOWED_TABLES for r in self._within_bound(self.memory.pylist(t))]
        return max(times, default=None)

    def _events(self) -> list[dict[str, Any]]:
        return [row for table in EVENT_TABLES for row in self.memory.pylist(table)]

    def _within_bound(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows stamped within the clock's bound (`StateReader`'s `not_after_ms`)."""
        bound = self.not_after_ms
        return rows if bound is None else [row for row in rows if _ms(row["occurred_at"]) <= bound]


_LEG_SCHEMA = pa.schema(  # `StateReader.trade_legs`
    [
        *((c, pa.string()) for c in ("exchange_id", "product_id", "seller_id", "buyer_id", "event_id", "trade_id")),
        ("at_ms", pa.int64()),
        ("amount", pa.decimal128(38, 2)),
    ]
)


def _ms(moment: Any) -> int:
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _ms_or_none(moment: Any) -> int | None:
    return None if moment is None else _ms(moment)


def _model(model: type[Listing | Trade], kind: str, row: dict[str, Any]) -> Any:
    """A stored row back into its contract model (the columns are the fields, plus bookkeeping)."""
    fields = {k: v for k, v in row.items() if k in model.model_fields and v is not None and k != "schema_"}
    fields.update(schema="dm.v1", type=kind, occurred_at=row["occurred_at"].isoformat())
    for money in ("price", "amount", "list_price"):
        if money in fields:
            fields[money] = f"{fields[money]:.2f}"
    if "high_quality" in fields:
        fields["high_quality"] = bool(fields["high_quality"])
    return model.model_validate(fields)
