"""A small market for detector tests: events built with the contract models, fed as the pipeline does."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from models import Alert, AnyEvent, Dims, Heartbeat, Listing, Trade, occurred_ms
from settings import RuleSettings
from sinks.clickhouse import BatchRows, StoredEvent
from sinks.clickhouse.batches import SCHEMAS
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore
from streams.book import ProductBook
from streams.detectors.base import Detector, Finding, MarketContext

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=CST)  # a Saturday morning in Beijing
T0_MS = occurred_ms(T0)
LATENESS_S = 300

_ids = itertools.count(1)


def when(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def ms(seconds: float) -> int:
    return T0_MS + int(seconds * 1000)


def trade(
    t: float,
    *,
    exchange: str = "SHDEX",
    product: str = "P1",
    seller: str = "S1",
    buyer: str = "B1",
    price: str = "100.00",
    quantity: int = 1,
    purpose: str = "commercial",
    event_id: str | None = None,
) -> Trade:
    n = next(_ids)
    amount = str(Decimal(price) * quantity)
    return Trade.model_validate(
        {
            "schema": "dm.v1",
            "type": "trade",
            "event_id": event_id or f"{exchange}-T-{n}",
            "exchange_id": exchange,
            "occurred_at": when(t),
            "trade_id": f"T{n}",
            "product_id": product,
            "buyer_id": buyer,
            "seller_id": seller,
            "price": price,
            "quantity": quantity,
            "amount": amount,
            "currency": "CNY",
            "venue": "on_exchange",
            "purpose": purpose,
        }
    )


def listing(
    t: float,
    *,
    exchange: str = "SHDEX",
    product: str = "P1",
    action: str = "list",
    price: str | None = "100.00",
    source: str = "enterprise",
    pricing: str = "paid",
    recognized_by: Sequence[str] = (),
    seller: str = "S1",
) -> Listing:
    n = next(_ids)
    body: dict[str, object] = {
        "schema": "dm.v1",
        "type": "listing",
        "event_id": f"{exchange}-L-{n}",
        "exchange_id": exchange,
        "occurred_at": when(t),
        "action": action,
        "product_id": product,
        "recognized_by": list(recognized_by),
    }
    if action == "list":
        body.update(
            seller_id=seller, title="测试数据集", category="dataset", source=source, sector="transportation",
            pricing=pricing, unit="license",
        )
    if price is not None and action != "delist":
        body["list_price"] = price
    return Listing.model_validate(body)


def heartbeat(t: float, exchange: str = "SHDEX") -> Heartbeat:
    n = next(_ids)
    return Heartbeat.model_validate(
        {"schema": "dm.v1", "type": "heartbeat", "event_id": f"{exchange}-H-{n}", "exchange_id": exchange,
         "occurred_at": when(t), "seq": n}
    )


class Market:
    """Feeds events to one detector exactly as the pipeline does (book first, then observe; advance per batch)."""

    def __init__(self, detector: Detector, rules: RuleSettings | None = None) -> None:
        self.detector = detector
        self.ctx = MarketContext(
            rules=rules or RuleSettings(), book=ProductBook(), allowed_lateness_ms=LATENESS_S * 1000
        )
        self.history: list[AnyEvent] = []
        self.last_late = False  # whether the last event fed was later than the allowed lateness

    def feed(self, *events: AnyEvent) -> list[Finding]:
        """One batch: observe every event in arrival order, then advance."""
        findings: list[Finding] = []
        for event in events:
            at = occurred_ms(event.occurred_at)
            if isinstance(event, Listing):
                self.ctx.book.apply(event)
            self.last_late = self.ctx.is_late(at)
            self.ctx.watermark_ms = max(self.ctx.watermark_ms, at)  # as the pipeline: rules see this event's time
            findings.extend(self.detector.observe(event, self.ctx))
            self.history.append(event)
        findings.extend(self.detector.advance(self.ctx))
        return findings

    def each(self, events: Iterable[AnyEvent]) -> list[Finding]:
        """Every event as its own batch."""
        return [finding for event in events for finding in self.feed(event)]


def store_events(store: ChdbStore, events: Iterable[AnyEvent], late: Iterable[str] = ()) -> None:
    """Insert events the way the worker does (BatchRows -> Arrow -> store.insert)."""
    late_ids = set(late)
    rows = BatchRows()
    for offset, event in enumerate(events):
        rows.add(StoredEvent(event, 0, offset, event.event_id in late_ids, Dims()))
    for table, batch in rows.tables().items():
        store.insert(table, batch, f"test-{table}-{next(_ids)}")


def store_alerts(store: ChdbStore, alerts: Iterable[Alert]) -> None:
    """Insert alerts as rows of the `alerts` table (timestamps as datetimes, not their JSON strings)."""
    rows = []
    for alert in alerts:
        row = alert.model_dump()
        row.update(
            schema=row.pop("schema_"),
            window_start=alert.window_start,
            window_end=alert.window_end,
            detected_at=alert.detected_at,
        )
        rows.append(row)
    store.insert("alerts", pa.Table.from_pylist(rows, schema=SCHEMAS["alerts"]), f"test-alerts-{next(_ids)}")


def restored(
    detector: Detector, store: ChdbStore, events: Sequence[AnyEvent], rules: RuleSettings | None = None
) -> Market:
    """A fresh market whose book and watermark are rebuilt like the pipeline's, then `detector.restore`."""
    market = Market(detector, rules)
    for event in events:
        if isinstance(event, Listing):
            market.ctx.book.apply(event)
        market.ctx.watermark_ms = max(market.ctx.watermark_ms, occurred_ms(event.occurred_at))
    detector.restore(StateReader(store), market.ctx)
    return market


def open_store(path: Path) -> ChdbStore:
    store = ChdbStore(path)
    store.apply_schema()
    return store
