"""Every statement the regulator's web console reads, behind typed functions taking a store.

The console must show what `dmm sql` shows on the same store, to the fen, so money
leaves ClickHouse as text (`toString` of the Decimal sum) and becomes a `Decimal`
here, never a float; counts are ints. Event tables are read with FINAL (a replayed or
retried insert must not count twice). Time spans are half-open `[start_us, end_us)` in
microseconds of event time (`occurred_at`), the unit the event tables store.
"""

from __future__ import annotations

import threading
from calendar import monthrange
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeVar

from models.clock import DAY_MS, china_day, china_day_start_ms, china_midnight_ms
from settings import Settings
from sinks.clickhouse import queries
from sinks.clickhouse.first_seen import FED_MARGIN_S, first_seen_rows
from sinks.clickhouse.part_facts import PartFacts, active_parts, late_rows, literal, stored_since
from sinks.clickhouse.state import EVENT_TABLES
from sinks.clickhouse.store import Parameters
from sinks.clickhouse.windows import CHINA, dates_sql

CENT = Decimal("0.01")
MAX_CLOCK_SKEW_S: float = Settings.model_fields["max_clock_skew_s"].default
EVERY_ALERT = 10**12


class Reader(Protocol):
    """All the console needs of a store: it only ever reads (a SELECT-only user will do)."""

    database: str

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open event-time span `[start_us, end_us)`."""

    start_us: int
    end_us: int

    def where(self, column: str = "occurred_at") -> str:
        return (
            f"{column} >= fromUnixTimestamp64Micro(toInt64({int(self.start_us)}), 'UTC') "
            f"AND {column} < fromUnixTimestamp64Micro(toInt64({int(self.end_us)}), 'UTC')"
        )


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What the surveillance view narrows alerts to; None = any."""

    kind: str | None = None
    severity: str | None = None
    exchange_id: str | None = None
    status: str | None = None


def money(text: Any) -> Decimal:
    """A Decimal sum as ClickHouse printed it, to the fen."""
    return Decimal(str(text if text is not None else "0")).quantize(CENT)


