"""Rows of one processed batch, as columnar Arrow tables shaped like the ClickHouse tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from models import Alert, AnyEvent, Heartbeat, Listing, Trade, Usage

_TS6 = pa.timestamp("us", tz="UTC")
_TS3 = pa.timestamp("ms", tz="UTC")
_MONEY = pa.decimal128(38, 2)
_SOURCE = [("late", pa.uint8()), ("src_partition", pa.int32()), ("src_offset", pa.int64()), ("ingested_at", _TS3)]
_DIMS = [("sector", pa.string()), ("category", pa.string()), ("source", pa.string()), ("high_quality", pa.uint8())]

SCHEMAS: dict[str, pa.Schema] = {
    "listings": pa.schema(
        [
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("occurred_at", _TS6),
            ("action", pa.string()),
            ("product_id", pa.string()),
            ("seller_id", pa.string()),
            ("title", pa.string()),
            ("category", pa.string()),
            ("source", pa.string()),
            ("sector", pa.string()),
            ("pricing", pa.string()),
            ("list_price", _MONEY),
            ("unit", pa.string()),
            ("high_quality", pa.uint8()),
            ("size_bytes", pa.uint64()),
            ("recognized_by", pa.list_(pa.string())),
            *_SOURCE,
        ]
    ),
    "trades": pa.schema(
        [
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("occurred_at", _TS6),
            ("trade_id", pa.string()),
            ("product_id", pa.string()),
            ("buyer_id", pa.string()),
            ("seller_id", pa.string()),
            ("price", _MONEY),
            ("quantity", pa.uint64()),
            ("amount", _MONEY),
            ("currency", pa.string()),
            ("venue", pa.string()),
            ("purpose", pa.string()),
            ("data_bytes", pa.uint64()),
            *_DIMS,
            *_SOURCE,
        ]
    ),
    "usage": pa.schema(
        [
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("occurred_at", _TS6),
            ("product_id", pa.string()),
            ("buyer_id", pa.string()),
            ("calls", pa.uint64()),
            ("bytes", pa.uint64()),
            *_DIMS,
            *_SOURCE,
        ]
    ),
    "heartbeats": pa.schema(
        [
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("occurred_at", _TS6),
            ("seq", pa.uint64()),
            *_SOURCE,
        ]
    ),
    "rejected_events": pa.schema(
        [
            ("src_topic", pa.string()),
            ("src_partition", pa.int32()),
            ("src_offset", pa.int64()),
            ("message_key", pa.string()),
            ("raw", pa.binary()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("received_at", _TS3),
        ]
    ),
    "duplicate_events": pa.schema(
        [
            ("src_topic", pa.string()),
            ("src_partition", pa.int32()),
            ("src_offset", pa.int64()),
            ("exchange_id", pa.string()),
            ("event_id", pa.string()),
            ("type", pa.string()),
            ("first_partition", pa.int32()),
            ("first_offset", pa.int64()),
            ("received_at", _TS3),
        ]
    ),
    "processed_batches": pa.schema(
        [
            ("src_topic", pa.string()),
            ("topic_id", pa.string()),
            ("src_partition", pa.int32()),
            ("first_offset", pa.int64()),
            ("last_offset", pa.int64()),
            ("messages", pa.uint32()),
            ("processed_at", _TS3),
        ]
    ),
    "alerts": pa.schema(
        [
            ("schema", pa.string()),
            ("alert_id", pa.string()),
            ("kind", pa.string()),
            ("severity", pa.string()),
            ("exchange_id", pa.string()),
            ("product_id", pa.string()),
            ("parties", pa.list_(pa.string())),
            ("event_ids", pa.list_(pa.string())),
            ("score", pa.float64()),
            ("window_start", _TS3),
            ("window_end", _TS3),
            ("detected_at", _TS3),
            ("dedup_key", pa.string()),
            ("message", pa.string()),
            ("message_zh", pa.string()),
        ]
    ),
}

EVENT_TABLE: dict[type, str] = {Listing: "listings", Trade: "trades", Usage: "usage", Heartbeat: "heartbeats"}


@dataclass(frozen=True, slots=True)
class Dims:
    """The product's classification, looked up from its listing when the event arrived."""

    sector: str = "unknown"
    category: str = "unknown"
    source: str = "unknown"
    high_quality: bool = False


