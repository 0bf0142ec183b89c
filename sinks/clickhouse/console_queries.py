"""Every statement the regulator's web console reads, behind typed functions taking a store.

The console must show what `dmm sql` shows on the same store, to the fen, so money
leaves ClickHouse as text (`toString` of the Decimal sum) and becomes a `Decimal`
here, never a float; counts are ints. Event tables are read with FINAL (a replayed or
retried insert must not count twice). Time spans are half-open `[start_us, end_us)` in
microseconds of event time (`occurred_at`), the unit the event tables store.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

from settings import Settings
from sinks.clickhouse import queries
from sinks.clickhouse.state import EVENT_TABLES
from sinks.clickhouse.store import Parameters

CENT = Decimal("0.01")
MAX_CLOCK_SKEW_S: float = Settings.model_fields["max_clock_skew_s"].default
EVERY_ALERT = 10**12
TrendStep = Literal["minute", "hour"]
TradeDimension = Literal["exchange_id", "sector"]


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
    such events, must not make "today" 2099."""
    bound = f"now64(6) + toIntervalMillisecond({round(max_clock_skew_s * 1000)})"
    parts = " UNION ALL ".join(
        f"SELECT toUnixTimestamp64Micro(max(occurred_at)) AS us, count() AS n FROM {store.database}.{table} "
        f"WHERE occurred_at <= {bound}"
        for table in EVENT_TABLES
    )
    rows = store.rows(f"SELECT max(us) AS us, sum(n) AS n FROM ({parts})")
    return int(rows[0]["us"]) if rows and int(rows[0]["n"]) > 0 else None


def trade_totals(store: Reader, span: Span) -> dict[str, Any]:
    """Trades in the span: count, amount, amount by venue and of high-quality datasets, quantity."""
    rows = store.rows(
        f"SELECT count() AS trades, toString(sum(amount)) AS amount_s, "
        f"toString(sumIf(amount, venue = 'on_exchange')) AS on_exchange_s, "
        f"toString(sumIf(amount, venue = 'off_exchange_registered')) AS off_exchange_s, "
        f"toString(sumIf(amount, high_quality = 1)) AS high_quality_s, sum(quantity) AS quantity_n, "
        f"uniqExact(buyer_id) AS buyers, uniqExact(seller_id) AS sellers "
        f"FROM {store.database}.trades FINAL WHERE {span.where()}"
    )
    row = rows[0]
    return {
        "trades": int(row["trades"]),
        "amount": money(row["amount_s"]),
        "on_exchange": money(row["on_exchange_s"]),
        "off_exchange": money(row["off_exchange_s"]),
        "high_quality": money(row["high_quality_s"]),
        "quantity": int(row["quantity_n"]),
        "buyers": int(row["buyers"]),
        "sellers": int(row["sellers"]),
    }


def trade_trend(store: Reader, span: Span, step: TrendStep) -> list[dict[str, Any]]:
    """Traded amount and trades per minute or per hour of the span (buckets with no trade omitted)."""
    bucket = "toStartOfMinute" if step == "minute" else "toStartOfHour"
    rows = store.rows(
        f"SELECT toUnixTimestamp({bucket}(occurred_at)) AS t, count() AS trades, toString(sum(amount)) AS amount_s "
        f"FROM {store.database}.trades FINAL WHERE {span.where()} GROUP BY t ORDER BY t"
    )
    return [{"t_ms": int(r["t"]) * 1000, "trades": int(r["trades"]), "amount": money(r["amount_s"])} for r in rows]


def trades_by(store: Reader, span: Span, dimension: TradeDimension) -> list[dict[str, Any]]:
    """Trades in the span per exchange or per sector: count, amount, venue and high-quality split."""
    rows = store.rows(
        f"SELECT toString({dimension}) AS key, count() AS trades, toString(sum(amount)) AS amount_s, "
        f"toString(sumIf(amount, venue = 'on_exchange')) AS on_exchange_s, "
        f"toString(sumIf(amount, high_quality = 1)) AS high_quality_s, uniqExact(product_id) AS products "
        f"FROM {store.database}.trades FINAL WHERE {span.where()} GROUP BY key ORDER BY key"
    )
    return [
        {
            "key": r["key"],
            "trades": int(r["trades"]),
            "amount": money(r["amount_s"]),
            "on_exchange": money(r["on_exchange_s"]),
            "high_quality": money(r["high_quality_s"]),
            "products": int(r["products"]),
        }
        for r in rows
    ]


