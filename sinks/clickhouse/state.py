"""What the worker reads back on start: every piece of its state, rebuilt from the stored rows.

ClickHouse is the source of truth; the worker keeps no Faust tables. Each method
answers one restore question with typed values, so nothing above the store writes
SQL: progress marks and strays (`progress`), the market watermark, the product book
(`listings`), duplicate identities (as digests), recent trades and alerts for the detectors,
alert incidents and resolutions for the ledger, accepted rule changes and minute
windows a crash left unflushed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from operator import itemgetter
from typing import Any

import pyarrow as pa

from models import Heartbeat, Listing, Sighting, Trade, Usage
from models.clock import EPOCH, china_midnight_ms
from models.digest import md5
from sinks.clickhouse.store import Store
from sinks.clickhouse.windows import CHINA, dates_sql, stale_public_days_sql, stale_public_months_sql

EVENT_TABLES = ("listings", "trades", "usage", "heartbeats")
WINDOWED_TABLES = ("trades", "usage", "listings")  # the events the market windows count
ACCOUNTED_TABLES = (*EVENT_TABLES, "rejected_events", "duplicate_events")
WINDOW_TABLES = ("market_1m", "market_1h", "market_1d", "console_1d")  # every flush writes them (not public_1d/_1mo)


IDENTITY_DIGEST_SQL = "MD5(concat(exchange_id, '\\x1f', event_id))"  # the same bytes as `identity_digest`


def identity_digest(exchange_id: str, event_id: str) -> bytes:
    """128 bits naming one event identity; ClickHouse computes the same (`IDENTITY_DIGEST_SQL`) on restore."""
    return md5(f"{exchange_id}\x1f{event_id}".encode(), usedforsecurity=False).digest()


def instant(ms: int) -> str:
    """SQL for an instant given in ms since the epoch."""
    return f"fromUnixTimestamp64Milli(toInt64({int(ms)}), 'UTC')"


@dataclass(frozen=True, slots=True)
class StoredTrade:
    trade: Trade
    late: bool  # arrived later than the allowed lateness (its minute window was already closed)


@dataclass(frozen=True, slots=True)
class StoredAlert:
    dedup_key: str
    exchange_id: str
    product_id: str | None
    event_ids: list[str]
    window_start_ms: int | None
    window_end_ms: int | None


@dataclass(frozen=True, slots=True)
class StoredIncident:
    dedup_key: str
    event_ids: list[str]
    detected_ms: int


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One batch's progress marker: a partition's offsets stored completely, and when."""

    partition: int
    first_offset: int
    last_offset: int
    processed_ms: int  # wall-clock time it was stored


@dataclass(slots=True)
class LogProgress:
    """Per partition of one log: the last offset of completely stored batches, and rows stored above it."""

    marks: dict[int, int] = field(default_factory=dict)
    # (partition, offset) -> event ms; 0 if none, or stamped beyond the clock's bound (see `StateReader`)
    stray: dict[tuple[int, int], int] = field(default_factory=dict)
    stray_condition: str = "0"  # SQL on an event table: the row is one of `stray` (kept inside the store layer)


