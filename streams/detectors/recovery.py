"""Reading detector state back from ClickHouse, the source of truth, after a worker restart.

There are no Faust tables: every detector keeps bounded state in memory and, on
start, rebuilds it from the stored events (and, where an incident must not be
raised twice, from the stored alerts). These are the queries they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from models import Trade
from sinks.clickhouse import Store

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_TABLES = ("listings", "trades", "usage", "heartbeats")


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


def since(ms: int) -> str:
    """SQL for an instant given in ms since the epoch."""
    return f"fromUnixTimestamp64Milli(toInt64({int(ms)}), 'UTC')"


def recent_trades(store: Store, since_ms: int) -> list[StoredTrade]:
    """Trades that happened at or after `since_ms`, in event-time order."""
    rows = store.rows(
        "SELECT exchange_id, event_id, toUnixTimestamp64Micro(occurred_at) AS us, trade_id, product_id, "
        "buyer_id, seller_id, toString(price) AS price, quantity, toString(amount) AS amount, currency, "
        f"venue, purpose, data_bytes, late FROM {store.database}.trades FINAL "
        f"WHERE occurred_at >= {since(since_ms)} ORDER BY occurred_at, exchange_id, event_id"
    )
    return [StoredTrade(_trade(row), bool(int(row["late"]))) for row in rows]


def stored_alerts(store: Store, kind: str, since_ms: int = 0) -> list[StoredAlert]:
    """Alerts of one kind whose window ends at or after `since_ms` (or has no end), oldest first."""
    rows = store.rows(
        "SELECT dedup_key, exchange_id, product_id, event_ids, "
        "toUnixTimestamp64Milli(window_start) AS start_ms, toUnixTimestamp64Milli(window_end) AS end_ms "
        f"FROM {store.database}.alerts FINAL WHERE kind = '{kind}' "
        f"AND (window_end IS NULL OR window_end >= {since(since_ms)}) ORDER BY detected_at, dedup_key"
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


def exchange_spans(store: Store, since_ms: int) -> dict[str, tuple[int, int]]:
    """Per exchange, the first and last event time (ms) of any event type at or after `since_ms`."""
    union = " UNION ALL ".join(
        f"SELECT exchange_id, occurred_at FROM {store.database}.{table} WHERE occurred_at >= {since(since_ms)}"
        for table in EVENT_TABLES
    )
    rows = store.rows(
        "SELECT toString(exchange_id) AS exchange_id, toUnixTimestamp64Milli(min(occurred_at)) AS first_ms, "
        f"toUnixTimestamp64Milli(max(occurred_at)) AS last_ms FROM ({union}) GROUP BY exchange_id"
    )
    return {row["exchange_id"]: (int(row["first_ms"]), int(row["last_ms"])) for row in rows}


def latest_events(store: Store, since_ms: int) -> dict[str, tuple[int, str]]:
    """Per exchange, the event time (ms) and event id of its latest event of any type at or after `since_ms`."""
    union = " UNION ALL ".join(
        f"SELECT exchange_id, event_id, occurred_at FROM {store.database}.{table} "
        f"WHERE occurred_at >= {since(since_ms)}"
        for table in EVENT_TABLES
    )
    rows = store.rows(
        "SELECT toString(exchange_id) AS exchange_id, toUnixTimestamp64Milli(max(occurred_at)) AS last_ms, "
        f"argMax(event_id, (occurred_at, event_id)) AS event_id FROM ({union}) GROUP BY exchange_id"
    )
    return {row["exchange_id"]: (int(row["last_ms"]), row["event_id"]) for row in rows}


def _trade(row: dict[str, Any]) -> Trade:
    occurred = _EPOCH + timedelta(microseconds=int(row["us"]))
    data = {
        "schema": "dm.v1",
        "type": "trade",
        "event_id": row["event_id"],
        "exchange_id": row["exchange_id"],
        "occurred_at": occurred.isoformat(),
        "trade_id": row["trade_id"],
        "product_id": row["product_id"],
        "buyer_id": row["buyer_id"],
        "seller_id": row["seller_id"],
        "price": row["price"],
        "quantity": int(row["quantity"]),
        "amount": row["amount"],
        "currency": row["currency"],
        "venue": row["venue"],
        "purpose": row["purpose"],
        "data_bytes": None if row["data_bytes"] is None else int(row["data_bytes"]),
    }
    return Trade.model_validate(data)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
