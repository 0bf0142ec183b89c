"""The worker's engine, free of Faust: a whole fetch of raw messages in, rows, alerts and metrics out.

Stages per batch, each timed (`dmm_stage_seconds_total{stage}`):
1. *decode*: messages at or below a partition's progress mark are redeliveries
   (skipped); usage messages are read at once as Arrow columns (`streams.columnar`),
   the rest (and usage the columns do not prove valid) parsed and validated by
   pydantic-core, one call each;
2. *dedup* and *surveillance*, in arrival order: a first-seen event is observed by
   the rules (which classify it late or on time and enrich it from the product
   book), then remembered; a second copy is a duplicate. With one partition, the
   batch's usage is judged at its end, at once (`Surveillance.begin_batch`), with
   the same outcome;
3. *arrow*: one Arrow table per ClickHouse table, built column by column, and staged
   for the store (`Store.stage`: the embedded store spools them to files);
4. *publish* alerts and rejections to Kafka, then *store* every table (retrying with
   backoff: while the store is down the worker stops consuming), then *metrics*.
Market windows (minutes, hours, days) are written on `flush`, beside the batches
(`streams.windows`). The caller commits a batch's offsets only after `flush` returns,
so a crash at any moment replays what was not yet safely stored, and the redelivery
index keeps it from being stored or counted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Histogram

from models import SEVERITY, Alert, AnyEvent, Heartbeat, Listing, Usage
from settings import RuleSettings, Settings
from sinks import prometheus as metrics
from sinks.clickhouse import BatchRows, Duplicate, Marker, Rejected, Store, StoredEvent, StoreError
from sinks.clickhouse.batches import EVENT_TYPE, SCHEMAS, STORED_STAMP
from sinks.clickhouse.records import record_rule_change
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import Staged, Write
from sinks.prometheus import stage
from streams.alignment import align
from streams.authenticate import Authenticator
from streams.columnar import TakenUsage, UsageColumns, UsageRow, WholeUsage, candidates, decode_usage, earliest
from streams.decode import REASONS, Rejection, WallClock, decode
from streams.dedup import EventIndex, First, Progress
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
from streams.surveillance import Arrivals, DetectorFailed, Surveillance
from streams.windows import MINUTE_MS, WindowFlusher, window_start_ms

log = logging.getLogger("dmm.pipeline")

PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True, slots=True)
class Redelivered:
    """A message at or below its partition's progress mark, stored above it before a crash, or taken already
    by this pipeline (fetched again after a seek)."""

    stored_ms: int  # event time of the stored event (0 for a rejection or duplicate)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch processed in memory, ready to be stored."""

    rows: BatchRows
    minutes: set[int]  # minute windows it makes dirty (once stored)
    tables: dict[str, pa.Table]
    staged: Staged  # the tables, encoded for the store as the batch was prepared (`Store.stage`)


Decoded = tuple[Record, AnyEvent | Rejection | Redelivered | UsageRow]
HOLD_MAX_BATCHES = 4  # alignment holds at most this many batches' worth of records (memory stays bounded)


_NOT_EVENTS = (Rejection, Redelivered)


def _partition(item: Decoded) -> int:
    return item[0].partition


def _offset(item: Decoded) -> int:
    return item[0].offset