class StateReader:
    """Typed restore queries over one store.

    `through`: per partition, the last offset to count. The event-time questions (watermarks, recent trades,
    exchange spans and latest events) then answer as of those offsets, leaving out rows stored beyond them:
    the market stage restores as of what it had observed and reads the rest again.

    `not_after_ms`: the latest event time the monitor accepts now (wall clock + DMM_MAX_CLOCK_SKEW_S). The
    event-time questions leave out rows stamped later, stored before the bound was enforced (a forged 2099
    stamp): restored, one would carry the market's event time to 2099 again on every start."""

    def __init__(self, store: Store, through: dict[int, int] | None = None, not_after_ms: int | None = None) -> None:
        self.store = store
        self.db = store.database
        marks = " OR ".join(f"(src_partition = {p} AND src_offset <= {m})" for p, m in (through or {}).items())
        self._plausible = "1" if not_after_ms is None else f"occurred_at <= {instant(not_after_ms)}"
        self._counted = ("1" if through is None else f"({marks or '0'})") + f" AND {self._plausible}"

    # -- progress ------------------------------------------------------------------------------

    def progress(self, topic: str, topic_id: str) -> LogProgress:
        """Marks of the current log only; strays are rows stored since this log was first seen."""
        named = {"topic": topic, "topic_id": topic_id}
        log = "src_topic = {topic:String} AND topic_id = {topic_id:String}"
        first = self.store.rows(
            f"SELECT toUnixTimestamp64Milli(min(processed_at)) AS ms, count() AS n FROM {self.db}.processed_batches "
            f"WHERE {log}",
            named,
        )[0]
        if not int(first["n"]):
            self.store.command(  # first sight of this log: a mark that covers nothing, dated now
                f"INSERT INTO {self.db}.processed_batches (src_topic, topic_id, src_partition, first_offset, "
                "last_offset, messages, processed_at) VALUES ({topic:String}, {topic_id:String}, -1, -1, -1, 0, "
                "now64(3))",
                named,
            )
            first = self.store.rows(
                f"SELECT toUnixTimestamp64Milli(min(processed_at)) AS ms FROM {self.db}.processed_batches WHERE {log}",
                named,
            )[0]
        rows = self.store.rows(
            f"SELECT src_partition, max(last_offset) AS mark FROM {self.db}.processed_batches WHERE {log} "
            "AND src_partition >= 0 GROUP BY src_partition",
            named,
        )
        marks = {int(row["src_partition"]): int(row["mark"]) for row in rows}
        since = instant(int(first["ms"]))  # when this log was first seen here
        conditions = " AND ".join(f"NOT (src_partition = {p} AND src_offset <= {m})" for p, m in marks.items())
        above = f"({conditions})" if conditions else "1"
        stray_condition = f"({above} AND ingested_at >= {since})"
        union = " UNION ALL ".join(
            (
                f"SELECT src_partition, src_offset, if({self._plausible}, toUnixTimestamp64Milli(occurred_at), 0) "
                f"AS ms FROM {self.db}.{table} WHERE {stray_condition}"
                if table in EVENT_TABLES
                else f"SELECT src_partition, src_offset, toInt64(0) AS ms FROM {self.db}.{table} "
                f"WHERE {above} AND src_topic = {{topic:String}} AND received_at >= {since}"
            )
            for table in ACCOUNTED_TABLES
        )
        stray = {
            (int(r["src_partition"]), int(r["src_offset"])): int(r["ms"]) for r in self.store.rows(union, named)
        }
        return LogProgress(marks, stray, stray_condition)

    def batches_after(self, topic: str, topic_id: str, marks: dict[int, int]) -> list[StoredBatch]:
        """Batches of the log stored beyond each partition's mark (a partition without one: all), per partition
        in offset order: what the market stage has not read yet."""
        if marks:
            known = (
                f"transform(src_partition, [{', '.join(map(str, marks))}], [{', '.join(map(str, marks.values()))}], -1)"
            )
        else:
            known = "-1"
        rows = self.store.rows(
            "SELECT src_partition, first_offset, last_offset, "
            f"toUnixTimestamp64Milli(processed_at) AS processed_ms FROM {self.db}.processed_batches "
            "WHERE src_topic = {topic:String} AND topic_id = {topic_id:String} AND src_partition >= 0 "
            f"AND last_offset > {known} ORDER BY src_partition, last_offset, first_offset "
            "LIMIT 1 BY src_partition, last_offset",
            {"topic": topic, "topic_id": topic_id},
        )
        return [
            StoredBatch(
                int(r["src_partition"]),
                int(r["first_offset"]),
                int(r["last_offset"]),
                int(r["processed_ms"]),
            )
            for r in rows
        ]

    def market_events_in(
        self, ranges: dict[int, tuple[int, int]], stored_since_ms: int
    ) -> list[tuple[int, int, Trade | Sighting]]:
        """What the market-wide rules read of the events stored from these `(first, last)` offset ranges of
        partitions, as `(partition, offset, event)` in partition and offset order: trades whole (a volume spike
        names them as evidence), every other event only as a `Sighting` (who sent it, its id, its time), which
        is all those rules read of it. `stored_since_ms`: none was stored before (the `ingested_at` index then skips
        all older parts)."""
        if not ranges:
            return []
        offsets = " OR ".join(
            f"(src_partition = {p} AND src_offset BETWEEN {a} AND {b})" for p, (a, b) in ranges.items()
        )
        where = f"ingested_at >= {instant(stored_since_ms)} AND ({offsets})"
        order = "ORDER BY src_partition, src_offset LIMIT 1 BY src_partition, src_offset"
        found: list[tuple[int, int, Trade | Sighting]] = []
        trades = self.store.arrow(
            f"SELECT {_TRADE_FIELDS}, src_partition, src_offset FROM {self.db}.trades WHERE {where} {order}"
        )
        for row in trades.to_pylist():
            partition, offset = row.pop("src_partition"), row.pop("src_offset")
            found.append((partition, offset, _rebuilt_trade(row)))
        for table, model in _SIGHTED.items():
            stored = self.store.arrow(
                "SELECT src_partition, src_offset, exchange_id, event_id, "
                f"intDiv(toUnixTimestamp64Micro(occurred_at), 1000) AS ms FROM {self.db}.{table} WHERE {where} {order}"
            )
            columns = (column.to_pylist() for column in stored.columns)
            found.extend(
                (partition, offset, Sighting(model, exchange_id, event_id, ms))
                for partition, offset, exchange_id, event_id, ms in zip(*columns, strict=True)
            )
        found.sort(key=itemgetter(0, 1))
        return found

    def market_progress(self, topic: str, topic_id: str) -> dict[int, int]:
        """Per partition, the last offset the market stage observed and recorded (empty: it never ran here)."""
        rows = self.store.rows(
            f"SELECT src_partition, max(applied_offset) AS applied FROM {self.db}.market_progress "
            "WHERE src_topic = {topic:String} AND topic_id = {topic_id:String} GROUP BY src_partition",
            {"topic": topic, "topic_id": topic_id},
        )
        return {int(row["src_partition"]): int(row["applied"]) for row in rows}

    def partition_watermarks(self, progress: LogProgress) -> dict[int, int]:
        """Per partition, the latest event time stored, leaving out the strays: rows a crash left above a
        mark lie further along the stream than messages about to be replayed, which they must not make late."""
        stored = f"NOT {progress.stray_condition} AND {self._counted}"
        rows = self.store.rows(
            "SELECT src_partition, max(ms) AS watermark FROM ("
            + " UNION ALL ".join(
                f"SELECT src_partition, toUnixTimestamp64Milli(max(occurred_at)) AS ms FROM {self.db}.{t} "
                f"WHERE {stored} GROUP BY src_partition"
                for t in EVENT_TABLES
            )
            + ") GROUP BY src_partition"
        )
        return {int(row["src_partition"]): int(row["watermark"]) for row in rows}

    # -- events --------------------------------------------------------------------------------

    def listings(self) -> list[Listing]:
        """Every listing event, in stream order: replayed into the product book."""
        rows = self.store.rows(
            f"SELECT {_LISTING_COLUMNS} FROM {self.db}.listings FINAL ORDER BY occurred_at, src_partition, src_offset"
        )
        return [_listing(row) for row in rows]

    def identity_digests(self, since_ms: int, until_ms: int | None = None) -> pa.Table:
        """Every event stored with an event time at or after `since_ms` (and before `until_ms`), as its identity
        digest, where it was first stored, its event time and what it said (columns `digest`, `src_partition`,
        `src_offset`, `occurred_ms`, `content_digest`: 0 for a row stored before content digests). Arrow end to end:
        a day of identities is far too many rows to pass through Python one by one."""
        until = "" if until_ms is None else f" AND occurred_at < {instant(until_ms)}"
        union = " UNION ALL ".join(
            f"SELECT {IDENTITY_DIGEST_SQL} AS digest, toInt64(src_partition) AS src_partition, "
            "toInt64(src_offset) AS src_offset, toUnixTimestamp64Milli(occurred_at) AS occurred_ms, "
            f"content_digest FROM {self.db}.{table} WHERE occurred_at >= {instant(since_ms)}{until}"
            for table in EVENT_TABLES
        )
        return self.store.arrow(union)

    def identity_counts(self, since_ms: int, every_ms: int) -> dict[int, int]:
        """Events stored with an event time at or after `since_ms`, counted per period of `every_ms` (numbered from
        the epoch): what the duplicate index sizes its filters by before it reads the identities period by period."""
        union = " UNION ALL ".join(
            f"SELECT intDiv(toUnixTimestamp64Milli(occurred_at), {int(every_ms)}) AS period FROM {self.db}.{table} "
            f"WHERE occurred_at >= {instant(since_ms)}"
            for table in EVENT_TABLES
        )
        rows = self.store.rows(f"SELECT period, count() AS events FROM ({union}) GROUP BY period")
        return {int(row["period"]): int(row["events"]) for row in rows}

    def recent_trades(self, since_ms: int, until_ms: int | None = None) -> list[StoredTrade]:
        """Trades that happened at or after `since_ms` (and before `until_ms`), in event-time order, rebuilt from
        their Arrow rows as the market stage reads them (validated on arrival already: a day of trades is restored
        at every start, a part at a time: `trade_counts`)."""
        until = "" if until_ms is None else f" AND occurred_at < {instant(until_ms)}"
        table = self.store.arrow(
            f"SELECT {_TRADE_FIELDS}, late FROM {self.db}.trades FINAL WHERE occurred_at >= {instant(since_ms)}"
            f"{until} AND {self._counted} ORDER BY occurred_at, exchange_id, event_id"
        )
        found = []
        for row in table.to_pylist():
            late = bool(row.pop("late"))
            found.append(StoredTrade(_rebuilt_trade(row), late))
        return found

    def trade_legs(self, since_ms: int, until_ms: int | None = None) -> pa.Table:
        """Trades between two parties (self-trades left out) that happened at or after `since_ms` (and before
        `until_ms`), as the columns `wash_trading` keeps of each (`exchange_id`, `product_id`, `seller_id`,
        `buyer_id`, `event_id`, `trade_id`, `at_ms` an int, `amount` a decimal), in no order. Arrow end to end:
        a day of them is restored at every start, far too many rows to pass through Python one by one."""
        until = "" if until_ms is None else f" AND occurred_at < {instant(until_ms)}"
        return self.store.arrow(
            "SELECT toString(exchange_id) AS exchange_id, product_id, seller_id, buyer_id, event_id, trade_id, "
            f"toUnixTimestamp64Milli(occurred_at) AS at_ms, amount FROM {self.db}.trades FINAL "
            f"WHERE occurred_at >= {instant(since_ms)}{until} AND buyer_id != seller_id AND {self._counted}"
        )

    def trade_counts(self, since_ms: int, every_ms: int) -> dict[int, int]:
        """Trades stored with an event time at or after `since_ms`, counted per period of `every_ms` (numbered
        from the epoch): how a restore splits a day of trades into parts it can hold."""
        rows = self.store.rows(
            f"SELECT intDiv(toUnixTimestamp64Milli(occurred_at), {int(every_ms)}) AS period, count() AS trades "
            f"FROM {self.db}.trades WHERE occurred_at >= {instant(since_ms)} GROUP BY period"
        )
        return {int(row["period"]): int(row["trades"]) for row in rows}

    def exchange_spans(self, since_ms: int) -> dict[str, tuple[int, int]]:
        """Per exchange, the first and last event time (ms) of any event type at or after `since_ms`."""
        rows = self.store.rows(
            "SELECT toString(exchange_id) AS exchange_id, toUnixTimestamp64Milli(min(occurred_at)) AS first_ms, "
            f"toUnixTimestamp64Milli(max(occurred_at)) AS last_ms FROM ({self._events_since(since_ms)}) "
            "GROUP BY exchange_id"
        )
        return {row["exchange_id"]: (int(row["first_ms"]), int(row["last_ms"])) for row in rows}

    def latest_events(self, since_ms: int) -> dict[str, tuple[int, str]]:
        """Per exchange, the event time (ms) and id of its latest event of any type at or after `since_ms`."""
        rows = self.store.rows(
            "SELECT toString(exchange_id) AS exchange_id, toUnixTimestamp64Milli(max(occurred_at)) AS last_ms, "
            f"argMax(event_id, (occurred_at, event_id)) AS event_id FROM ({self._events_since(since_ms)}) "
            "GROUP BY exchange_id"
        )
        return {row["exchange_id"]: (int(row["last_ms"]), row["event_id"]) for row in rows}

    # -- alerts, rules, windows ------------------------------------------------------------------

    def stored_alerts(self, kind: str, since_ms: int = 0) -> list[StoredAlert]:
        """Alerts of one kind whose window ends at or after `since_ms` (or has no end), oldest first."""
        rows = self.store.rows(
            "SELECT dedup_key, exchange_id, product_id, event_ids, "
            "toUnixTimestamp64Milli(window_start) AS start_ms, toUnixTimestamp64Milli(window_end) AS end_ms "
            f"FROM {self.db}.alerts FINAL WHERE kind = {{kind:String}} "
            f"AND (window_end IS NULL OR window_end >= {instant(since_ms)}) ORDER BY detected_at, dedup_key",
            {"kind": kind},
        )
        return [
            StoredAlert(
                dedup_key=row["dedup_key"],
                exchange_id=row["exchange_id"],
                product_id=row["product_id"],
                event_ids=list(row["event_ids"]),
                window_start_ms=_int_or_none(row["start_ms"]),
                window_end_ms=_int_or_none(row["end_ms"]),
            )
            for row in rows
        ]

    def incidents(self, detected_since_ms: int) -> list[StoredIncident]:
        """Alerts detected at or after the instant, oldest first: the ledger's dedup memory."""
        rows = self.store.rows(
            "SELECT dedup_key, event_ids, toUnixTimestamp64Milli(detected_at) AS detected_ms "
            f"FROM {self.db}.alerts FINAL WHERE detected_at >= {instant(detected_since_ms)} "
            "ORDER BY detected_at, dedup_key"
        )
        return [StoredIncident(row["dedup_key"], list(row["event_ids"]), int(row["detected_ms"])) for row in rows]

    def resolutions(self, since_ms: int) -> list[tuple[str, int]]:
        """`(dedup_key, at_ms)` of resolutions recorded at or after the instant, oldest first."""
        rows = self.store.rows(
            f"SELECT dedup_key, toUnixTimestamp64Milli(at) AS at_ms FROM {self.db}.alert_actions "
            f"WHERE action = 'resolve' AND at >= {instant(since_ms)} ORDER BY at"
        )
        return [(row["dedup_key"], int(row["at_ms"])) for row in rows]

    def accepted_rule_changes(self) -> list[dict[str, Any]]:
        """The `set`/`reset` bodies of every accepted runtime rule change, oldest first: those signed (a change
        accepted unsigned, before changes were signed, is not replayed: anyone could have sent it)."""
        rows = self.store.rows(
            f"SELECT change FROM {self.db}.rule_changes WHERE accepted AND key_id != '' ORDER BY changed_at"
        )
        return [json.loads(row["change"]) for row in rows]

    def latest_event_ms(self) -> int | None:
        """The latest event time of any stored row the market windows count (None: none stored yet)."""
        rows = self.store.rows(
            "SELECT count() AS n, toUnixTimestamp64Milli(max(occurred_at)) AS ms FROM ("
            + " UNION ALL ".join(
                f"SELECT occurred_at FROM {self.db}.{t} WHERE {self._counted}" for t in WINDOWED_TABLES
            )
            + ")"
        )
        return int(rows[0]["ms"]) if rows and int(rows[0]["n"]) else None

    def unflushed_windows(self) -> list[int]:
        """Minutes (ms) holding events stored after the last flush began (a crash may have skipped them)."""
        latest = ", ".join(f"(SELECT max(updated_at) FROM {self.db}.{t})" for t in WINDOW_TABLES)
        since = f"least({latest}) - INTERVAL 10 SECOND"  # a crash may fall between the minute and its rollups
        sql = " UNION DISTINCT ".join(
            f"SELECT DISTINCT toUnixTimestamp(toStartOfMinute(occurred_at)) * 1000 AS window_ms "
            f"FROM {self.db}.{table} WHERE late = 0 AND ingested_at >= {since}"
            for table in WINDOWED_TABLES
        )
        return [int(row["window_ms"]) for row in self.store.rows(sql)]

    def unmetered_minutes(self) -> list[int]:
        """Minutes (ms) holding on-time usage of the China days whose `market_1d` counts usage calls or bytes but no
        usage event: written before the rollups counted them (a store from before the column; see schema.sql).
        Reads `market_1d`'s usage measures, and the usage of such days only if there are any."""
        days = [
            date.fromisoformat(row["day"])
            for row in self.store.rows(
                f"SELECT DISTINCT toString(day) AS day FROM {self.db}.market_1d FINAL "
                f"WHERE usage_records = 0 AND (usage_calls > 0 OR usage_bytes > 0)"
            )
        ]
        if not days:
            return []
        rows = self.store.rows(
            f"SELECT DISTINCT toUnixTimestamp(toStartOfMinute(occurred_at)) * 1000 AS window_ms FROM {self.db}.usage "
            f"WHERE late = 0 AND toDate(occurred_at, '{CHINA}') IN ({dates_sql(days)})"
        )
        return [int(row["window_ms"]) for row in rows]

    def stale_public_days(self) -> list[int]:
        """China days (their start, ms) whose `public_1d` a flush, or a store from before the table, left behind
        `console_1d` (`windows.stale_public_days_sql`)."""
        return [
            china_midnight_ms(date.fromisoformat(row["day"]))
            for row in self.store.rows(stale_public_days_sql(self.db))
        ]

    def stale_public_months(self) -> list[int]:
        """China months (their first day's start, ms) whose `public_1mo` is older than one of their days' `public_1d`
        or missing (`windows.stale_public_months_sql`)."""
        return [
            china_midnight_ms(date.fromisoformat(row["month"]))
            for row in self.store.rows(stale_public_months_sql(self.db))
        ]

    def _events_since(self, since_ms: int, tables: Iterable[str] = EVENT_TABLES) -> str:
        return " UNION ALL ".join(
            f"SELECT exchange_id, event_id, occurred_at FROM {self.db}.{table} "
            f"WHERE occurred_at >= {instant(since_ms)} AND {self._counted}"
            for table in tables
        )