def watermark_us(store: Reader, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> int | None:
    """The market's event-time watermark: the latest `occurred_at` stored in any event table, up to the wall clock
    plus `max_clock_skew_s` (DMM_MAX_CLOCK_SKEW_S): a row stamped further ahead, stored before the monitor rejected
    such events, must not make "today" 2099. Each table's latest time and row count come from its parts' own
    min/max and counts (no scan); only a table holding a row past the bound is read again, up to the bound."""
    bound = f"now64(6) + toIntervalMillisecond({round(max_clock_skew_s * 1000)})"
    latest = store.rows(
        " UNION ALL ".join(
            f"SELECT '{table}' AS t, toUnixTimestamp64Micro(max(occurred_at)) AS us, count() AS n, "
            f"max(occurred_at) > {bound} AS past FROM {store.database}.{table}"
            for table in EVENT_TABLES
        )
    )
    found = [int(row["us"]) for row in latest if int(row["n"]) and not int(row["past"])]
    past = [row["t"] for row in latest if int(row["n"]) and int(row["past"])]
    if past:
        bounded = store.rows(
            " UNION ALL ".join(
                f"SELECT toUnixTimestamp64Micro(max(occurred_at)) AS us, count() AS n FROM {store.database}.{table} "
                f"WHERE occurred_at <= {bound}"
                for table in past
            )
        )
        found += [int(row["us"]) for row in bounded if int(row["n"])]
    return max(found) if found else None


def _active_listings(database: str) -> str:
    """Each exchange × product's latest state: still listed, and its last `list` event's attributes."""
    return (
        f"SELECT exchange_id, product_id, argMax(action, occurred_at) AS last_action, "
        f"argMaxIf(recognized_by, occurred_at, action = 'list') AS recognized, "
        f"argMaxIf(source, occurred_at, action = 'list') AS source, "
        f"argMaxIf(pricing, occurred_at, action = 'list') AS pricing "
        f"FROM {database}.listings FINAL WHERE action IN ('list', 'delist') GROUP BY exchange_id, product_id"
    )


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The catalogue now (the listings' latest state, not a period's): mutual recognition and public data listed."""

    recognized_products: int  # distinct products recognised by at least one exchange other than the listing one
    pairs: list[dict[str, Any]]  # per (listed_on, recognized_by): products, most first
    public: dict[str, int]  # public-data products listed, per pricing (free, conditional_free, paid, unknown)


Version = tuple[str, ...]  # a table's identity and the active parts its rows were read from
V = TypeVar("V")


class KeptByVersion(Generic[V]):
    """Answers kept by the version of the rows they were read from (`part_versions`), the oldest dropped past
    `limit`; behind a lock, as the console's reads run side by side. A version never comes back once its rows
    change (parts never change: an insert, a merge, a mutation or a TTL's removal makes new ones)."""

    def __init__(self, limit: int) -> None:
        self._kept: dict[Version, V] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, version: Version) -> V | None:
        return self._kept.get(version)

    def keep(self, version: Version, answer: V) -> None:
        with self._lock:
            self._kept[version] = answer
            while len(self._kept) > self._limit:
                del self._kept[next(iter(self._kept))]


def part_versions(store: Reader, tables: tuple[str, ...]) -> dict[tuple[str, str], Version | None]:
    """Per table and partition: the version of its rows, the table's identity and its active parts, a read of
    metadata; None for a table without an identity (to be read every time: nothing tells one store's from another's)."""
    parts: dict[tuple[str, str], list[str]] = {}
    identity: dict[str, str] = {}
    for uuid, table, partition, part in active_parts(store, tables):
        parts.setdefault((table, partition), []).append(part)
        identity[table] = uuid
    return {
        (table, partition): (
            (identity[table], table, partition, ",".join(sorted(names))) if identity[table].strip("0-") else None
        )
        for (table, partition), names in parts.items()
    }


def table_version(store: Reader, table: str) -> Version | None:
    """The version of all of a table's rows (every partition's, `part_versions`); None where no part is seen or the
    table has no identity: its rows are to be read every time."""
    versions = part_versions(store, (table,))
    if not versions or None in versions.values():
        return None
    return tuple(part for key in sorted(versions) for part in versions[key] or ())


_catalogues: KeptByVersion[Catalogue] = KeptByVersion(limit=8)  # a few stores, a few versions each


def catalogue(store: Reader) -> Catalogue:
    """The catalogue's figures, read again only when the listings changed: kept by the version of the listings they
    were read from (`part_versions`). Listings change a few times an hour in a national market, the console
    refreshes every 5 s."""
    version = table_version(store, "listings")
    if version is None:
        return _read_catalogue(store)
    kept = _catalogues.get(version)
    if kept is None:
        kept = _read_catalogue(store)
        _catalogues.keep(version, kept)
    return kept


def _read_catalogue(store: Reader) -> Catalogue:
    """The catalogue's figures in one read of the listings: each active listing (exchange x product) gives a fact
    per exchange recognising it, one if any does, one for its pricing if it is public data; distinct products are
    counted per fact."""
    empty = "CAST([], 'Array(Tuple(String, String, String))')"
    rows = store.rows(
        f"SELECT fact.1 AS what, fact.2 AS a, fact.3 AS b, uniqExact(product_id) AS products "
        f"FROM ({_active_listings(store.database)}) "
        f"ARRAY JOIN arrayConcat("
        f"arrayMap(r -> ('pair', toString(exchange_id), toString(r)), arrayFilter(r -> r != exchange_id, recognized)), "
        f"if(arrayExists(r -> r != exchange_id, recognized), [('recognized', '', '')], {empty}), "
        f"if(source = 'public', [('public', toString(ifNull(pricing, 'unknown')), '')], {empty})) AS fact "
        f"WHERE last_action = 'list' GROUP BY what, a, b"
    )
    pairs = sorted(
        (
            {"listed_on": r["a"], "recognized_by": r["b"], "products": int(r["products"])}
            for r in rows
            if r["what"] == "pair"
        ),
        key=lambda pair: (-pair["products"], pair["listed_on"], pair["recognized_by"]),
    )
    return Catalogue(
        recognized_products=sum(int(r["products"]) for r in rows if r["what"] == "recognized"),
        pairs=pairs,
        public={r["a"]: int(r["products"]) for r in rows if r["what"] == "public"},
    )


def public_supply(store: Reader, snap: Snapshot, span: Span) -> dict[str, dict[str, Any]]:
    """Public data delivered in the span (trades and usage of `source = public` products), per the pricing of the
    product's latest listing, as of the snapshot: whole China days from `public_1d` where it holds them for good
    (before the snapshot's `rollups_until_us`, rebuilt since the day's last flush), and of those the whole months
    `public_1mo` holds as they are (`_public_held`) from it instead (a row per month and product, not per day),
    the rest, the late rows and the days `public_1d` has not caught up with raw. The pricing is joined as the
    statement runs, per product. What the rollups hold is kept by its version (`_held_supply`): a period's
    refreshes read only the rest."""
    if snap.as_of_us is None:
        return {}
    db = store.database
    rolled = Span(span.start_us, max(span.start_us, min(span.end_us, _china_midnight_us(snap.rollups_until_us))))
    days, months = _public_held(store, rolled)
    raw = [{table: f"late = 0 AND {gap.where()}" for table in EVENTS_READ_RAW} for gap in _gaps(rolled, sorted(days))]
    if rolled.start_us < rolled.end_us:
        late = late_rows(store, EVENTS_READ_RAW)
        raw.append({table: f"{late[table]} AND {rolled.where()}" for table in EVENTS_READ_RAW})
    if span.end_us > rolled.end_us:
        raw.append({table: Span(rolled.end_us, span.end_us).where() for table in EVENTS_READ_RAW})
    delivered = []
    for where in raw:
        delivered += [
            f"SELECT product_id, toUInt64(1) AS trades, amount, toUInt64(0) AS calls FROM {db}.trades FINAL "
            f"WHERE source = 'public' AND {where['trades']} AND {snap.raw()}",
            f"SELECT product_id, toUInt64(0) AS trades, toDecimal128(0, 2) AS amount, calls FROM {db}.usage FINAL "
            f"WHERE source = 'public' AND {where['usage']} AND {snap.raw()}",
        ]
    held = {day: built_ms for day, built_ms in days.items() if day.replace(day=1) not in months}
    supply = _by_pricing(store, delivered) if delivered else {}
    for pricing, figures in _held_supply(store, held, months).items():
        before = supply.get(pricing, {"trades": 0, "amount": money(0), "calls": 0})
        supply[pricing] = {name: before[name] + figures[name] for name in ("trades", "amount", "calls")}
    return supply


# pricing -> figures of the days and months the rollups hold, by the version of what they were read from
_held_supplies: KeptByVersion[dict[str, dict[str, Any]]] = KeptByVersion(limit=16)


def _held_supply(store: Reader, days: dict[date, int], months: dict[date, int]) -> dict[str, dict[str, Any]]:
    """Public data delivered on the held `days` (from `public_1d`) and in the held `months` (from `public_1mo`),
    each with its mark (ms), per pricing. Kept by its version: the days and months with their marks (a rollup's
    rows change only with a rebuild, which moves its mark) and the listings' version (`table_version`: the pricing,
    and the store's identity); read again when any of them changes, and every time where the listings show none."""
    if not days and not months:
        return {}
    version = table_version(store, "listings")
    if version is not None:
        marks = [f"day {at} {ms}" for at, ms in sorted(days.items())]  # sorted: the rows come in any order
        marks += [f"month {at} {ms}" for at, ms in sorted(months.items())]
        version = (*version, *marks)
        kept = _held_supplies.get(version)
        if kept is not None:
            return kept
    db, delivered = store.database, []
    for table, key, keys in (("public_1mo", "month", sorted(months)), ("public_1d", "day", sorted(days))):
        if keys:
            delivered.append(
                f"SELECT product_id, sum(trades) AS trades, sum(amount) AS amount, sum(calls) AS calls "
                f"FROM {db}.{table} FINAL WHERE {key} IN ({dates_sql(keys)}) AND product_id != '' GROUP BY product_id"
            )
    found = _by_pricing(store, delivered)
    if version is not None:
        _held_supplies.keep(version, found)
    return found


def _by_pricing(store: Reader, delivered: list[str]) -> dict[str, dict[str, Any]]:
    """The `delivered` SELECTs' rows (product_id, trades, amount, calls) added up per the pricing of each product's
    latest listing, joined as the statement runs."""
    db = store.database
    pricing = (
        f"SELECT product_id, toString(ifNull(argMax(pricing, occurred_at), 'unknown')) AS pricing "
        f"FROM {db}.listings FINAL WHERE action = 'list' GROUP BY product_id"
    )
    rows = store.rows(
        f"SELECT if(p.pricing = '', 'unknown', p.pricing) AS pricing, sum(d.trades) AS trades, "
        f"toString(sum(d.amount)) AS amount, sum(d.calls) AS calls FROM ({' UNION ALL '.join(delivered)}) AS d "
        f"LEFT JOIN ({pricing}) AS p ON d.product_id = p.product_id GROUP BY pricing"
    )
    return {
        r["pricing"]: {"trades": int(r["trades"]), "amount": money(r["amount"]), "calls": int(r["calls"])} for r in rows
    }


# per part of the rollups: the latest stamp (ms) of each China day (month, of public_1mo) it holds a mark of
_marks: PartFacts[dict[date, int]] = PartFacts()
MARKED = {"public_1d": "day", "public_1mo": "month", "console_1d": "day"}  # a rollup and what it marks


def _rollup_marks(store: Reader) -> dict[str, dict[date, int]]:
    """Per rollup of `MARKED`: each day's (month's) latest stamp: a rebuild's mark (product '') of the public ones,
    the last flush of `console_1d`. Learnt once per part (`PartFacts`), so a refresh reads only the parts written
    since (a flush's, a rebuild's, a merge's), not the marks of every day of a long period."""

    def ask(table: str, names: str) -> str:
        marks_only = "" if table == "console_1d" else " AND product_id = ''"
        return (
            f"SELECT _part AS part, toString({MARKED[table]}) AS at, toUnixTimestamp64Milli(max(updated_at)) AS ms "
            f"FROM {store.database}.{table} WHERE _part IN ({names}){marks_only} GROUP BY _part, at"
        )

    known = _marks.learnt(
        store,
        tuple(MARKED),
        ask,
        fold=lambda rows: {date.fromisoformat(row["at"]): int(row["ms"]) for row in rows},
        absent={},
    )
    latest: dict[str, dict[date, int]] = {table: {} for table in MARKED}
    for table, parts in known.items():
        for marks in parts.values():
            for at, ms in marks.items():
                latest[table][at] = max(latest[table].get(at, 0), ms)
    return latest


def _public_held(store: Reader, days: Span) -> tuple[dict[date, int], dict[date, int]]:
    """From the rollups' marks (`_rollup_marks`): the China days of `days` (whole ones) that `public_1d` holds all
    the on-time rows of, rebuilt (their mark) no earlier than their last flush (`console_1d`), each with its mark's
    stamp (ms); and the China months (their first day) every day of which it so holds and `public_1mo` holds as
    those days are now: its mark no older than the newest of theirs (a day rebuilt since the month was has rows the
    month lacks, a month rebuilt since its days holds nothing they do not), each with its mark."""
    if days.start_us >= days.end_us:
        return {}, {}
    first, end = china_day(days.start_us // 1000), china_day(days.end_us // 1000)
    marks = _rollup_marks(store)
    flushed = marks["console_1d"]
    held = {
        day: built_ms
        for day, built_ms in marks["public_1d"].items()
        if first <= day < end and built_ms >= flushed.get(day, 0)
    }
    newest: dict[date, int] = {}
    for day, built_ms in held.items():
        newest[day.replace(day=1)] = max(newest.get(day.replace(day=1), 0), built_ms)
    months = {
        month: built_ms
        for month, built_ms in marks["public_1mo"].items()
        if month in newest
        and built_ms >= newest[month]
        and all(month.replace(day=d) in held for d in range(1, monthrange(month.year, month.month)[1] + 1))
    }
    return held, months


def _gaps(days: Span, held: list[date]) -> list[Span]:
    """The stretches of `days` (from China midnight to China midnight) not among the `held` days (in order)."""
    gaps, start = [], days.start_us
    for day in held:
        held_us = china_midnight_ms(day) * 1000
        if held_us > start:
            gaps.append(Span(start, held_us))
        start = held_us + DAY_MS * 1000
    if start < days.end_us:
        gaps.append(Span(start, days.end_us))
    return gaps


def alerts(store: Reader, where: AlertFilter, limit: int = 200) -> list[dict[str, Any]]:
    """Alerts matching the filter, newest first, with status, last actor and note (as `dmm alerts list`)."""
    rows = store.rows(*_alert_list(store.database, where, with_status=True, limit=limit))
    for row in rows:
        row["score"] = float(row["score"])
        for key in ("window_start_ms", "window_end_ms", "detected_ms", "action_ms"):
            row[key] = int(row[key]) if row[key] is not None else None
        if row["status"] == "open":
            row.update(actor=None, note=None)
    return rows


def alert_status_counts(store: Reader, where: AlertFilter) -> dict[str, int]:
    """How many alerts matching the filter (its status aside) are open, acked and resolved."""
    listed = _alert_list(store.database, where, with_status=False, limit=EVERY_ALERT)
    rows = store.rows(f"SELECT status, count() AS n FROM ({listed.sql}) GROUP BY status", listed.parameters)
    counts = {"open": 0, "acked": 0, "resolved": 0}
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


def alert_exists(store: Reader, dedup_key: str) -> bool:
    return int(store.rows(*queries.alert_exists(store.database, dedup_key))[0]["n"]) > 0


def _alert_list(database: str, where: AlertFilter, *, with_status: bool, limit: int) -> queries.Query:
    """The CLI's alert list (one definition of the lifecycle: resolved > acked > open), filtered."""
    return queries.alert_list(
        database,
        kind=where.kind,
        severity=where.severity,
        exchange=where.exchange_id,
        status=where.status if with_status else None,
        limit=limit,
    )


def feed_events(store: Reader, snap: Snapshot) -> list[dict[str, Any]]:
    """Per exchange and event type: events stored, late ones, latest event time and latest arrival. Trades and usage
    are counted as the period API counts them (`console_1d`'s whole days before the snapshot's rollups, the rest and
    the late ones raw), the other events from every row's exchange and lateness, a month (a partition) at a time,
    each month's counts kept by the version of its rows (`part_versions`) and read again only when it changed;
    the latest times are read from the last day's rows (by event time, by arrival), and from all the rows of an
    exchange only if it has none there."""
    db = store.database
    totals = _event_totals(store, snap)
    latest = {(r["exchange_id"], r["type"]): r for r in store.rows(_latest_events(db, None))}
    counted = [(code, table, n) for (code, table), n in totals.items() if n[0] > 0]
    quiet: dict[str, list[str]] = {table: [] for table in EVENT_TABLES}
    for code, table, _ in counted:
        if _quiet(latest.get((code, table))):
            quiet[table].append(code)
    if any(quiet.values()):
        named = {f"quiet_{table}": UNIT_SEPARATOR.join(codes) for table, codes in quiet.items() if codes}
        latest.update({(r["exchange_id"], r["type"]): r for r in store.rows(_latest_events(db, quiet), named)})
    return sorted(
        (
            {
                "exchange_id": code,
                "type": table,
                "events": events,
                "late": late,
                "last_us": int(latest[code, table]["last_us"]),
                "arrived_ms": int(latest[code, table]["arrived_ms"]),
            }
            for code, table, (events, late) in counted
        ),
        key=lambda row: (row["exchange_id"], row["type"]),
    )


ROLLED_UP_EVENTS = {"trades": "trades", "usage": "usage_records"}  # event table -> its count in `console_1d`
COUNTED_BY_MONTH = ("listings", "heartbeats")  # the event tables the feeds count from their rows, a month at a time
# (exchange, table) -> (events, late) of a month, by its version (heartbeats keep 90 days: 3-4 months a store)
_month_counts: KeptByVersion[dict[tuple[str, str], tuple[int, int]]] = KeptByVersion(limit=64)


def _event_totals(store: Reader, snap: Snapshot) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (exchange, table): events and late ones (`_event_counts`), the months of listings and heartbeats whose rows
    did not change since they were last counted taken as they were."""
    versions = part_versions(store, COUNTED_BY_MONTH)
    kept = {}
    for month, version in versions.items():
        counts = _month_counts.get(version) if version else None
        if counts is not None:
            kept[month] = counts
    seen = {table for table, _ in versions}
    unread: dict[str, list[str] | None] = {  # None: no parts seen, every row read
        table: [p for (t, p) in versions if t == table and (t, p) not in kept] if table in seen else None
        for table in COUNTED_BY_MONTH
    }
    found: dict[tuple[str, str], dict[tuple[str, str], tuple[int, int]]] = {}  # (table, partition) -> counts
    for r in store.rows(
        f"SELECT exchange_id, type, partition, sum(events_n) AS events, sum(late_n) AS late "
        f"FROM ({_event_counts(store.database, snap, unread, late_rows(store, EVENTS_READ_RAW))}) "
        f"GROUP BY exchange_id, type, partition"
    ):
        found.setdefault((r["type"], r["partition"]), {})[r["exchange_id"], r["type"]] = (
            int(r["events"]),
            int(r["late"]),
        )
    for month, version in versions.items():  # a month changed since its version was read: kept under one that
        if version and month not in kept:  # never comes back
            _month_counts.keep(version, found.get(month, {}))
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for counts in [*found.values(), *kept.values()]:
        for key, (events, late) in counts.items():
            before = totals.get(key, (0, 0))
            totals[key] = (before[0] + events, before[1] + late)
    return totals


def _event_counts(
    database: str, snap: Snapshot, unread: dict[str, list[str] | None], late_rows: dict[str, str]
) -> str:
    """Events and late ones per exchange and table (and partition, for `COUNTED_BY_MONTH`), to be added up: trades
    and usage of whole China days before the snapshot's rollups from `console_1d` (on time, all of them counted by a
    flush), the rest and the late ones raw (`late_rows`: the condition on each table's); of listings and heartbeats,
    the `unread` partitions (months), each row, or every row where no partition was seen (an empty table, or a user
    not shown `system.parts`)."""
    until = _china_midnight_us(snap.rollups_until_us)
    parts = ["SELECT '' AS exchange_id, '' AS type, '' AS partition, toUInt64(0) AS events_n, toUInt64(0) AS late_n"]
    for table in EVENT_TABLES:
        rows = f"SELECT toString(exchange_id), '{table}', '', count(), sum(late)"
        months = unread.get(table)
        if table in COUNTED_BY_MONTH and months is not None:  # a SELECT a month: `_partition_id` as a column costs
            parts += [  # 2.5x the count
                f"SELECT toString(exchange_id), '{table}', {literal(month)}, count(), sum(late) "
                f"FROM {database}.{table} FINAL WHERE _partition_id = {literal(month)} GROUP BY exchange_id"
                for month in months
            ]
            continue
        if table in COUNTED_BY_MONTH or snap.rollups_until_us <= 0:
            parts.append(f"{rows} FROM {database}.{table} FINAL GROUP BY exchange_id")
            continue
        counted = ROLLED_UP_EVENTS[table]
        since = f"fromUnixTimestamp64Micro(toInt64({until}), 'UTC')"
        parts += [
            f"SELECT toString(exchange_id), '{table}', '', sum({counted}), toUInt64(0) "
            f"FROM {database}.console_1d FINAL WHERE day < {_date(until)} GROUP BY exchange_id",
            f"{rows} FROM {database}.{table} FINAL WHERE occurred_at >= {since} GROUP BY exchange_id",
            f"{rows} FROM {database}.{table} FINAL WHERE {late_rows[table]} AND occurred_at < {since} "
            f"GROUP BY exchange_id",
        ]
    return " UNION ALL ".join(parts)


LATEST_WITHIN = "INTERVAL 1 DAY"  # the rows `feed_events` reads the latest times from, before all of an exchange's
UNIT_SEPARATOR = "\x1f"  # between the exchanges of a query parameter (`char(31)` in SQL)


def _latest_events(database: str, quiet: dict[str, list[str]] | None) -> str:
    """Per exchange and event table, the latest event time and arrival: from the rows that occurred within a day of
    the table's latest and those stored within a day of now (None), or from all rows of the `quiet` exchanges (per
    table, those the last day did not answer for: query parameters `quiet_<table>`, joined by `UNIT_SEPARATOR`)."""
    parts = []
    for table in EVENT_TABLES:
        source = f"SELECT toString(exchange_id) AS exchange_id, '{table}' AS type"
        if quiet is None:
            parts += [
                f"{source}, toUnixTimestamp64Micro(occurred_at) AS last_us, toInt64(0) AS arrived_ms "
                f"FROM {database}.{table} FINAL "
                f"WHERE occurred_at >= (SELECT max(occurred_at) FROM {database}.{table}) - {LATEST_WITHIN}",
                f"{source}, toInt64(0), toUnixTimestamp64Milli(ingested_at) FROM {database}.{table} FINAL "
                f"WHERE ingested_at >= now64(3) - {LATEST_WITHIN}",
            ]
        elif quiet[table]:
            parts.append(
                f"{source}, toUnixTimestamp64Micro(occurred_at) AS last_us, toUnixTimestamp64Milli(ingested_at) "
                f"AS arrived_ms FROM {database}.{table} FINAL "
                f"WHERE has(splitByChar(char(31), {{quiet_{table}:String}}), toString(exchange_id))"
            )
    return (
        f"SELECT exchange_id, type, max(last_us) AS last_us, max(arrived_ms) AS arrived_ms "
        f"FROM ({' UNION ALL '.join(parts)}) GROUP BY exchange_id, type"
    )


def _quiet(latest: dict[str, Any] | None) -> bool:
    """The last day's rows did not give an exchange's latest event time or arrival."""
    return latest is None or not int(latest["last_us"]) or not int(latest["arrived_ms"])


def rejected_by_exchange(store: Reader) -> list[dict[str, Any]]:
    """Rejected messages per exchange as sent (empty when unreadable) and reason."""
    rows = store.rows(
        f"SELECT exchange_id, toString(reason) AS reason, count() AS n FROM {store.database}.rejected_events FINAL "
        f"GROUP BY exchange_id, reason ORDER BY exchange_id, reason"
    )
    return [{"exchange_id": r["exchange_id"], "reason": r["reason"], "messages": int(r["n"])} for r in rows]


def duplicates_by_exchange(store: Reader) -> dict[str, int]:
    """Messages counted as duplicates of an earlier event, per exchange."""
    rows = store.rows(
        f"SELECT toString(exchange_id) AS exchange_id, count() AS n FROM {store.database}.duplicate_events FINAL "
        f"GROUP BY exchange_id"
    )
    return {r["exchange_id"]: int(r["n"]) for r in rows}


# Periods (`GET /api/console/market?from=&to=`): every figure of one answer read as of one snapshot.

Grain = Literal["hour", "day", "month"]
UNFLUSHED_MARGIN_S = 10  # as `state.unflushed_windows`: a flush's stamp may precede rows it did not see
FLUSHED_DAYS = 2
ROLLUP_MARGIN_US = 3600 * 1_000_000  # rollups serve hours older than the allowed lateness by one more hour
HOUR_US = 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one console answer is read as of, read once at its start (`snapshot`).

    Rows keep arriving while an answer is built from several statements, so each statement is bounded by
    this snapshot rather than by "now": a raw row counts only if it occurred by `as_of_us` (the watermark)
    and was stored by `ingested_ms`; the rollups (`market_1h`, `console_1d`, `public_1d`, `public_1mo`) serve only
    hours before `rollups_until_us`, hours that no on-time event can reach any more (older than the allowed
    lateness, by an hour more) and whose every stored on-time event a window flush has counted. Rows stored later
    than the snapshot in those hours are late (rollups leave them out), and the late rows are read raw, bounded
    like any raw row. So statements run a moment apart agree: the cards, the tables, the trend and
    `previous` / `year_ago` describe one set of rows, the one `dmm sql` sees with the same bounds.
    (One statement for everything would give the same snapshot at the price of one unreadable query.)
    """

    as_of_us: int | None  # the market's watermark; None: the store holds no event yet
    ingested_ms: int  # the wall clock when it was read: rows stored later are not read
    rollups_until_us: int  # hour-aligned: the rollups hold every on-time trade before it, for good
    first_seen_fed_ms: int  # `first_seen` was fed every event stored up to this moment (less FED_MARGIN_S)

    def raw(self) -> str:
        """The condition a raw event row must meet to be read in this snapshot."""
        return (
            f"occurred_at <= fromUnixTimestamp64Micro(toInt64({int(self.as_of_us or 0)}), 'UTC') "
            f"AND ingested_at <= fromUnixTimestamp64Milli(toInt64({int(self.ingested_ms)}), 'UTC')"
        )


def snapshot(store: Reader, allowed_lateness_s: float, max_clock_skew_s: float = MAX_CLOCK_SKEW_S) -> Snapshot:
    """The watermark, the wall clock, how far the rollups are final and `first_seen` fed, read at once."""
    db = store.database
    as_of = watermark_us(store, max_clock_skew_s)
    # The last complete flush: console_1d is the rollup written last, and a flush of on-time events writes their
    # days, the watermark's among them. Only the days about the watermark are read (a flush found older just leaves
    # more of the period to the raw rows).
    recent_days = f"toDate(fromUnixTimestamp64Micro(toInt64({as_of or 0}), 'UTC'), '{CHINA}') - {FLUSHED_DAYS}"
    marks = store.rows(
        f"SELECT toUnixTimestamp64Milli(now64(3)) AS ingested_ms, toUnixTimestamp64Milli((SELECT max(updated_at) "
        f"FROM {db}.console_1d WHERE day >= {recent_days})) AS flushed_ms, "
        f"(SELECT toUnixTimestamp64Milli(max(fed_through)) FROM {db}.first_seen) AS fed_ms"
    )[0]
    # the on-time rows the rollups (public_1d: usage too) may not hold yet
    stored = stored_since(store, ("trades", "usage"), int(marks["flushed_ms"]) - UNFLUSHED_MARGIN_S * 1000)
    unflushed = " UNION ALL ".join(
        f"SELECT occurred_at FROM {db}.{table} WHERE late = 0 AND {condition}" for table, condition in stored.items()
    )
    row = store.rows(f"SELECT toUnixTimestamp64Micro(min(occurred_at)) AS us, count() AS n FROM ({unflushed})")[0]
    until = 0
    if as_of is not None:
        until = as_of - round(allowed_lateness_s * 1_000_000) - ROLLUP_MARGIN_US
        if int(row["n"]):
            until = min(until, int(row["us"]))
        until = max(0, until - until % HOUR_US)
    return Snapshot(as_of, int(marks["ingested_ms"]), until, int(marks["fed_ms"]))


def _bucket(grain: Grain | None, column: str, is_date: bool = False) -> str:
    """A trend bucket's key as text: the hour's start in seconds, or the China day / month as YYYY-MM-DD."""
    if grain is None:
        return "''"
    if grain == "hour":
        return f"toString(toUnixTimestamp(toStartOfHour({column})))"
    day = column if is_date else f"toDate({column}, '{CHINA}')"
    return f"toString({day})" if grain == "day" else f"toString(toStartOfMonth({day}))"


def _china_midnight_us(us: int) -> int:
    """The China midnight at or before `us`."""
    return china_day_start_ms(us // 1000) * 1000


def _date(us: int) -> str:
    """The China day starting at `us` (a China midnight), as a Date literal."""
    return f"toDate(fromUnixTimestamp64Micro(toInt64({int(us)}), 'UTC'), '{CHINA}')"


EVENTS_READ_RAW = ("trades", "usage")  # the event tables the rollups count, whose late rows are read raw
RAW_PERIOD_TABLES = (  # the event tables a period reads raw, and their columns as the rollups' cells
    (
        "trades",
        "exchange_id, sector, toUInt64(1) AS trades, amount, if(venue = 'on_exchange', amount, 0) AS on_ex, "
        "if(high_quality = 1, amount, 0) AS hq, toUInt64(0) AS records, toUInt64(0) AS calls, toUInt64(0) AS bytes",
    ),
    (
        "usage",
        "exchange_id, sector, toUInt64(0) AS trades, toDecimal128(0, 2) AS amount, toDecimal128(0, 2) AS on_ex, "
        "toDecimal128(0, 2) AS hq, toUInt64(1) AS records, calls, bytes",
    ),
)


def _period_sources(
    database: str, snap: Snapshot, index: int, span: Span, grain: Grain | None
) -> tuple[list[str], str | None, str | None]:
    """What adds up to the trades and the metering (usage events, calls, bytes) of one period: the SELECTs of whole
    China days from `console_1d` (not for an hourly trend) and hours from `market_1h`, both only before the
    snapshot's `rollups_until_us`; the condition on the rolled-up part, whose late rows are read raw (the rollups
    leave them out), and on the rest, read raw whole (None: no such part)."""
    assert snap.as_of_us is not None
    until = snap.rollups_until_us
    day_until = _china_midnight_us(until)
    days_cells = (
        "exchange_id, sector, trades, traded_amount AS amount, on_exchange_amount AS on_ex, high_quality_amount AS hq, "
        "usage_records AS records, usage_calls AS calls, usage_bytes AS bytes"
    )
    hours_cells = (
        "exchange_id, sector, trades, traded_amount AS amount, if(venue = 'on_exchange', traded_amount, 0) AS on_ex, "
        "if(high_quality = 1, traded_amount, 0) AS hq, usage_records AS records, usage_calls AS calls, "
        "usage_bytes AS bytes"
    )
    sources = []
    hours_from = span.start_us
    if grain != "hour":
        days = Span(span.start_us, min(span.end_us, day_until))
        if days.start_us < days.end_us:
            sources.append(
                f"SELECT {index} AS period, {_bucket(grain, 'day', is_date=True)} AS bucket, {days_cells} "
                f"FROM {database}.console_1d FINAL WHERE day >= {_date(days.start_us)} AND day < {_date(days.end_us)}"
            )
            hours_from = max(span.start_us, days.end_us)
    hours = Span(hours_from, min(span.end_us, until))
    if hours.start_us < hours.end_us:
        sources.append(
            f"SELECT {index} AS period, {_bucket(grain, 'window_start')} AS bucket, {hours_cells} "
            f"FROM {database}.market_1h FINAL WHERE {hours.where('window_start')}"
        )
    rolled = Span(span.start_us, min(span.end_us, until))
    raw = Span(max(span.start_us, until), span.end_us)
    return (
        sources,
        rolled.where() if rolled.start_us < rolled.end_us else None,
        raw.where() if raw.start_us < raw.end_us else None,
    )


def _raw_period_sources(
    database: str, snap: Snapshot, raw: list[tuple[int, str | None, str | None, str]], late_rows: dict[str, str]
) -> list[str]:
    """The SELECTs of the raw rows of every period (`raw`: index, condition on its rolled-up part, on its rest,
    trend bucket): per event table, one of the late rows of the rolled-up parts and one of the rests, each row once
    per period it is in (periods may overlap: a year-ago one and a previous one), not one per table and period
    (each costs ~5 ms on a large table whatever it reads); late rows and the rests apart, so each condition is one
    the indexes on `late` and on the event time can use."""

    def per_period(pairs: list[tuple[int, str]], on: str) -> str:
        *first, (_, last) = pairs
        return f"multiIf({', '.join(f'{on} = {i}, {expr}' for i, expr in first)}, {last})" if first else last

    sources = []
    for late in (True, False):
        parts = [
            (index, bucket, where)
            for index, rolled, rest, bucket in raw
            if (where := rolled if late else rest) is not None
        ]
        if not parts:
            continue
        periods = ", ".join(str(index) for index, _, _ in parts)
        within = per_period([(index, where) for index, _, where in parts], "p")
        bucket = per_period([(index, bucket) for index, bucket, _ in parts], "period")
        anywhere = " OR ".join(f"({where})" for _, _, where in parts)
        sources += [
            f"SELECT period, {bucket} AS bucket, {columns} FROM {database}.{table} FINAL "
            f"ARRAY JOIN arrayFilter(p -> {within}, [{periods}]) AS period "
            f"WHERE {late_rows[table] + ' AND ' if late else ''}({anywhere}) AND {snap.raw()}"
            for table, columns in RAW_PERIOD_TABLES
        ]
    return sources


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "trades": int(row["trades"]),
        "amount": money(row["amount_s"]),
        "on_exchange": money(row["on_ex_s"]),
        "high_quality": money(row["hq_s"]),
        "usage_records": int(row["records"]),
        "usage_calls": int(row["calls"]),
        "usage_bytes": int(row["bytes"]),
    }


def period_figures(store: Reader, snap: Snapshot, periods: list[tuple[Span, Grain | None]]) -> list[dict[str, Any]]:
    """Per period (a span, and the grain of its trend or None): trades, amount, on-exchange and high-quality
    amount, usage events, calls and bytes in total (`totals`), per exchange and per sector (`by`), and per trend
    bucket (`trend`, keyed as `_bucket` writes them), as of the snapshot. One statement for all of them."""
    nothing = {"trades": 0, "amount_s": "0", "on_ex_s": "0", "hq_s": "0", "records": 0, "calls": 0, "bytes": 0}
    found: list[dict[str, Any]] = [{"totals": _figures(nothing), "by": {}, "trend": {}} for _ in periods]
    if snap.as_of_us is None:
        return found
    sources, raw = [], []
    for index, (span, grain) in enumerate(periods):
        rolled_up, rolled, rest = _period_sources(store.database, snap, index, span, grain)
        sources += rolled_up
        raw.append((index, rolled, rest, _bucket(grain, "occurred_at")))
    late = late_rows(store, EVENTS_READ_RAW) if any(rolled for _, rolled, _, _ in raw) else {}
    sources += _raw_period_sources(store.database, snap, raw, late)
    if not sources:
        return found
    rows = store.rows(
        f"SELECT period, grouping(bucket, exchange_id, sector) AS grouped, bucket, toString(exchange_id) AS exchange, "
        f"toString(sector) AS sector_key, sum(trades) AS trades, toString(sum(amount)) AS amount_s, "
        f"toString(sum(on_ex)) AS on_ex_s, toString(sum(hq)) AS hq_s, sum(records) AS records, sum(calls) AS calls, "
        f"sum(bytes) AS bytes FROM ({' UNION ALL '.join(sources)}) "
        f"GROUP BY GROUPING SETS ((period), (period, bucket), (period, exchange_id), (period, sector))"
    )
    for row in rows:
        into = found[int(row["period"])]
        figures, grouped = _figures(row), int(row["grouped"])  # a bit set for each column the row is NOT per
        if grouped == 0b011:
            into["trend"][row["bucket"]] = figures
        elif grouped == 0b101:
            into["by"].setdefault("exchange_id", {})[row["exchange"]] = figures
        elif grouped == 0b110:
            into["by"].setdefault("sector", {})[row["sector_key"]] = figures
        else:
            into["totals"] = figures
    return found


def first_seen_counts(store: Reader, snap: Snapshot, spans: list[Span]) -> list[dict[str, Any]]:
    """Per span: products first listed in it (any exchange, ever; per sector of that first listing), products first
    listed on each exchange in it, and participants first seen in it (as a trade's buyer or seller, or a listing's
    seller), as of the snapshot: `first_seen` as fed (FINAL: one merged row each) counted as it is, and what the
    rows stored since it was fed change in those counts (`_unfed_changes`), in one statement."""
    found: list[dict[str, Any]] = [{"products": 0, "participants": 0, "by": {}} for _ in spans]
    if snap.as_of_us is None or not spans:
        return found
    db = store.database
    changes = f"SELECT kind, exchange_id, toInt64(1) AS sign, first FROM {db}.first_seen FINAL"
    if snap.first_seen_fed_ms < snap.ingested_ms:
        changes += f" UNION ALL {_unfed_changes(store, snap)}"
    ends = [Span(span.start_us, min(span.end_us, snap.as_of_us + 1)) for span in spans]
    counts = ", ".join(f"sumIf(sign, {span.where('first.1')}) AS n{i}" for i, span in enumerate(ends))
    spanned = Span(min(span.start_us for span in ends), max(span.end_us for span in ends))
    rows = store.rows(
        f"SELECT kind, if(kind = 'product', first.2, toString(exchange_id)) AS key, {counts} "
        f"FROM ({changes}) WHERE {spanned.where('first.1')} GROUP BY kind, key"
    )
    dims = {"product": "sector", "listing": "exchange_id"}
    for row in rows:
        for i, into in enumerate(found):
            n = int(row[f"n{i}"])
            if row["kind"] == "party":
                into["participants"] += n
            else:
                into["by"].setdefault(dims[row["kind"]], {})[row["key"]] = n
                if row["kind"] == "product":
                    into["products"] += n
    return found


def _unfed_changes(store: Reader, snap: Snapshot) -> str:
    """What the rows stored since `first_seen` was fed (as of the snapshot) change in its counts, as rows (kind,
    exchange_id, sign, first): a key only they name +1 at its first; a key whose first they move earlier +1 at the
    new first and -1 at the fed one (a product's sector, its key, may differ between the two). Those rows are few
    (read from the parts that hold them: `stored_since`) and are the hash table that `first_seen` is joined to
    (its rows as they are: the fed first is their minimum), so the count's FINAL read is the only one that
    merges."""
    db, key = store.database, "kind, id, exchange_id"
    since = stored_since(store, ("listings", "trades"), snap.first_seen_fed_ms - FED_MARGIN_S * 1000)
    stored = f"SELECT {key}, min(first) AS first FROM ({first_seen_rows(db, snap.raw(), since)}) GROUP BY {key}"
    firsts = (
        f"SELECT s.kind AS kind, s.id AS id, s.exchange_id AS exchange_id, any(s.first) AS stored_first, "
        f"min(f.first) AS fed_first, max(f.fed) AS was_fed FROM (SELECT {key}, first, true AS fed "
        f"FROM {db}.first_seen) AS f RIGHT JOIN ({stored}) AS s "
        f"ON f.kind = s.kind AND f.id = s.id AND f.exchange_id = s.exchange_id GROUP BY kind, id, exchange_id"
    )
    return (
        f"SELECT kind, exchange_id, change.1, change.2 FROM ({firsts}) ARRAY JOIN if(was_fed, "
        f"if(stored_first < fed_first, [(toInt64(1), stored_first), (toInt64(-1), fed_first)], []), "
        f"[(toInt64(1), stored_first)]) AS change"
    )
