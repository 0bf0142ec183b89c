"""The worker's engine, free of Faust: a batch of raw messages in, rows and alerts out.

Per batch: decode and validate each message, tell redeliveries from duplicates,
classify late events, enrich trades and usage from the product book, run the
detectors, then write everything to ClickHouse (retrying with backoff: while the
store is down the worker stops consuming) and only then count metrics. Minute
windows are rebuilt from the stored rows on `flush`. The caller acknowledges a
batch's offsets only after `flush` returns, so a crash at any moment replays
what was not yet safely stored, and the redelivery index keeps it from being
stored or counted twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from models import SEVERITY, AnyEvent, Heartbeat, Listing, Trade, Usage, occurred_ms
from settings import Settings
from sinks import prometheus as metrics
from sinks.clickhouse import (
    BatchRows,
    Duplicate,
    Marker,
    Rejected,
    Store,
    StoredEvent,
    StoreError,
)
from sinks.clickhouse.batches import SCHEMAS
from sinks.clickhouse.records import record_rule_change
from sinks.clickhouse.state import StateReader
from streams.alerts import AlertLedger
from streams.book import ProductBook
from streams.decode import REASONS, Rejection, decode
from streams.dedup import EventIndex, Progress
from streams.detectors import build_detectors
from streams.detectors.base import Detector, Finding, MarketContext
from streams.rules import (
    RuleChangeError,
    apply_change,
    parse_change,
    restore_rules,
    rule_change_record,
)
from streams.windows import WindowFlusher

log = logging.getLogger("dmm.pipeline")

PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from dm.events, as the broker gave it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


Publish = Callable[[str, bytes | None, bytes], Awaitable[None]]


class Pipeline:
    def __init__(self, settings: Settings, store: Store, publish: Publish, topic_id: str = "") -> None:
        self.settings = settings
        self.store = store
        self.publish = publish
        self.book = ProductBook()
        self.ctx = MarketContext(
            rules=settings.rules, book=self.book, allowed_lateness_ms=settings.allowed_lateness_s * 1000
        )
        self.index = EventIndex(horizon_ms=settings.dedup_horizon_s * 1000)
        self.progress = Progress(topic=settings.kafka.events_topic, topic_id=topic_id)
        self.windows = WindowFlusher(store)
        self.detectors: list[Detector] = build_detectors(settings.rules)
        self.ledger = AlertLedger()
        self.lock = asyncio.Lock()
        metrics.start_at_zero([*REASONS, PROCESSING_ERROR], SEVERITY, [*SCHEMAS, "market_1m", "rule_changes"])

    # -- start-up -------------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild every piece of in-memory state from ClickHouse, the source of truth."""
        started = time.monotonic()
        state = StateReader(self.store)
        progress = self.progress.restore(state)
        self.ctx.watermark_ms = state.watermark_ms(progress)
        for listing in state.listings():
            self.book.apply(listing)
        self.index.restore(state, self.ctx.watermark_ms)
        self.windows.restore(state)
        self.ctx.rules = restore_rules(state, self.settings.rules)
        for detector in self.detectors:
            detector.restore(state, self.ctx)
        self.ledger.restore(state)
        metrics.DEDUP_INDEX.set(len(self.index))
        metrics.WATERMARK.set(self.ctx.watermark_ms / 1000)
        log.info(
            "state restored from ClickHouse",
            extra={
                "watermark_ms": self.ctx.watermark_ms,
                "products": len(self.book.by_product),
                "dedup_index": len(self.index),
                "partition_marks": self.progress.marks,
                "stray_offsets": len(self.progress.stray),
                "dirty_windows": len(self.windows.dirty),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    # -- per batch --------------------------------------------------------------------------

    async def handle(self, messages: Sequence[Message]) -> None:
        """Process and durably store one batch (does not return until it is stored)."""
        async with self.lock:
            rows, counted = self._process(messages)
            await self._publish(rows)
            await self._write(rows)
            self._count(rows, counted)

    async def change_rules(self, raw: bytes | None) -> None:
        """Apply one dm.rules message (recorded either way); detectors read ctx.rules on every event."""
        async with self.lock:
            try:
                rules = apply_change(self.settings.rules, self.ctx.rules, parse_change(raw))
            except RuleChangeError as exc:
                error = str(exc)
                log.warning("rule change refused", extra={"error": error[:500]})
                refused = rule_change_record(raw, None, error)
                await self._retrying("rule_changes", lambda: record_rule_change(self.store, refused))
                return
            accepted = rule_change_record(raw, rules)
            await self._retrying("rule_changes", lambda: record_rule_change(self.store, accepted))
            self.ctx.rules = rules
            log.info("rules changed at runtime", extra={"rules": rules.model_dump(mode="json")})

    async def flush(self) -> int:
        """Rebuild dirty minute windows; the caller may acknowledge offsets once this returns."""
        async with self.lock:
            return await self._retrying("market_1m", lambda: self.windows.flush())

    async def tick(self) -> None:
        """Wall-clock rules (a live exchange going quiet) and alert resolutions: run on a timer."""
        async with self.lock:
            await asyncio.to_thread(self.ledger.sync, StateReader(self.store))  # resolutions made by ops since last tick
            rows = BatchRows()
            now_ms = int(time.time() * 1000)
            for detector in self.detectors:
                self._admit(rows, detector.tick(self.ctx, now_ms))
            if rows.alerts:
                await self._publish(rows)
                await self._write(rows)
                self._count(rows, [])

    def _process(self, messages: Sequence[Message]) -> tuple[BatchRows, list[StoredEvent]]:
        rows = BatchRows()
        fresh: list[StoredEvent] = []
        ranges: dict[tuple[str, int], list[int]] = {}
        for message in messages:
            ranges.setdefault((message.topic, message.partition), []).append(message.offset)
            if self.progress.seen(message.partition, message.offset):
                metrics.REDELIVERED.inc()
                stored_ms = self.progress.stray.get((message.partition, message.offset), 0)
                self.ctx.watermark_ms = max(self.ctx.watermark_ms, stored_ms)
                continue
            outcome = decode(message.value)
            if isinstance(outcome, Rejection):
                rows.rejected.append(
                    _rejected(message, outcome.reason, outcome.detail, outcome.exchange_id, outcome.event_id)
                )
                continue
            first = self.index.get(outcome.key)
            if first is not None:
                rows.duplicates.append(
                    Duplicate(
                        message.topic, message.partition, message.offset, outcome.exchange_id,
                        outcome.event_id, outcome.type, first[0], first[1],
                    )
                )
                continue
            stored = self._accept(outcome, message, rows)
            if stored is not None:
                fresh.append(stored)
        for detector in self.detectors:
            self._admit(rows, detector.advance(self.ctx))
        self.index.prune(self.ctx.watermark_ms)
        rows.markers = [
            Marker(topic, self.progress.topic_id, partition, min(offsets), max(offsets), len(offsets))
            for (topic, partition), offsets in ranges.items()
        ]
        return rows, fresh

    def _accept(self, event: AnyEvent, message: Message, rows: BatchRows) -> StoredEvent | None:
        at = occurred_ms(event.occurred_at)
        late = at < self.ctx.watermark_ms - self.ctx.allowed_lateness_ms
        if isinstance(event, Listing):
            self.book.apply(event)
            dims = self.book.dims(event.exchange_id, event.product_id)
        elif isinstance(event, Trade | Usage):
            dims = self.book.dims(event.exchange_id, event.product_id)
        else:
            dims = self.book.dims(event.exchange_id, "")
        self.ctx.late = late
        findings: list[Finding] = []
        for detector in self.detectors:
            try:
                findings.extend(detector.observe(event, self.ctx))
            except Exception as exc:  # a poison event must not stop the market's surveillance
                metrics.DETECTOR_ERRORS.labels(detector=detector.kind).inc()
                log.exception("detector failed on event", extra={"detector": detector.kind, "event_id": event.event_id})
                rows.rejected.append(
                    _rejected(
                        message,
                        PROCESSING_ERROR,
                        f"detector {detector.kind} failed on this event: {type(exc).__name__}: {exc}"[:2000],
                        event.exchange_id,
                        event.event_id,
                    )
                )
                return None
        self._admit(rows, findings)
        self.index.add(event.key, message.partition, message.offset, at)
        self.ctx.watermark_ms = max(self.ctx.watermark_ms, at)
        stored = StoredEvent(event, message.partition, message.offset, late, dims)
        rows.add(stored)
        if not late and not isinstance(event, Heartbeat) and not (isinstance(event, Listing) and event.action != "list"):
            self.windows.touch(at)
        return stored

    def _admit(self, rows: BatchRows, findings: list[Finding]) -> None:
        for finding in findings:
            alert = self.ledger.admit(finding)
            if alert is not None:
                rows.alerts.append(alert)

    # -- output -----------------------------------------------------------------------------

    async def _publish(self, rows: BatchRows) -> None:
        """Alerts and rejections to Kafka before the store: at-least-once, keyed for dedup."""
        kafka = self.settings.kafka
        for alert in rows.alerts:
            await self.publish(kafka.alerts_topic, alert.dedup_key.encode(), alert.to_json())
        for rejected in rows.rejected:
            await self.publish(kafka.rejected_topic, rejected.key, _rejected_json(rejected))

    async def _write(self, rows: BatchRows) -> None:
        for table, batch in rows.tables().items():
            token = _token(table, rows.markers, batch.num_rows)
            started = time.perf_counter()
            await self._retrying(table, lambda t=table, b=batch, k=token: self.store.insert(t, b, k))
            metrics.STORE_WRITE.labels(table=table).observe(time.perf_counter() - started)
        for marker in rows.markers:
            self.progress.advance(marker.partition, marker.last_offset)

    async def _retrying(self, what: str, operation: Callable[[], object]) -> int:
        """Run a store operation until it succeeds, backing off; consumption waits meanwhile."""
        delay = 0.1
        while True:
            try:
                result = await asyncio.to_thread(operation)
                metrics.STORE_BACKPRESSURE.set(0)
                return result if isinstance(result, int) else 0
            except StoreError as exc:
                metrics.STORE_FAILURES.labels(table=what).inc()
                metrics.STORE_BACKPRESSURE.set(1)
                log.warning(
                    "store write failed; retrying (consumption paused)",
                    extra={"table": what, "retry_in_s": delay, "error": str(exc)[:500]},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.clickhouse.insert_retry_max_s)

    def _count(self, rows: BatchRows, fresh: list[StoredEvent]) -> None:
        """Update metrics once per label set (prometheus-client label lookups are slow per event)."""
        now = time.time()
        events: Counter[tuple[str, str]] = Counter()
        late: Counter[str] = Counter()
        traded: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        last_event: dict[str, float] = {}
        lags = []
        for stored in fresh:
            event = stored.event
            at = occurred_ms(event.occurred_at) / 1000
            events[(event.type, event.exchange_id)] += 1
            lags.append(now - at)
            if stored.late:
                late[event.type] += 1
            if isinstance(event, Trade):
                traded[(event.exchange_id, stored.dims.sector)] += event.amount
            last_event[event.exchange_id] = max(at, last_event.get(event.exchange_id, 0.0))
        for (kind, exchange_id), n in events.items():
            metrics.EVENTS.labels(type=kind, exchange_id=exchange_id).inc(n)
        for kind, n in late.items():
            metrics.LATE.labels(type=kind).inc(n)
        for (exchange_id, sector), amount in traded.items():
            metrics.TRADED_AMOUNT.labels(exchange_id=exchange_id, sector=sector).inc(float(amount))
        for exchange_id, at in last_event.items():
            gauge = metrics.LAST_EVENT.labels(exchange_id=exchange_id)
            gauge.set(max(at, gauge._value.get()))
        for lag in lags:
            metrics.EVENT_LAG.observe(max(0.0, lag))
        for reason, n in Counter(r.reason for r in rows.rejected).items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        for kind, n in Counter(d.type for d in rows.duplicates).items():
            metrics.DUPLICATES.labels(type=kind).inc(n)
        for alert in rows.alerts:
            metrics.ALERTS.labels(kind=alert.kind, severity=alert.severity).inc()
        if rows.markers:
            metrics.BATCH_SIZE.observe(sum(m.messages for m in rows.markers))
        metrics.LAST_BATCH.set(now)
        metrics.WATERMARK.set(self.ctx.watermark_ms / 1000)
        metrics.DEDUP_INDEX.set(len(self.index))


def _rejected(message: Message, reason: str, detail: str, exchange_id: str, event_id: str) -> Rejected:
    return Rejected(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        raw=message.value or b"",
        reason=reason,
        detail=detail,
        exchange_id=exchange_id,
        event_id=event_id,
    )


def _rejected_json(rejected: Rejected) -> bytes:
    """The dm.rejected record: the message as received (UTF-8 if it was, else base64) and why."""
    try:
        raw_text, encoding = rejected.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, encoding = base64.b64encode(rejected.raw).decode(), "base64"
    return json.dumps(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": rejected.topic,
            "partition": rejected.partition,
            "offset": rejected.offset,
            "key": rejected.key.decode("utf-8", errors="replace") if rejected.key is not None else None,
            "raw": raw_text,
            "raw_encoding": encoding,
            "exchange_id": rejected.exchange_id or None,
            "event_id": rejected.event_id or None,
            "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
        ensure_ascii=False,
    ).encode()


def _token(table: str, markers: list[Marker], rows: int) -> str:
    """Deterministic per (table, offsets): a retried insert of the same batch is dropped by ClickHouse."""
    span = ",".join(f"{m.topic}:{m.partition}:{m.first_offset}-{m.last_offset}" for m in markers)
    return hashlib.sha1(f"{table}|{span}|{rows}".encode()).hexdigest()

