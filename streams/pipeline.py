"""The worker's engine, free of Faust: the async shell around the batch core (`streams.batch`).

The core turns a fetch into a processed batch in memory (decode, dedup, surveillance,
Arrow). This shell stages its tables for the store (`Store.stage`: the embedded store
spools them to files), then, batches strictly in order: *publish* alerts and rejections
to Kafka, *store* every table (retrying with backoff: while the store is down the
worker stops consuming), then report the batch (`PipelineSensor`). Market windows
(minutes, hours, days) are written on `flush`, beside the batches (`streams.windows`).
The caller commits a batch's offsets only after `flush` returns, so a crash at any
moment replays what was not yet safely stored, and the redelivery index keeps it from
being stored or counted twice. Rule changes, wall-clock rules (`tick`) and alerts found
off the batch path (`emit_alerts`) go through the same lock as the batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from models import SEVERITY, Alert
from settings import RuleSettings, Settings
from sinks.clickhouse import BatchRows, Store, StoreError
from sinks.clickhouse.batches import SCHEMAS, STORED_STAMP
from sinks.clickhouse.records import record_rule_change
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import Staged, Write
from sinks.prometheus import PipelineSensor, start_at_zero
from streams import kept_state
from streams.batch import BatchProcessor, Processed, StageTimes
from streams.batch_records import PROCESSING_ERROR
from streams.decode import REASONS, WallClock
from streams.dedup import EventIndex, Progress
from streams.detectors import Scope, build_detectors
from streams.records import Record
from streams.rejected import rejected_record
from streams.rules import (
    OpsKey,
    RecordHeaders,
    RuleChangeError,
    apply_change,
    parse_change,
    restore_rules,
    rule_change_record,
)
from streams.surveillance import Surveillance
from streams.windows import WindowFlusher

log = logging.getLogger("dmm.pipeline")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch processed in memory and staged, ready to be stored."""

    processed: Processed
    staged: Staged  # its tables, encoded for the store as the batch was prepared (`Store.stage`)


