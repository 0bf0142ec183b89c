"""The synchronous batch core: a fetch's records in, a processed batch out (rows, dirty minutes, Arrow tables).

Stages, each timed into the batch's `StageTimes` (the pipeline reports them):
1. *decode*: messages at or below a partition's progress mark, or processed already by
   this core (fetched again after a seek), are redeliveries (skipped); usage messages are
   read at once as Arrow columns (`streams.columnar`), the rest (and usage the columns do
   not prove valid) parsed and validated by pydantic-core, one call each;
2. *dedup* and *surveillance*, in arrival order: a first-seen event is observed by the
   rules (which classify it late or on time and enrich it from the product book), then
   remembered; a second copy is a duplicate. With one partition, the batch's usage is
   judged at its end, at once (`streams.batch_usage`), with the same outcome;
3. *arrow*: one Arrow table per ClickHouse table, built column by column.
No asyncio, no store, no metric: the pipeline (`streams.pipeline`) stores, publishes and counts (the batch's
`StageTimes` and `Mishaps` travel with it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pyarrow as pa

from models import AnyEvent, Heartbeat, Listing, Usage
from settings import Settings
from sinks.clickhouse import BatchRows, Marker, StoredEvent
from sinks.clickhouse.windows import MINUTE_MS
from streams.alignment import align
from streams.authenticate import Authenticator
from streams.batch_records import (
    NOT_EVENTS,
    PROCESSING_ERROR,
    Decoded,
    NextIdentity,
    Redelivered,
    copy_of,
    identities_in_order,
    rejected,
)
from streams.batch_usage import NOT_READ, read_usage, take_usage_at_once, usage_rows
from streams.columnar import AcceptedUsage, UsageRow, candidates
from streams.decode import Rejection, WallClock, decode
from streams.dedup import EventIndex, IdentityBatch, Key, Progress
from streams.records import Record
from streams.surveillance import DetectorFailed, Surveillance

log = logging.getLogger("dmm.pipeline")

HOLD_MAX_BATCHES = 4  # alignment holds back at most this many batches' worth of records (memory stays bounded)


@dataclass(slots=True)
class StageTimes:
    """Worker seconds a batch spent in each stage of the core; `switch` charges the time since the last switch
    to the stage that was running (interleaved stages, such as dedup and surveillance, add up)."""

    seconds: dict[str, float] = field(default_factory=dict)
    running: str = "decode"
    since: float = field(default_factory=time.perf_counter)

    def switch(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[self.running] = self.seconds.get(self.running, 0.0) + now - self.since
        self.running, self.since = stage, now


@dataclass(slots=True)
class Mishaps:
    """What went off the ordinary path in a batch, for the pipeline to count once the batch is stored."""

    redelivered: int = 0  # records stored before (a restart or a seek), skipped
    detectors_failed: list[str] = field(default_factory=list)  # the kind of each detector that raised


@dataclass(frozen=True, slots=True)
class Processed:
    """A batch processed in memory, ready to be staged and stored."""

    rows: BatchRows
    minutes: set[int]  # minute windows it makes dirty (once stored)
    tables: dict[str, pa.Table]
    times: StageTimes
    mishaps: Mishaps = field(default_factory=Mishaps)


class BatchProcessor:
    """Decode, dedup, surveillance and Arrow for one batch at a time (see the module's docstring). It owns what
    records are waiting for the other partitions (`streams.alignment`) and how far each partition is processed."""

    def __init__(
        self,
        settings: Settings,
        surveillance: Surveillance,
        index: EventIndex,
        progress: Progress,
    ) -> None:
        self.settings = settings
        self.surveillance = surveillance
        self.index = index
        self.progress = progress
        self.mishaps = Mishaps()  # the batch being processed's
        # Producer signatures (contract, Amendment 1), checked only while a keys file is configured.
        self.authenticator = Authenticator.configured(settings.ingest.keys_file)
        self.waiting: list[Decoded] = []  # fetched, ahead of the slowest partition: see streams.alignment
        self._processed_through: dict[int, int] = {}  # per partition, the last offset processed in memory

    def restored(self) -> None:
        """The progress marks were restored: everything at or below them is processed."""
        self._processed_through = dict(self.progress.marks)

    def process(self, messages: Sequence[Record], ends: Mapping[int, int | None]) -> Processed:
        """One batch through every stage. `ends`: each owned partition's end offset when fetched, to tell which
        partitions are caught up."""
        times, self.mishaps = StageTimes(), Mishaps()
        rows = BatchRows(log_id=self.progress.topic_id)
        minutes: set[int] = set()
        clock = WallClock.read(self.settings.max_clock_skew_s)  # once a batch: no event further ahead of it
        decoded, usage_places, partitions = self._decode(messages, clock)
        columns = read_usage(decoded, usage_places, self.authenticator, clock) if usage_places else None
        one_partition = not self.waiting and len(partitions) <= 1 and partitions >= set(ends)
        partition = next(iter(partitions), 0)
        at_once = one_partition and columns is not None and self.surveillance.takes_whole(partition)
        if columns is not None and not at_once:
            usage_rows(decoded, usage_places, columns)
        accepted: list[AcceptedUsage]
        if at_once:
            assert columns is not None
            offsets = [message.offset for message in messages]
            with self.surveillance.whole_batch(partition) as whole:
                accepted = take_usage_at_once(
                    self, decoded, usage_places, columns, whole, np.array(offsets), rows, minutes, times
                )
            ranges = {(messages[0].topic, partition): offsets}
        else:
            accepted, ranges = self._one_by_one(decoded, one_partition, ends, rows, minutes, times)
        for (_, number), offsets in ranges.items():  # never back: a seek may fetch records processed already
            self._processed_through[number] = max(max(offsets), self._processed_through.get(number, -1))
        waiting = {message.partition for message, _ in self.waiting}
        caught = {
            number
            for number, end in ends.items()
            if end is not None and number not in waiting and self._processed_through.get(number, -1) >= end - 1
        }
        self.surveillance.caught_up(caught)
        rows.alerts.extend(self.surveillance.advance())
        times.switch("dedup")
        self.index.prune(self.surveillance.watermark_ms)
        times.switch("arrow")
        rows.markers = [
            Marker(topic, self.progress.topic_id, number, min(offsets), max(offsets), len(offsets))
            for (topic, number), offsets in ranges.items()
        ]
        if accepted:
            rows.columns["usage"] = [usage.table() for usage in accepted]
        tables = rows.tables()
        times.switch("arrow")
        return Processed(rows, minutes, tables, times, self.mishaps)

    def _decode(self, messages: Sequence[Record], clock: WallClock) -> tuple[list[Decoded], list[int], set[int]]:
        """Each record decoded (usage candidates left `NOT_READ` for the columns), after the records waiting from
        earlier fetches. Returns them, the positions of the usage candidates, and the partitions fetched."""
        decoded: list[Decoded] = list(self.waiting)
        usage_places: list[int] = []  # positions in `decoded` of usage messages, read as columns
        stray = self.progress.stray
        # Per partition, the offset at or below which a record was stored (its progress mark) or processed
        # already by this core, fetched again after a seek (its batch may still be on its way to the store, its
        # identity already remembered: not a duplicate). One lookup per record.
        through = dict(self.progress.marks)
        for partition, offset in self._processed_through.items():
            through[partition] = max(offset, through.get(partition, -1))
        as_columns = self.settings.usage_as_columns and self.surveillance.sights(Usage)
        verify = self.authenticator.verified if self.authenticator is not None else None
        partitions: set[int] = set()
        as_usage = candidates([message.value for message in messages]) if as_columns else repeat(False)
        for message, candidate in zip(messages, as_usage, strict=False):  # `repeat` is endless
            partition, offset = message.partition, message.offset
            partitions.add(partition)
            if offset <= through.get(partition, -1) or (stray and (partition, offset) in stray):
                decoded.append((message, Redelivered(stray.get((partition, offset), 0))))
            elif candidate:
                usage_places.append(len(decoded))
                decoded.append((message, NOT_READ))
            elif verify is None:
                decoded.append((message, decode(message.value, clock)))
            else:
                decoded.append((message, verify(decode(message.value, clock), message.headers, message.value)))
        return decoded, usage_places, partitions

    def _one_by_one(
        self,
        decoded: list[Decoded],
        one_partition: bool,
        ends: Mapping[int, int | None],
        rows: BatchRows,
        minutes: set[int],
        times: StageTimes,
    ) -> tuple[list[AcceptedUsage], dict[tuple[str, int], list[int]]]:
        """Every record one by one, in event-time order across partitions (`streams.alignment`). Returns the usage
        accepted and the offsets processed per partition."""
        if one_partition:
            ready = decoded  # one partition, nothing waiting: alignment would take it all, in arrival order
        else:
            quiet = self.surveillance.clock.is_quiet
            split = align(decoded, _partition, _offset, _event_time, ends, self._processed_through, quiet)
            ready, self.waiting = split.taken, split.held
        if len(self.waiting) > HOLD_MAX_BATCHES * self.settings.batch_max:
            log.warning("event-time alignment gave up on a partition far behind", extra={"held": len(self.waiting)})
            ready, self.waiting = ready + self.waiting, []
        times.switch("dedup")
        keys = [outcome.key for _, outcome in ready if not isinstance(outcome, NOT_EVENTS)]
        with self.index.batch(keys) as identities:
            times.switch("surveillance")
            next_identity, remembered = identities_in_order(keys), identities.get
            usage: dict[int, AcceptedUsage] = {}  # by id of its UsageColumns (waiting rows come from an earlier fetch)
            ranges: dict[tuple[str, int], list[int]] = {}
            redelivered = 0
            for message, outcome in ready:
                ranges.setdefault((message.topic, message.partition), []).append(message.offset)
                if not isinstance(outcome, UsageRow):  # narrowed for the type checker (`match` costs 4x per record)
                    redelivered += self.take(message, outcome, identities, next_identity, rows, minutes)
                    continue
                position, key = next_identity()
                first = remembered(key)
                if first is None:
                    self._accept_usage(outcome, position, message, identities, rows, minutes, usage)
                else:
                    copy_of(message, key, "usage", outcome.content, first, rows)
            times.switch("dedup")
        times.switch("surveillance")
        self.mishaps.redelivered += redelivered
        return list(usage.values()), ranges

    def take(
        self,
        message: Record,
        outcome: AnyEvent | Rejection | Redelivered,
        identities: IdentityBatch,
        next_identity: NextIdentity,
        rows: BatchRows,
        minutes: set[int],
    ) -> int:
        """A record not read as usage columns: a redelivery (returns 1, else 0), a rejection, a copy of an event
        remembered (a duplicate or a conflicting resend) or a first-seen event."""
        if isinstance(outcome, Redelivered):
            # Already stored before a crash: event time passes it here, in stream order, as it did first time.
            self.surveillance.redelivered(message.partition, outcome.stored_ms)
            return 1
        if isinstance(outcome, Rejection):
            reason, detail = outcome.reason, outcome.detail
            rows.rejected.append(rejected(message, reason, detail, outcome.exchange_id, outcome.event_id))
            return 0
        position, key = next_identity()  # this event's, listed once for `EventIndex.batch`
        first = identities.get(key)  # a dict lookup (the batch was looked up at once)
        if first is not None:
            copy_of(message, key, outcome.type, outcome.content_digest, first, rows)
        else:
            self._accept(outcome, key, position, message, identities, rows, minutes)
        return 0

    def _accept(
        self,
        event: AnyEvent,
        key: Key,
        position: int,
        message: Record,
        identities: IdentityBatch,
        rows: BatchRows,
        minutes: set[int],
    ) -> None:
        """A first-seen event judged by the rules, remembered (`position`: of its identity in the batch's)."""
        at = event.at_ms
        try:
            observed = self.surveillance.observe(event, message.partition)
        except DetectorFailed as failure:
            self.detector_failed(failure, message, key, rows)
            return
        if observed.alerts:
            rows.alerts.extend(observed.alerts)
        identities.add(key, message.partition, message.offset, at, event.content_digest, position)
        rows.add(StoredEvent(event, message.partition, message.offset, observed.late, observed.dims))
        # A heartbeat, or a listing other than `list`, counts in no window.
        if (
            not observed.late
            and type(event) is not Heartbeat
            and (type(event) is not Listing or event.action == "list")
        ):
            minutes.add(at - at % MINUTE_MS)  # `window_start_ms`, inline: it runs per event

    def _accept_usage(
        self,
        row: UsageRow,
        position: int,
        message: Record,
        identities: IdentityBatch,
        rows: BatchRows,
        minutes: set[int],
        usage: dict[int, AcceptedUsage],
    ) -> None:
        """`_accept` for a usage event read as columns: the same rules, its row stored from its columns."""
        at, key, columns = row.at_ms, row.key, row.columns
        try:
            observed = self.surveillance.sight(Usage, message.partition, *key, at, columns.products[row.row] or "")
        except DetectorFailed as failure:
            self.detector_failed(failure, message, key, rows)
            return
        if observed.alerts:
            rows.alerts.extend(observed.alerts)
        identities.add(key, message.partition, message.offset, at, row.content, position)
        accepted = usage.get(id(columns))
        if accepted is None:
            accepted = usage[id(columns)] = AcceptedUsage(columns)
        accepted.add(row.row, observed.late, observed.dims, message.partition, message.offset)
        if not observed.late:
            minutes.add(at - at % MINUTE_MS)  # `window_start_ms`, inline: it runs per event

    def detector_failed(self, failure: DetectorFailed, message: Record, key: Key, rows: BatchRows) -> None:
        """A detector raised on this event: it is rejected (`processing_error`), the market goes on."""
        self.mishaps.detectors_failed.append(failure.kind)
        log.exception("detector failed on event", extra={"detector": failure.kind, "event_id": key[1]})
        rows.rejected.append(rejected(message, PROCESSING_ERROR, str(failure)[:2000], *key))


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