@dataclass(slots=True)
class StoredEvent:
    event: AnyEvent
    partition: int
    offset: int
    late: bool
    dims: Dims


@dataclass(slots=True)
class Rejected:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    reason: str
    detail: str
    exchange_id: str
    event_id: str


@dataclass(slots=True)
class Duplicate:
    topic: str
    partition: int
    offset: int
    exchange_id: str
    event_id: str
    type: str
    first_partition: int
    first_offset: int


@dataclass(slots=True)
class Marker:
    """A partition's offset range that this batch stores completely."""

    topic: str
    topic_id: str
    partition: int
    first_offset: int
    last_offset: int
    messages: int


@dataclass(slots=True)
class BatchRows:
    """Everything one batch writes, grouped by table."""

    events: dict[str, list[StoredEvent]] = field(default_factory=lambda: {t: [] for t in EVENT_TABLE.values()})
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)

    def add(self, stored: StoredEvent) -> None:
        self.events[EVENT_TABLE[type(stored.event)]].append(stored)

    def tables(self, now: datetime | None = None) -> dict[str, pa.Table]:
        """Non-empty Arrow tables by ClickHouse table name, in write order.

        Alerts first (their evidence must not be marked stored before them), the
        progress markers last (they promise that everything before them landed).
        """
        now = now or datetime.now(UTC)
        out: dict[str, list[dict[str, Any]]] = {
            "alerts": [_alert_row(a) for a in self.alerts],
            "rejected_events": [_rejected_row(r, now) for r in self.rejected],
            "duplicate_events": [_duplicate_row(d, now) for d in self.duplicates],
        }
        for table, stored in self.events.items():
            out[table] = [_event_row(s, now) for s in stored]
        out["processed_batches"] = [
            {
                "src_topic": m.topic,
                "topic_id": m.topic_id,
                "src_partition": m.partition,
                "first_offset": m.first_offset,
                "last_offset": m.last_offset,
                "messages": m.messages,
                "processed_at": now,
            }
            for m in self.markers
        ]
        return {name: pa.Table.from_pylist(rows, schema=SCHEMAS[name]) for name, rows in out.items() if rows}


def _event_row(stored: StoredEvent, now: datetime) -> dict[str, Any]:
    row = stored.event.model_dump(exclude={"schema_", "type"})
    if isinstance(stored.event, Listing):
        row["high_quality"] = int(stored.event.high_quality)
    elif not isinstance(stored.event, Heartbeat):
        row.update(
            sector=stored.dims.sector,
            category=stored.dims.category,
            source=stored.dims.source,
            high_quality=int(stored.dims.high_quality),
        )
    row.update(late=int(stored.late), src_partition=stored.partition, src_offset=stored.offset, ingested_at=now)
    return row


def _rejected_row(rejected: Rejected, now: datetime) -> dict[str, Any]:
    return {
        "src_topic": rejected.topic,
        "src_partition": rejected.partition,
        "src_offset": rejected.offset,
        "message_key": rejected.key.decode("utf-8", errors="replace") if rejected.key is not None else None,
        "raw": rejected.raw,
        "reason": rejected.reason,
        "detail": rejected.detail,
        "exchange_id": rejected.exchange_id,
        "event_id": rejected.event_id,
        "received_at": now,
    }


def _duplicate_row(duplicate: Duplicate, now: datetime) -> dict[str, Any]:
    return {
        "src_topic": duplicate.topic,
        "src_partition": duplicate.partition,
        "src_offset": duplicate.offset,
        "exchange_id": duplicate.exchange_id,
        "event_id": duplicate.event_id,
        "type": duplicate.type,
        "first_partition": duplicate.first_partition,
        "first_offset": duplicate.first_offset,
        "received_at": now,
    }


def _alert_row(alert: Alert) -> dict[str, Any]:
    """Field values as Python objects (model_dump would render the timestamps as text)."""
    row = {name: getattr(alert, name) for name in type(alert).model_fields}
    row["schema"] = row.pop("schema_")
    return row