def usage_by_exchange(store: Reader, span: Span) -> list[dict[str, Any]]:
    """Metering in the span per exchange: usage records, calls and bytes delivered."""
    rows = store.rows(
        f"SELECT toString(exchange_id) AS key, count() AS records, sum(calls) AS calls_n, sum(bytes) AS bytes_n "
        f"FROM {store.database}.usage FINAL WHERE {span.where()} GROUP BY key ORDER BY key"
    )
    return [
        {"key": r["key"], "records": int(r["records"]), "calls": int(r["calls_n"]), "bytes": int(r["bytes_n"])}
        for r in rows
    ]


def _first_listings(database: str, by: str) -> str:
    """Each product's (or exchange × product's) first `list` event: a product is new once, not per event."""
    return (
        f"SELECT {by}, min(occurred_at) AS first_at, argMin(sector, occurred_at) AS sector "
        f"FROM {database}.listings FINAL WHERE action = 'list' GROUP BY {by}"
    )


def new_products(store: Reader, span: Span) -> dict[str, int]:
    """Distinct products first listed (anywhere) in the span, next to the `list` events of the span."""
    rows = store.rows(
        f"SELECT (SELECT count() FROM ({_first_listings(store.database, 'product_id')}) "
        f"WHERE {span.where('first_at')}) AS products, "
        f"(SELECT count() FROM {store.database}.listings FINAL WHERE action = 'list' AND {span.where()}) AS events"
    )
    return {"products": int(rows[0]["products"]), "listing_events": int(rows[0]["events"])}


def new_products_by(store: Reader, span: Span, dimension: TradeDimension) -> dict[str, int]:
    """Products first listed in the span, per exchange (first `list` on that exchange) or per sector."""
    by = "exchange_id, product_id" if dimension == "exchange_id" else "product_id"
    rows = store.rows(
        f"SELECT toString(ifNull({dimension}, 'unknown')) AS key, count() AS products "
        f"FROM ({_first_listings(store.database, by)}) WHERE {span.where('first_at')} GROUP BY key"
    )
    return {r["key"]: int(r["products"]) for r in rows}


def new_participants(store: Reader, span: Span) -> dict[str, int]:
    """Participants first seen in the span: as buyers (trades), as sellers (trades and listings), either."""
    db = store.database
    parties = (
        f"SELECT buyer_id AS party, 'buyer' AS role, occurred_at AS at FROM {db}.trades FINAL "
        f"UNION ALL SELECT seller_id, 'seller', occurred_at FROM {db}.trades FINAL "
        f"UNION ALL SELECT assumeNotNull(seller_id), 'seller', occurred_at FROM {db}.listings FINAL "
        f"WHERE action = 'list' AND seller_id IS NOT NULL"
    )
    rows = store.rows(
        f"SELECT countIf({span.where('first_at')}) AS participants, "
        f"countIf(first_buy > toDateTime64(0, 6, 'UTC') AND {span.where('first_buy')}) AS buyers, "
        f"countIf(first_sell > toDateTime64(0, 6, 'UTC') AND {span.where('first_sell')}) AS sellers "
        f"FROM (SELECT party, min(at) AS first_at, minIf(at, role = 'buyer') AS first_buy, "
        f"minIf(at, role = 'seller') AS first_sell FROM ({parties}) GROUP BY party)"
    )
    return {key: int(value) for key, value in rows[0].items()}


def _active_listings(database: str) -> str:
    """Each exchange × product's latest state: still listed, and its last `list` event's attributes."""
    return (
        f"SELECT exchange_id, product_id, argMax(action, occurred_at) AS last_action, "
        f"argMaxIf(recognized_by, occurred_at, action = 'list') AS recognized, "
        f"argMaxIf(source, occurred_at, action = 'list') AS source, "
        f"argMaxIf(pricing, occurred_at, action = 'list') AS pricing "
        f"FROM {database}.listings FINAL WHERE action IN ('list', 'delist') GROUP BY exchange_id, product_id"
    )