_LISTING_COLUMNS = (
    "* EXCEPT (late, src_partition, src_offset, ingested_at, list_price), toString(list_price) AS list_price"
)


def _listing(row: dict[str, Any]) -> Listing:
    data = {k: v for k, v in row.items() if v is not None}
    data.update(schema="dm.v1", type="listing", high_quality=bool(row["high_quality"]))
    data["occurred_at"] = str(row["occurred_at"]).replace(" ", "T") + "Z"
    return Listing.model_validate(data)


def _rebuilt_trade(row: dict[str, Any]) -> Trade:
    """A stored trade as the object it was on arrival, from its Arrow row (`_TRADE_FIELDS`)."""
    us = row.pop("us")
    row.update(schema_="dm.v1", type="trade", occurred_at=EPOCH + timedelta(microseconds=us))  # faster than Arrow's
    return Trade.rebuilt(row, us // 1000)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# Trades as the market stage and the restore read them back, every field, rebuilt without validating them again
# (the store holds validated events only); the market stage reads the other events only as a `Sighting`.
_TRADE_FIELDS = (
    "exchange_id, event_id, toUnixTimestamp64Micro(occurred_at) AS us, trade_id, product_id, buyer_id, seller_id, "
    "price, quantity, amount, currency, venue, purpose, data_bytes"
)
_SIGHTED: dict[str, type[Listing | Usage | Heartbeat]] = {"listings": Listing, "usage": Usage, "heartbeats": Heartbeat}