Publish = Callable[[str, bytes | None, bytes], Awaitable[None]]


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        publish: Publish,
        topic_id: str = "",
        surveillance: Surveillance | None = None,
        forward: Callable[[bytes], None] | None = None,
        reader: Callable[..., StateReader] = StateReader,
        scope: Scope = "all",
        sensor: PipelineSensor | None = None,
    ) -> None:
        """`scope`: which rules run here (`all` when this worker owns every partition: see `streams.market`).
        `sensor`: where it reports (one per process: a new pipeline after a rebalance goes on from its figures)."""
        self.settings = settings
        self.store = store
        self.reader = reader  # restore questions over the store (tests pass the in-memory one)
        self.ops_key = OpsKey.configured(settings.ops_key)  # verifies changes on dm.rules
        if self.ops_key.secret is None:
            log.warning("rule changes will be refused", extra={"error": self.ops_key.problem})
        self.publish = publish
        self.forward = forward  # stored alerts to the ops webhook (never blocks: see sinks.webhook)
        self.sensor = sensor or PipelineSensor()
        self.surveillance = surveillance or Surveillance(
            settings.rules,
            settings.allowed_lateness_s * 1000,
            build_detectors(settings.rules, scope, settings.state_path, settings.wash_trading_ram_legs),
            partition_idle_ms=int(settings.partition_idle_s * 1000),
        )
        self.index = EventIndex(settings.dedup_horizon_s * 1000, settings.state_path)
        self.progress = Progress(topic=settings.kafka.events_topic, topic_id=topic_id)
        self.core = BatchProcessor(settings, self.surveillance, self.index, self.progress)
        self.windows = WindowFlusher(store, keep=scope == "all", lateness_ms=settings.allowed_lateness_s * 1000)
        self.lock = asyncio.Lock()  # batches, flushes, rule changes and emitted alerts: one at a time
        self._searching = asyncio.Lock()  # one off-batch search (the market stage's poll or tick) at a time
        self._rule_changes = 0  # rule changes applied here (`tick` must not undo one with rules read before it)
        self._unstored = 0  # batches processed and not yet stored (`keep_state` needs none)
        self.kept_state_outcome = ""  # what `restore` said of the state the last stop kept: "taken", or why not
        start_at_zero([*REASONS, PROCESSING_ERROR], SEVERITY, [*SCHEMAS, "market_1m", "rule_changes"])

    # -- start-up -------------------------------------------------------------------------

    def restore(self) -> dict[str, float]:
        """Rebuild every piece of in-memory state from ClickHouse, the source of truth; the seconds each part
        took (a day of state at national rates takes minutes: `dmm bench --restore-trades`)."""
        started = time.monotonic()
        took: dict[str, float] = {}

        def part(name: str, since: float) -> float:
            now = time.monotonic()
            took[name] = round(now - since, 3)
            return now

        # Rows stamped beyond the clock's bound (stored before it was enforced) do not restore event time.
        state = self.reader(self.store, not_after_ms=WallClock.read(self.settings.max_clock_skew_s).latest_ms)
        progress = self.progress.restore(state)
        self.core.restored()
        kept, why = None, "stray rows in the store"
        if not progress.stray:
            origin = self._origin(restore_rules(state, self.settings.rules))
            kept, why = kept_state.take(self.settings.state_path, origin)
        self.kept_state_outcome = why
        mark = part("progress", started)
        try:
            rules = kept / "rules" if kept is not None else None
            self.surveillance.restore(state, state.partition_watermarks(progress), rules)
            watermark_ms = self.surveillance.watermark_ms
            mark = part("surveillance", mark)
            kept_state.take_or_rebuild(
                kept / "dedup" if kept is not None else None,
                partial(self.index.take, watermark_ms=watermark_ms),
                partial(self.index.restore, state, watermark_ms),
            )
            mark = part("dedup_index", mark)
        finally:
            if kept is not None:
                shutil.rmtree(kept, ignore_errors=True)  # what was taken has moved out of it
        self.windows.restore(state)
        part("windows", mark)
        self.sensor.on_restored(len(self.index), watermark_ms)
        self._on_index()
        log.info(
            "state restored from ClickHouse",
            extra={
                "watermark_ms": watermark_ms,
                "products": len(self.surveillance.book.by_product),
                "dedup_index": len(self.index),
                "log_id": self.progress.topic_id,
                "partition_marks": self.progress.marks,
                "stray_offsets": len(self.progress.stray),
                "dirty_windows": self.windows.pending,
                "kept_state": why,
                "seconds": round(time.monotonic() - started, 3),
                "seconds_by_part": took,
            },
        )
        return took

    def _origin(self, rules: RuleSettings) -> dict[str, object]:
        """What the kept state is built from, as `streams.kept_state` compares it: the log, every partition's
        mark, and the settings that shape it (the rules in force, the duplicate horizon)."""
        return {
            "log_id": self.progress.topic_id,
            "marks": {str(partition): mark for partition, mark in sorted(self.progress.marks.items())},
            "rules": rules.model_dump(mode="json"),
            "dedup_horizon_s": self.settings.dedup_horizon_s,
        }

    def keep_state(self) -> bool:
        """On a graceful stop: leave the duplicate index and the rules' disk state for the next start
        (`streams.kept_state`), if every batch processed was stored (the state then is what the store holds).
        The pipeline is unusable afterwards. Whether it was kept."""
        if self._unstored or self.progress.stray:
            log.info("state not kept: batches in flight", extra={"unstored": self._unstored})
            return False
        began = time.monotonic()
        origin = self._origin(self.surveillance.ctx.rules)
        parts = {"dedup": self.index.keep, "rules": self.surveillance.keep}
        kept = kept_state.keep(self.settings.state_path, origin, parts)
        took = round(time.monotonic() - began, 3)
        log.info("state kept for the next start", extra={"path": str(kept), "seconds": took})
        return True

    # -- per batch --------------------------------------------------------------------------

    async def handle(self, messages: Sequence[Record], ends: Mapping[int, int | None] | None = None) -> dict[int, int]:
        """Process and durably store one batch (does not return until it is stored); returns, per partition,
        the last offset processed (records ahead of the other partitions wait: see `streams.alignment`).
        `ends`: each owned partition's end offset when fetched, to tell which partitions are caught up."""
        return await self.persist(self.prepare(messages, ends))

    def prepare(self, messages: Sequence[Record], ends: Mapping[int, int | None] | None = None) -> Prepared:
        """The CPU half of a batch, in the event loop without awaiting (so nothing interleaves with it):
        processed by the core, then staged. It may run while the previous batch is being stored."""
        processed = self.core.process(messages, ends or {})
        self._unstored += 1  # the state now holds a batch the store does not yet
        prepared = self._staged(processed)
        processed.times.switch("arrow")  # staging counts as building the tables
        for name, seconds in processed.times.seconds.items():
            self.sensor.on_stage(name, seconds)
        return prepared

    def _staged(self, processed: Processed) -> Prepared:
        """A batch's tables staged for the store (in order; the progress markers last, stamped as they are
        stored)."""
        rows = processed.rows
        writes = [
            Write(table, batch, _token(table, rows, batch.num_rows), STORED_STAMP.get(table))
            for table, batch in processed.tables.items()
        ]
        return Prepared(processed, self.store.stage(writes))

    def _alerts_only(self, alerts: list[Alert]) -> Prepared:
        """Alerts found off the batch path, as a batch of their own (no offsets)."""
        rows = BatchRows(alerts=alerts)
        return self._staged(Processed(rows, set(), rows.tables(), StageTimes()))

    async def persist(self, prepared: Prepared) -> dict[int, int]:
        """The I/O half, batches strictly in order: alerts and rejections to Kafka, rows to the store; only
        then its minutes count as dirty, its offsets as processed and its metrics as counted."""
        async with self.lock:
            stored = await self._emit(prepared)
        self._unstored -= 1
        return stored

    async def _emit(self, prepared: Prepared) -> dict[int, int]:
        """Publish, store, mark windows dirty, forward and count one prepared batch (the lock is held)."""
        processed = prepared.processed
        rows = processed.rows
        with self.sensor.stage("publish"):
            await self._publish(rows)
        await self._write(rows, prepared.staged)
        if processed.minutes:
            self.windows.stored(processed.minutes, processed.tables)
        self._forward(rows)
        with self.sensor.stage("metrics"):
            self.sensor.on_batch_stored(rows, processed.tables, self.surveillance.watermark_ms, len(self.index))
            self.sensor.on_mishaps(processed.mishaps.redelivered, processed.mishaps.detectors_failed)
            self._on_index()
        return {marker.partition: marker.last_offset for marker in rows.markers}

    def _on_index(self) -> None:
        index = self.index
        self.sensor.on_dedup_index(index.ram_bytes(), index.disk_bytes(), index.probes.keys, index.probes.disk)

    @property
    def holding(self) -> int:
        """Records held back by event-time alignment, waiting for the other partitions."""
        return len(self.core.waiting)

    async def change_rules(self, raw: bytes | None, headers: RecordHeaders) -> None:
        """Apply one dm.rules message signed with the operators' key (recorded either way, a refused one with
        why, and counted); detectors read the rules on every event."""
        ctx = self.surveillance.ctx
        async with self.lock:
            try:
                key_id = self.ops_key.verify(raw, headers)
                rules = apply_change(self.settings.rules, ctx.rules, parse_change(raw))
            except RuleChangeError as exc:
                error = str(exc)
                log.warning("rule change refused", extra={"error": error[:500]})
                self.sensor.on_rule_change_refused()
                refused = rule_change_record(raw, None, error)
                await self._retrying("rule_changes", lambda: record_rule_change(self.store, refused))
                return
            accepted = rule_change_record(raw, rules, key_id=key_id)
            await self._retrying("rule_changes", lambda: record_rule_change(self.store, accepted))
            ctx.rules = rules
            self._rule_changes += 1
            log.info("rules changed at runtime", extra={"rules": rules.model_dump(mode="json")})

    async def flush(self) -> None:
        """Write the market windows of the batches stored so far; the caller may commit the offsets of every batch
        stored before it called once this returns. Batches go on meanwhile (the lock is held only to take what
        to write): what they store waits for the next flush."""
        with self.sensor.stage("windows"):
            async with self.lock:
                taken = self.windows.take(self.surveillance.watermark_ms)
            try:
                await self._retrying("market_1m", lambda: self.windows.write(taken))
            except BaseException:  # cancelled (the worker stops): to write still, or for the next restore
                self.windows.failed(taken)
                raise
        self.windows.written()

    async def tick(self) -> None:
        """Wall-clock rules (a live exchange going quiet), alert resolutions and rule changes another worker
        received (dm.rules reaches one worker of the group; every change is recorded in the store): on a timer.
        The store is read before the lock is taken (batches go on meanwhile); rules read then are not followed
        if a change was applied here since (they would undo it until the next tick)."""
        ledger = self.surveillance.ledger
        state = self.reader(self.store)
        changes = self._rule_changes
        resolutions = await asyncio.to_thread(ledger.resolutions_since, state)
        stored = await asyncio.to_thread(restore_rules, state, self.settings.rules)
        async with self.lock:
            ledger.apply_resolutions(resolutions)
            if changes == self._rule_changes:
                self._follow_rules(stored)
            alerts = self.surveillance.tick(int(time.time() * 1000))
            if alerts:
                await self._emit(self._alerts_only(alerts))

    def _follow_rules(self, stored: RuleSettings) -> None:
        ctx = self.surveillance.ctx
        if stored != ctx.rules:
            ctx.rules = stored
            log.info("rules changed through another worker", extra={"rules": stored.model_dump(mode="json")})

    async def emit_alerts(self, find: Callable[[], list[Alert]], then: Callable[[], None] | None = None) -> None:
        """Alerts found off the batch path (the market stage, in a thread: it reads the store), published and
        stored as a batch's are, and `then` (the stage records its progress). A store outage skips this round;
        the next one finds them again. The search holds only its own lock (it shares no state with the
        batches): the worker's batches go on being stored meanwhile, it is the emission that waits its turn."""
        async with self._searching:
            try:
                alerts = await asyncio.to_thread(find)
            except StoreError as exc:
                log.warning("market stage could not read the store; retrying", extra={"error": str(exc)[:500]})
                return
            async with self.lock:
                if alerts:
                    await self._emit(self._alerts_only(alerts))
                if then is not None:
                    await self._retrying("market_progress", then)

    def alert_resolved(self, dedup_key: str) -> None:
        """Ops resolved an alert (HTTP API or console): its incident may now recur as a new alert."""
        self.surveillance.ledger.resolved(dedup_key)

    # -- output -----------------------------------------------------------------------------

    async def _publish(self, rows: BatchRows) -> None:
        """Alerts and rejections to Kafka before the store: at-least-once, keyed for dedup."""
        kafka = self.settings.kafka
        for alert in rows.alerts:
            await self.publish(kafka.alerts_topic, alert.dedup_key.encode(), alert.to_json())
        for rejected in rows.rejected:
            await self.publish(kafka.rejected_topic, rejected.key, rejected_record(rejected))

    async def _write(self, rows: BatchRows, staged: Staged) -> None:
        try:
            with self.sensor.stage("store"):
                await self._retrying(lambda: staged.pending, lambda: self._written(staged))
        finally:
            staged.close()
        for marker in rows.markers:
            self.progress.advance(marker.partition, marker.last_offset)

    def _forward(self, rows: BatchRows) -> None:
        if self.forward is not None:
            for alert in rows.alerts:
                self.forward(alert.to_json())

    async def _retrying(self, what: str | Callable[[], str], operation: Callable[[], object]) -> int:
        """Run a store operation until it succeeds, backing off; consumption waits meanwhile. `what`: the table
        it writes (or tells which, when it failed)."""
        delay = 0.1
        while True:
            try:
                result = await asyncio.to_thread(operation)
                self.sensor.on_store_recovered()
                return result if isinstance(result, int) else 0
            except StoreError as exc:
                table = what() if callable(what) else what
                self.sensor.on_store_failed(table)
                log.warning(
                    "store write failed; retrying (consumption paused)",
                    extra={"table": table, "retry_in_s": delay, "error": str(exc)[:500]},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.clickhouse.insert_retry_max_s)

    def _written(self, staged: Staged) -> None:
        """Every table of a batch, in one thread: the event loop, busy with the next batch, need not come back
        between tables."""
        for table, seconds in staged.write():
            self.sensor.on_table_written(table, seconds)


def _token(table: str, rows: BatchRows, count: int) -> str:
    """Deterministic per (table, log, offsets, alerts): a retried insert of the same batch is dropped by ClickHouse,
    and batches without offsets (wall-clock alerts, a batch held back whole) differ by their alerts' keys. The log's
    id counts: a new broker's batch of offsets 0..3 is not a retry of the old log's (its rows would be dropped)."""
    span = ",".join(f"{m.topic}:{m.topic_id}:{m.partition}:{m.first_offset}-{m.last_offset}" for m in rows.markers)
    keys = ",".join(alert.dedup_key for alert in rows.alerts) if table == "alerts" or not rows.markers else ""
    return hashlib.sha1(f"{table}|{span}|{count}|{keys}".encode()).hexdigest()