def recognition_pairs(store: Reader) -> list[dict[str, Any]]:
    """Mutual recognition now: products listed on one exchange and recognised by another, per pair."""
    rows = store.rows(
        f"SELECT toString(exchange_id) AS listed_on, toString(recognizer) AS recognized_by, "
        f"uniqExact(product_id) AS products FROM ({_active_listings(store.database)}) "
        f"ARRAY JOIN recognized AS recognizer WHERE last_action = 'list' AND recognizer != exchange_id "
        f"GROUP BY listed_on, recognized_by ORDER BY products DESC, listed_on, recognized_by"
    )
    return [
        {"listed_on": r["listed_on"], "recognized_by": r["recognized_by"], "products": int(r["products"])} for r in rows
    ]


def recognized_products(store: Reader) -> int:
    """Distinct products currently recognised by at least one exchange other than the listing one."""
    rows = store.rows(
        f"SELECT uniqExact(product_id) AS n FROM ({_active_listings(store.database)}) "
        f"WHERE last_action = 'list' AND arrayExists(x -> x != exchange_id, recognized)"
    )
    return int(rows[0]["n"])


def public_catalogue(store: Reader) -> dict[str, int]:
    """Public-data products listed now, per pricing (free, conditional_free, paid)."""
    rows = store.rows(
        f"SELECT toString(ifNull(pricing, 'unknown')) AS pricing, uniqExact(product_id) AS products "
        f"FROM ({_active_listings(store.database)}) WHERE last_action = 'list' AND source = 'public' GROUP BY pricing"
    )
    return {r["pricing"]: int(r["products"]) for r in rows}


def public_supply(store: Reader, span: Span) -> dict[str, dict[str, Any]]:
    """Public data delivered in the span (trades and usage of `source = public` products), per the
    pricing of the product's latest listing."""
    db = store.database
    pricing = (
        f"SELECT product_id, toString(ifNull(argMax(pricing, occurred_at), 'unknown')) AS pricing "
        f"FROM {db}.listings FINAL WHERE action = 'list' GROUP BY product_id"
    )
    rows = store.rows(
        f"SELECT if(p.pricing = '', 'unknown', p.pricing) AS pricing, sum(d.trades) AS trades, "
        f"toString(sum(d.amount)) AS amount, sum(d.calls) AS calls FROM ("
        f"SELECT product_id, 1 AS trades, amount, toUInt64(0) AS calls FROM {db}.trades FINAL "
        f"WHERE source = 'public' AND {span.where()} "
        f"UNION ALL SELECT product_id, 0, toDecimal128(0, 2), calls FROM {db}.usage FINAL "
        f"WHERE source = 'public' AND {span.where()}) AS d LEFT JOIN ({pricing}) AS p ON d.product_id = p.product_id "
        f"GROUP BY pricing"
    )
    return {
        r["pricing"]: {"trades": int(r["trades"]), "amount": money(r["amount"]), "calls": int(r["calls"])} for r in rows
    }


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


def feed_events(store: Reader) -> list[dict[str, Any]]:
    """Per exchange and event type: events stored, late ones, latest event time and latest arrival."""
    parts = " UNION ALL ".join(
        f"SELECT toString(exchange_id) AS exchange_id, '{table}' AS type, count() AS events, sum(late) AS late, "
        f"toUnixTimestamp64Micro(max(occurred_at)) AS last_us, toUnixTimestamp64Milli(max(ingested_at)) AS arrived_ms "
        f"FROM {store.database}.{table} FINAL GROUP BY exchange_id"
        for table in EVENT_TABLES
    )
    rows = store.rows(f"SELECT * FROM ({parts}) ORDER BY exchange_id, type")
    return [
        {
            "exchange_id": r["exchange_id"],
            "type": r["type"],
            "events": int(r["events"]),
            "late": int(r["late"]),
            "last_us": int(r["last_us"]),
            "arrived_ms": int(r["arrived_ms"]),
        }
        for r in rows
    ]


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