def _event_time(item: Decoded) -> int | None:
    outcome = item[1]
    if isinstance(outcome, Rejection):
        return None
    if isinstance(outcome, Redelivered):
        return outcome.stored_ms or None
    return outcome.at_ms


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
    ) -> None:
        """`scope`: which rules run here (`all` when this worker owns every partition: see `streams.market`)."""
        self.settings = settings
        self.store = store
        self.reader = reader  # restore questions over the store (tests pass the in-memory one)
        self.ops_key = OpsKey.configured(settings.ops_key)  # verifies changes on dm.rules
        if self.ops_key.secret is None:
            log.warning("rule changes will be refused", extra={"error": self.ops_key.problem})
        self.publish = publish
        self.forward = forward  # stored alerts to the ops webhook (never blocks: see sinks.webhook)
        self.surveillance = surveillance or Surveillance(
            settings.rules,
            settings.allowed_lateness_s * 1000,
            build_detectors(settings.rules, scope),
            partition_idle_ms=int(settings.partition_idle_s * 1000),
        )
        # Producer signatures (contract, Amendment 1), checked only while a keys file is configured.
        self.authenticator = Authenticator.configured(settings.ingest.keys_file)
        self.index = EventIndex(horizon_ms=settings.dedup_horizon_s * 1000)
        self.progress = Progress(topic=settings.kafka.events_topic, topic_id=topic_id)
        self.windows = WindowFlusher(store, keep=scope == "all", lateness_ms=settings.allowed_lateness_s * 1000)
        self.lock = asyncio.Lock()  # batches, flushes, rule changes and emitted alerts: one at a time
        self._searching = asyncio.Lock()  # one off-batch search (the market stage's poll or tick) at a time
        self._held: list[Decoded] = []  # fetched, ahead of the slowest partition: see streams.alignment
        self._taken_through: dict[int, int] = {}  # per partition, the last offset processed in memory
        self._rule_changes = 0  # rule changes applied here (`tick` must not undo one with rules read before it)
        self._latest_s: dict[str, float] = {}  # per exchange, its latest event time stored by this worker (s)
        metrics.start_at_zero([*REASONS, PROCESSING_ERROR], SEVERITY, [*SCHEMAS, "market_1m", "rule_changes"])

    # -- start-up -------------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild every piece of in-memory state from ClickHouse, the source of truth."""
        started = time.monotonic()
        # Rows stamped beyond the clock's bound (stored before it was enforced) do not restore event time.
        state = self.reader(self.store, not_after_ms=WallClock.read(self.settings.max_clock_skew_s).latest_ms)
        progress = self.progress.restore(state)
        self._taken_through = dict(progress.marks)
        self.surveillance.restore(state, state.partition_watermarks(progress))
        watermark_ms = self.surveillance.watermark_ms
        self.index.restore(state, watermark_ms)
        self.windows.restore(state)
        metrics.DEDUP_INDEX.set(len(self.index))
        metrics.WATERMARK.set(watermark_ms / 1000)
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
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    # -- per batch --------------------------------------------------------------------------

    async def handle(self, messages: Sequence[Record], ends: Mapping[int, int | None] | None = None) -> dict[int, int]:
        """Process and durably store one batch (does not return until it is stored); returns, per partition,
        the last offset processed (records ahead of the other partitions are held: see `streams.alignment`).
        `ends`: each owned partition's end offset when fetched, to tell which partitions are caught up."""
        return await self.persist(self.prepare(messages, ends))

    def prepare(self, messages: Sequence[Record], ends: Mapping[int, int | None] | None = None) -> Prepared:
        """The CPU half of a batch, in the event loop without awaiting (so nothing interleaves with it):
        decode, dedup, surveillance, Arrow. It may run while the previous batch is being stored."""
        rows, minutes, usage = self._process(messages, ends or {})
        with stage("arrow"):
            if usage:
                rows.columns["usage"] = [taken.table() for taken in usage]
            return self._staged(rows, minutes)

    def _staged(self, rows: BatchRows, minutes: set[int]) -> Prepared:
        """A batch's tables, built and staged for the store (in order; the progress markers last, stamped as
        they are stored)."""
        tables = rows.tables()
        writes = [
            Write(table, batch, _token(table, rows, batch.num_rows), STORED_STAMP.get(table))
            for table, batch in tables.items()
        ]
        return Prepared(rows, minutes, tables, self.store.stage(writes))

    async def persist(self, prepared: Prepared) -> dict[int, int]:
        """The I/O half, batches strictly in order: alerts and rejections to Kafka, rows to the store; only
        then its minutes count as dirty, its offsets as processed and its metrics as counted."""
        async with self.lock:
            return await self._emit(prepared)

    async def _emit(self, prepared: Prepared) -> dict[int, int]:
        """Publish, store, mark windows dirty, forward and count one prepared batch (the lock is held)."""
        rows = prepared.rows
        with stage("publish"):
            await self._publish(rows)
        await self._write(rows, prepared.staged)
        if prepared.minutes:
            self.windows.stored(prepared.minutes, prepared.tables)
        self._forward(rows)
        with stage("metrics"):
            self._count(rows, prepared.tables)
        return {marker.partition: marker.last_offset for marker in rows.markers}

    @property
    def holding(self) -> int:
        """Records held back by event-time alignment, waiting for the other partitions."""
        return len(self._held)

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
                metrics.RULE_CHANGES_REFUSED.inc()
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
        with stage("windows"):
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
            rows = BatchRows(alerts=self.surveillance.tick(int(time.time() * 1000)))
            if rows.alerts:
                await self._emit(self._staged(rows, set()))

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
                    await self._emit(self._staged(BatchRows(alerts=alerts), set()))
                if then is not None:
                    await self._retrying("market_progress", then)

    def alert_resolved(self, dedup_key: str) -> None:
        """Ops resolved an alert (HTTP API or console): its incident may now recur as a new alert."""
        self.surveillance.ledger.resolved(dedup_key)

    def _process(
        self, messages: Sequence[Record], ends: Mapping[int, int | None]
    ) -> tuple[BatchRows, set[int], list[TakenUsage]]:
        rows = BatchRows(log_id=self.progress.topic_id)
        minutes: set[int] = set()
        with stage("decode"):
            decoded: list[Decoded] = list(self._held)
            columnar: list[int] = []  # positions in `decoded` of usage messages, read as columns below
            stray = self.progress.stray
            # Per partition, the offset at or below which a record was stored (its progress mark) or taken already
            # by this pipeline, fetched again after a seek (its batch may still be on its way to the store, its
            # identity already remembered: not a duplicate). One lookup per record.
            through = dict(self.progress.marks)
            for partition, offset in self._taken_through.items():
                through[partition] = max(offset, through.get(partition, -1))
            as_columns = self.settings.usage_as_columns and self.surveillance.sights(Usage)
            clock = WallClock.read(self.settings.max_clock_skew_s)  # once a batch: no event further ahead of it
            verify = self.authenticator.verified if self.authenticator is not None else None
            partitions: set[int] = set()
            as_usage = candidates([message.value for message in messages]) if as_columns else repeat(False)
            for message, candidate in zip(messages, as_usage):
                partition, offset = message.partition, message.offset
                partitions.add(partition)
                if offset <= through.get(partition, -1) or (stray and (partition, offset) in stray):
                    decoded.append((message, Redelivered(stray.get((partition, offset), 0))))
                elif candidate:
                    columnar.append(len(decoded))
                    decoded.append((message, _UNREAD))
                elif verify is None:
                    decoded.append((message, decode(message.value, clock)))
                else:
                    decoded.append((message, verify(decode(message.value, clock), message.headers, message.value)))
            read = _read_usage(decoded, columnar, self.authenticator, clock) if columnar else None
            lone = not self._held and len(partitions) <= 1 and partitions >= set(ends)
            arrivals = None
            if lone and read is not None:  # its usage may be judged at the end of the batch, at once
                arrivals = self.surveillance.begin_batch(next(iter(partitions)))
            if read is not None and arrivals is None:
                _usage_rows(decoded, columnar, read)
        started = time.perf_counter()
        if arrivals is not None:
            offsets = [message.offset for message in messages]
            usage, dedup_s = self._take_whole(decoded, columnar, read, arrivals, np.array(offsets), rows, minutes)  # type: ignore[arg-type]
            ranges = {(messages[0].topic, arrivals.partition): offsets}
        else:
            usage, ranges, dedup_s = self._take_each(decoded, lone, ends, rows, minutes)
        for (_, partition), offsets in ranges.items():  # never back: a seek may fetch records taken already
            self._taken_through[partition] = max(max(offsets), self._taken_through.get(partition, -1))
        held = {message.partition for message, _ in self._held}
        caught = {
            partition
            for partition, end in ends.items()
            if end is not None and partition not in held and self._taken_through.get(partition, -1) >= end - 1
        }
        self.surveillance.caught_up(caught)
        rows.alerts.extend(self.surveillance.advance())
        looked_up = time.perf_counter()
        self.index.settle()
        self.index.prune(self.surveillance.watermark_ms)
        dedup_s += time.perf_counter() - looked_up
        metrics.STAGE_SECONDS.labels(stage="dedup").inc(dedup_s)
        metrics.STAGE_SECONDS.labels(stage="surveillance").inc(time.perf_counter() - started - dedup_s)
        rows.markers = [
            Marker(topic, self.progress.topic_id, partition, min(offsets), max(offsets), len(offsets))
            for (topic, partition), offsets in ranges.items()
        ]
        return rows, minutes, usage

    def _take_each(
        self, decoded: list[Decoded], lone: bool, ends: Mapping[int, int | None], rows: BatchRows, minutes: set[int]
    ) -> tuple[list[TakenUsage], dict[tuple[str, int], list[int]], float]:
        """Every record one by one, in event-time order across partitions (`streams.alignment`). Returns the
        usage taken, the offsets taken per partition and the seconds spent on dedup."""
        if lone:
            taken = decoded  # one partition, nothing held: alignment would take it all, in arrival order
        else:
            split = align(
                decoded, _partition, _offset, _event_time, ends, self._taken_through, self.surveillance.clock.is_quiet
            )
            taken, self._held = split.taken, split.held
        if len(self._held) > HOLD_MAX_BATCHES * self.settings.batch_max:
            log.warning("event-time alignment gave up on a partition far behind", extra={"held": len(self._held)})
            taken, self._held = taken + self._held, []
        looked_up = time.perf_counter()
        keys = [outcome.key for _, outcome in taken if type(outcome) not in _NOT_EVENTS]  # type: ignore[union-attr]
        self.index.begin(keys)
        dedup_s = time.perf_counter() - looked_up
        remembered, next_key = self.index.get, iter(enumerate(keys)).__next__  # (position in `keys`, key)
        usage: dict[int, TakenUsage] = {}  # by id of its UsageColumns (held rows come from an earlier fetch)
        ranges: dict[tuple[str, int], list[int]] = {}
        for message, outcome in taken:
            ranges.setdefault((message.topic, message.partition), []).append(message.offset)
            if type(outcome) is not UsageRow:
                self._take(message, outcome, next_key, rows, minutes)
                continue
            position, key = next_key()
            first = remembered(key)
            if first is None:
                self._sight(outcome, position, message, rows, minutes, usage)
            else:
                _copy(message, key, "usage", outcome.content, first, rows)
        return list(usage.values()), ranges, dedup_s

    def _take_whole(
        self,
        decoded: list[Decoded],
        columnar: list[int],
        read: UsageColumns,
        arrivals: Arrivals,
        offsets: np.ndarray,
        rows: BatchRows,
        minutes: set[int],
    ) -> tuple[list[TakenUsage], float]:
        """One partition's batch with its usage judged at the end, at once (`Surveillance.begin_batch`): only
        the other records are taken one by one, in order, event time passing the usage before each (`offsets`:
        the batch's, in order). Returns the usage taken and the seconds spent on dedup."""
        looked_up = time.perf_counter()
        in_batch = np.asarray(columnar, np.int64)[read.ok]  # the usage's places in the batch
        in_columns = np.flatnonzero(read.ok)  # and in its columns
        not_usage = np.ones(len(decoded), np.bool_)
        not_usage[in_batch] = False  # the rest was read one by one (`_read_usage`): a comprehension over it alone
        others = [(place, decoded[place]) for place in np.flatnonzero(not_usage).tolist()]
        usage_keys = [read.keys[row] for row in in_columns.tolist()]
        events = [place for place, (_, outcome) in others if type(outcome) not in _NOT_EVENTS]
        keys = usage_keys + [decoded[place][1].key for place in events]  # type: ignore[union-attr]
        usage_at_ms = read.at_us[in_columns] // 1000
        taken, partitions, taken_offsets = self._remember_usage(
            decoded, in_batch, keys, events, usage_at_ms, read.contents[in_columns], arrivals.partition, offsets, rows
        )
        dedup_s = time.perf_counter() - looked_up
        at_ms, taken_rows = usage_at_ms[taken], in_columns[taken]
        exchange_ids = read.table.column("exchange_id").take(taken_rows).combine_chunks()
        self.surveillance.sight_ahead(earliest(exchange_ids, at_ms))
        latest = np.maximum.accumulate(at_ms).tolist()
        before = np.searchsorted(in_batch[taken], [place for place, _ in others]).tolist()
        next_key, passed = iter(enumerate(keys[len(usage_keys) :], len(usage_keys))).__next__, 0
        for (_, (message, outcome)), usage_before in zip(others, before, strict=True):
            if usage_before > passed:
                self.surveillance.pass_usage(usage_before, latest[usage_before - 1])
                passed = usage_before
            self._take(message, outcome, next_key, rows, minutes)
        event_ids = read.table.column("event_id").take(taken_rows).to_pylist()
        judged = self.surveillance.end_batch(exchange_ids.to_pylist(), event_ids, at_ms)
        for failure in judged.failed:
            metrics.DETECTOR_ERRORS.labels(detector=failure.kind).inc()
            log.error("detector failed on a batch's events; it missed them", extra={"detector": failure.kind})
        rows.alerts.extend(judged.alerts)
        if not len(taken):
            return [], dedup_s
        products = read.table.column("product_id").take(taken_rows).combine_chunks()
        kinds, of_row = self.surveillance.classify_batch(arrivals, exchange_ids, products)
        on_time = at_ms[~judged.late]
        minutes.update(np.unique(on_time - on_time % MINUTE_MS).tolist())
        whole = WholeUsage(taken_rows, judged.late, kinds, of_row, partitions, taken_offsets)
        return [TakenUsage(read, whole=whole)], dedup_s

    def _remember_usage(
        self,
        decoded: list[Decoded],
        in_batch: np.ndarray,
        keys: list[tuple[str, str]],
        events: list[int],
        at_ms: np.ndarray,
        contents: np.ndarray,
        partition: int,
        offsets: np.ndarray,
        rows: BatchRows,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch's copies among its usage (at `in_batch` in the batch of `partition`, whose `offsets` are
        given; `keys`: the usage's first, then the other events', at `events`; `contents`: the usage's content
        digests), found with arrays: duplicates, or conflicting resends; the first-seen usage remembered. Returns
        which of the usage is first seen, with its partitions and offsets."""
        count = len(in_batch)
        self.index.begin(keys)
        first = self.index.first_copies(np.concatenate((in_batch, np.asarray(events, np.int64))))
        copied = np.bincount(first[first >= 0], minlength=len(first))[:count] > 1  # with a later copy
        first = first[:count]
        seen = first == np.arange(count)
        said = contents.tolist()
        for copy in np.flatnonzero(~seen).tolist():
            message, original = decoded[in_batch[copy]][0], int(first[copy])
            if original < 0:  # stored by an earlier batch
                place = self.index.get(keys[copy])
            elif original < count:
                stored = decoded[in_batch[original]][0]
                place = (stored.partition, stored.offset, said[original])
            else:
                stored, event = decoded[events[original - count]]
                place = (stored.partition, stored.offset, event.content_digest)  # type: ignore[union-attr]
            _copy(message, keys[copy], "usage", said[copy], place, rows)  # type: ignore[arg-type]
        taken = np.flatnonzero(seen)
        findable = {
            keys[n]: (partition, int(offsets[in_batch[n]]), said[n]) for n in np.flatnonzero(copied & seen).tolist()
        }
        partitions, taken_offsets = np.full(len(taken), partition), offsets[in_batch[taken]]
        self.index.add_block(taken, partitions, taken_offsets, at_ms[taken], contents[taken], findable)
        return taken, partitions, taken_offsets

    def _take(
        self,
        message: Record,
        outcome: AnyEvent | Rejection | Redelivered,
        next_key: Callable[[], tuple[int, tuple[str, str]]],
        rows: BatchRows,
        minutes: set[int],
    ) -> None:
        """A record not read as usage columns: a redelivery, a rejection, a copy of an event remembered (a duplicate
        or a conflicting resend) or a first-seen event (`next_key`: its position and key among those given to
        `EventIndex.begin`)."""
        kind = type(outcome)
        if kind is Redelivered:
            # Already stored before a crash: event time passes it here, in stream order, as it did first time.
            metrics.REDELIVERED.inc()
            self.surveillance.redelivered(message.partition, outcome.stored_ms)  # type: ignore[union-attr]
            return
        if kind is Rejection:
            rows.rejected.append(
                _rejected(message, outcome.reason, outcome.detail, outcome.exchange_id, outcome.event_id)  # type: ignore[union-attr]
            )
            return
        position, key = next_key()  # this event's, computed once for `begin`
        first = self.index.get(key)  # a dict lookup (the batch was probed at once, in `begin`)
        if first is not None:
            _copy(message, key, outcome.type, outcome.content_digest, first, rows)  # type: ignore[union-attr]
            return
        self._accept(outcome, key, position, message, rows, minutes)  # type: ignore[arg-type]

    def _accept(
        self, event: AnyEvent, key: tuple[str, str], position: int, message: Record, rows: BatchRows, minutes: set[int]
    ) -> None:
        """A first-seen event judged by the rules, remembered (`position`: of its key in `EventIndex.begin`'s)."""
        at = event.at_ms
        try:
            observed = self.surveillance.observe(event, message.partition)
        except DetectorFailed as failure:
            _detector_failed(failure, message, event.key, rows)
            return
        if observed.alerts:
            rows.alerts.extend(observed.alerts)
        self.index.add(key, message.partition, message.offset, at, event.content_digest, position)
        rows.add(StoredEvent(event, message.partition, message.offset, observed.late, observed.dims))
        kind = type(event)
        if not observed.late and kind is not Heartbeat and (kind is not Listing or event.action == "list"):  # type: ignore[union-attr]
            minutes.add(window_start_ms(at))

    def _sight(
        self,
        row: UsageRow,
        position: int,
        message: Record,
        rows: BatchRows,
        minutes: set[int],
        usage: dict[int, TakenUsage],
    ) -> None:
        """`_accept` for a usage event read as columns: the same rules, its row stored from its columns."""
        at, key, columns = row.at_ms, row.key, row.columns
        try:
            observed = self.surveillance.sight(Usage, message.partition, *key, at, columns.products[row.row])  # type: ignore[arg-type]
        except DetectorFailed as failure:
            _detector_failed(failure, message, key, rows)
            return
        if observed.alerts:
            rows.alerts.extend(observed.alerts)
        self.index.add(key, message.partition, message.offset, at, row.content, position)
        taken = usage.get(id(columns))
        if taken is None:
            taken = usage[id(columns)] = TakenUsage(columns)
        taken.add(row.row, observed.late, observed.dims, message.partition, message.offset)
        if not observed.late:
            minutes.add(at - at % MINUTE_MS)  # `window_start_ms`, inline: it runs per event

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
            with stage("store"):
                await self._retrying(lambda: staged.pending, lambda: _written(staged))
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
                metrics.STORE_BACKPRESSURE.set(0)
                return result if isinstance(result, int) else 0
            except StoreError as exc:
                table = what() if callable(what) else what
                metrics.STORE_FAILURES.labels(table=table).inc()
                metrics.STORE_BACKPRESSURE.set(1)
                log.warning(
                    "store write failed; retrying (consumption paused)",
                    extra={"table": table, "retry_in_s": delay, "error": str(exc)[:500]},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.clickhouse.insert_retry_max_s)

    def _count(self, rows: BatchRows, tables: Mapping[str, pa.Table]) -> None:
        """Update metrics once per label set, from the batch's Arrow tables (prometheus-client label lookups
        are slow per event, and so is Python per event). Group-bys on this thread: a batch's tables are small,
        and Arrow's thread pool, on a machine busy with the store and the broker, made the loop wait for it."""
        now = time.time()
        occurred: list[np.ndarray] = []
        for table, kind in EVENT_TYPE.items():
            batch = tables.get(table)
            if batch is None:
                continue
            late = pc.sum(batch.column("late")).as_py()
            if late:
                metrics.LATE.labels(type=kind).inc(late)
            occurred.append(_seconds(batch.column("occurred_at")))
            per_exchange = batch.group_by("exchange_id", use_threads=False).aggregate(
                [("exchange_id", "count"), ("occurred_at", "max")]
            )
            for exchange_id, n, at in zip(
                per_exchange["exchange_id"].to_pylist(),
                per_exchange["exchange_id_count"].to_pylist(),
                _seconds(per_exchange["occurred_at_max"]),
                strict=True,
            ):
                metrics.EVENTS.labels(type=kind, exchange_id=exchange_id).inc(n)
                gauge = metrics.LAST_EVENT.labels(exchange_id=exchange_id)
                gauge.set(max(float(at), gauge._value.get()))
                self._latest_s[exchange_id] = max(float(at), self._latest_s.get(exchange_id, 0.0))
        trades = tables.get("trades")
        if trades is not None:
            traded = (
                trades.group_by(["exchange_id", "sector"], use_threads=False).aggregate([("amount", "sum")]).to_pylist()
            )
            for row in traded:
                metrics.TRADED_AMOUNT.labels(exchange_id=row["exchange_id"], sector=row["sector"]).inc(
                    float(row["amount_sum"])
                )
        if occurred:
            observe_many(metrics.EVENT_LAG, np.maximum(0.0, now - np.concatenate(occurred)))
            _clock_ahead(self._latest_s)
        for reason, n in Counter(r.reason for r in rows.rejected).items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        for kind, n in Counter(d.type for d in rows.duplicates).items():
            metrics.DUPLICATES.labels(type=kind).inc(n)
        for alert in rows.alerts:
            metrics.ALERTS.labels(kind=alert.kind, severity=alert.severity).inc()
        if rows.markers:
            metrics.BATCH_SIZE.observe(sum(m.messages for m in rows.markers))
        metrics.LAST_BATCH.set(now)
        metrics.WATERMARK.set(self.surveillance.watermark_ms / 1000)
        metrics.DEDUP_INDEX.set(len(self.index))


def _seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A UTC timestamp column as float seconds since the epoch."""
    unit = column.type.unit
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    return np.asarray(pc.cast(column, pa.int64()), dtype=np.float64) / scale


def _clock_ahead(latest_s: Mapping[str, float]) -> None:
    """`dmm_exchange_clock_ahead_seconds`: how far the exchange with the latest event time leads the next one (the
    others 0). One exchange far ahead of the rest likely has its clock set wrong, short of `future_event` (its
    events are accepted, and the market's event time follows them): ops see it here and on the Feeds page."""
    ranked = sorted(latest_s.items(), key=lambda item: item[1], reverse=True)
    for place, (exchange_id, at) in enumerate(ranked):
        lead = at - ranked[1][1] if place == 0 and len(ranked) > 1 else 0.0
        metrics.EXCHANGE_CLOCK_AHEAD.labels(exchange_id=exchange_id).set(lead)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Many observations with one lock round per bucket (prometheus-client observes one value at a time)."""
    if not len(values):
        return
    per_bucket = np.bincount(np.searchsorted(histogram._upper_bounds, values, side="left"))
    histogram._sum.inc(float(values.sum()))
    for index in np.flatnonzero(per_bucket):
        histogram._buckets[index].inc(int(per_bucket[index]))


_UNREAD = Rejection("malformed", "not read yet")  # a placeholder `_read_usage` replaces


def _read_usage(
    decoded: list[Decoded], positions: list[int], authenticator: Authenticator | None, clock: WallClock
) -> UsageColumns:
    """Read these usage messages as columns (`streams.columnar`); those it does not accept, one by one (the
    others stay `_UNREAD` in `decoded`: `_usage_rows` or the whole batch's path takes them). With producer keys,
    a row whose signature fails is taken off the columns (no longer `ok`) as its `unauthenticated` rejection."""
    columns = decode_usage([decoded[i][0].value for i in positions], clock)  # type: ignore[misc]
    for row in np.flatnonzero(~columns.ok).tolist():
        message = decoded[positions[row]][0]
        outcome = decode(message.value, clock)
        if authenticator is not None:
            outcome = authenticator.verified(outcome, message.headers, message.value)
        decoded[positions[row]] = (message, outcome)
    if authenticator is not None:
        failure, keys = authenticator.failure, columns.keys
        for row in np.flatnonzero(columns.ok).tolist():
            message = decoded[positions[row]][0]
            detail = failure(keys[row][0], message.headers, message.value)  # type: ignore[arg-type]
            if detail is not None:
                columns.ok[row] = False
                decoded[positions[row]] = (message, Rejection("unauthenticated", detail, *keys[row]))
    return columns


def _usage_rows(decoded: list[Decoded], positions: list[int], columns: UsageColumns) -> None:
    """The usage the columns accepted, one `UsageRow` each, for the one-by-one path."""
    at_ms, keys, contents = (columns.at_us // 1000).tolist(), columns.keys, columns.contents.tolist()
    for row in np.flatnonzero(columns.ok).tolist():
        i = positions[row]
        decoded[i] = (decoded[i][0], UsageRow(columns, row, at_ms[row], keys[row], contents[row]))


def _written(staged: Staged) -> None:
    """Every table of a batch, in one thread: the event loop, busy with the next batch, need not come back
    between tables."""
    for table, seconds in staged.write():
        metrics.STORE_WRITE.labels(table=table).observe(seconds)


def _copy(message: Record, key: tuple[str, str], kind: str, content: int, first: First, rows: BatchRows) -> None:
    """A message with the identity of an event remembered (`first`: where it was stored, what it said): a
    duplicate if it says the same once parsed (or what the first said is not known), else rejected as a
    `conflicting_duplicate`, the first staying as stored (contract, Amendment 1)."""
    partition, offset, said = first
    if said in (0, content):
        duplicate = Duplicate(message.topic, message.partition, message.offset, *key, kind, partition, offset)
        rows.duplicates.append(duplicate)
        return
    detail = (
        f"another event with exchange_id {key[0]} and event_id {key[1]} was accepted within the dedup horizon "
        f"(stored from partition {partition}, offset {offset}) and says something else: it stays as stored. Give "
        "a new event an event_id of its own; resend an event only as it was"
    )
    rows.rejected.append(_rejected(message, "conflicting_duplicate", detail, *key))


def _detector_failed(failure: DetectorFailed, message: Record, key: tuple[str, str], rows: BatchRows) -> None:
    """A detector raised on this event: it is rejected (`processing_error`), the market goes on."""
    metrics.DETECTOR_ERRORS.labels(detector=failure.kind).inc()
    log.exception("detector failed on event", extra={"detector": failure.kind, "event_id": key[1]})
    rows.rejected.append(_rejected(message, PROCESSING_ERROR, str(failure)[:2000], *key))


def _rejected(message: Record, reason: str, detail: str, exchange_id: str, event_id: str) -> Rejected:
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


def _token(table: str, rows: BatchRows, count: int) -> str:
    """Deterministic per (table, log, offsets, alerts): a retried insert of the same batch is dropped by ClickHouse,
    and batches without offsets (wall-clock alerts, a batch held back whole) differ by their alerts' keys. The log's
    id counts: a new broker's batch of offsets 0..3 is not a retry of the old log's (its rows would be dropped)."""
    span = ",".join(f"{m.topic}:{m.topic_id}:{m.partition}:{m.first_offset}-{m.last_offset}" for m in rows.markers)
    keys = ",".join(alert.dedup_key for alert in rows.alerts) if table == "alerts" or not rows.markers else ""
    return hashlib.sha1(f"{table}|{span}|{count}|{keys}".encode()).hexdigest()
