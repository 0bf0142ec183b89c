"""The market stage: market-wide rules over every partition when several workers share dm.events.

The contract keys events by product, so one product's events share a partition and
its rules (self-dealing, wash trading, prices, listings) run in whichever worker owns
it. Two rules judge a whole exchange, across all its products and so across
partitions: `volume_spike` (its traded amount per minute) and `exchange_silent` (its
latest event against the market's event time). A worker that owns every partition
runs them itself, per event, as part of its pipeline. When workers share the
partitions, each worker sees only part of an exchange: its share of the volume, and
silences that are only its partitions' quiet. Then these rules run once, here, in the
worker that owns partition 0:

- it reads back, per partition in offset order, the events of every batch any worker
  has stored (`processed_batches` says which ranges are complete), so it sees exactly
  what the store holds, nothing that may still be lost: trades whole, every other event
  only by its exchange, id and time (all these rules read of it; it keeps no product book);
- it merges the partitions in event time as a worker does with a fetch
  (`streams.alignment`: every partition holds the others back until nothing was stored
  for it for `partition_idle_s`), and moves one market clock across all of them
  (`streams.watermark`). So at the end of a burst its last alerts come that much later;
  a worker's own "read to the end" cannot be used here, being about the broker at that
  worker's fetch while the rows of other partitions read now may have been produced since;
- what it observed is recorded (`market_progress`) once the alerts it led to are stored;
  when it starts or the leadership moves, its state (clock, detector state, alerted
  incidents) is rebuilt from the store as of those offsets and it reads on from there,
  so a crash or a rebalance loses no window and no silence.
Alerts reach dm.alerts and the store through the pipeline, as the worker's own do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from models import Alert, Sighting, Trade
from settings import Settings
from sinks.clickhouse import Store
from sinks.clickhouse.records import record_market_progress
from sinks.clickhouse.state import StateReader, StoredBatch
from sinks.prometheus import stage
from streams.alignment import align
from streams.decode import WallClock
from streams.detectors import build_detectors
from streams.rules import restore_rules
from streams.surveillance import DetectorFailed, Surveillance

log = logging.getLogger("dmm.market")

Item = tuple[int, int, Trade | Sighting]  # (partition, offset, event: a trade whole, any other sighted)
CLOCK_SKEW_MS = 300_000  # between the workers' clocks, which stamp `ingested_at` and the markers


class MarketStage:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        topic_id: str,
        partitions: int,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        """`partitions`: of dm.events, all of which the stage waits for (one not stored to yet may be behind)."""
        self.partitions = set(range(partitions))
        rules = settings.rules
        self.store = store
        self.topic = settings.kafka.events_topic
        self.topic_id = topic_id
        self.idle_ms = int(settings.partition_idle_s * 1000)
        self.max_clock_skew_s = settings.max_clock_skew_s
        self.surveillance = Surveillance(
            rules,
            settings.allowed_lateness_s * 1000,
            build_detectors(rules, "market"),
            partition_idle_ms=self.idle_ms,
            wall_ms=wall_ms,
            enrich=False,
        )
        self._wall_ms = wall_ms
        self.applied: dict[int, int] = {}  # per partition, the last offset observed
        self._read: dict[int, int] = {}  # per partition, the last offset read from the store (applied or held)
        self._latest: dict[int, StoredBatch] = {}  # per partition, its latest stored batch
        self._held: list[Item] = []
        self._recorded: dict[int, int] = {}  # `applied` as last recorded in the store
        self._expected_since_ms = 0.0  # wall clock when the stage (re)started waiting for every partition

    def restore(self) -> None:
        """State as of what the stage had observed and recorded (`market_progress`), from the store; what was
        stored beyond it is read again, so a window that closed or an exchange that fell silent meanwhile is
        judged (the alert ledger drops what was already alerted). A stage that never ran on this log counts
        everything stored as observed."""
        # Rows stamped beyond the clock's bound (stored before it was enforced) do not restore event time.
        bound = WallClock.read(self.max_clock_skew_s).latest_ms
        state = StateReader(self.store, not_after_ms=bound)
        progress = state.progress(self.topic, self.topic_id)
        recorded = state.market_progress(self.topic, self.topic_id)
        marks = recorded or dict(progress.marks)
        as_observed = StateReader(self.store, through=marks, not_after_ms=bound) if recorded else state
        self.applied, self._read, self._recorded, self._held, self._latest = dict(marks), dict(marks), marks, [], {}
        self.surveillance.restore(as_observed, as_observed.partition_watermarks(progress))
        self.surveillance.clock.expect(self.partitions)
        self._expected_since_ms = self._wall_ms()
        if self.applied:  # each partition's last stored batch: when was it stored (quiet yet?)
            previous = {partition: mark - 1 for partition, mark in self.applied.items()}
            for batch in state.batches_after(self.topic, self.topic_id, previous):
                if batch.last_offset <= self.applied.get(batch.partition, -1):
                    self._latest[batch.partition] = batch
        log.info(
            "market stage restored from ClickHouse",
            extra={"watermark_ms": self.surveillance.watermark_ms, "partition_marks": self.applied},
        )

    def poll(self) -> list[Alert]:
        """Observe what was stored since the last poll, in event-time order across partitions."""
        with stage("market"):
            return self._poll()

    def _poll(self) -> list[Alert]:
        state = StateReader(self.store)
        batches = state.batches_after(self.topic, self.topic_id, self._read)
        ranges: dict[int, tuple[int, int]] = {}
        since: int | None = None
        for batch in batches:
            if batch.partition not in ranges:  # its rows were stored after the partition's previous marker
                previous = self._latest.get(batch.partition)
                bound = previous.processed_ms - CLOCK_SKEW_MS if previous is not None else 0
                since = bound if since is None else min(since, bound)
            ranges[batch.partition] = (self._read.get(batch.partition, -1) + 1, batch.last_offset)
        items = self._held + state.market_events_in(ranges, since or 0)
        self._latest.update({batch.partition: batch for batch in batches})  # in offset order: the last wins
        self._read.update({partition: last for partition, (_, last) in ranges.items()})
        now = self._wall_ms()
        # Every partition may have more to come, until it is quiet (nothing stored for `partition_idle_s`; one
        # never stored to yet counts from when the stage began waiting for it). A worker's "read to the end" would
        # be stale here: it speaks of the broker when that worker fetched, while the other partitions' rows read
        # now may have been produced since.
        ends: dict[int, int | None] = dict.fromkeys(self.partitions | set(self._latest))

        def quiet(partition: int) -> bool:
            latest = self._latest.get(partition)
            stored_ms = latest.processed_ms if latest is not None else self._expected_since_ms
            return now - stored_ms > self.idle_ms

        split = align(items, _partition, _offset, _event_time, ends, self.applied, quiet)
        self._held = split.held
        alerts: list[Alert] = []
        surveillance = self.surveillance
        for partition, offset, event in split.taken:
            try:
                if isinstance(event, Trade):
                    alerts.extend(surveillance.observe(event, partition).alerts)
                else:
                    kind, exchange_id, event_id, at_ms = event
                    alerts.extend(surveillance.sight(kind, partition, exchange_id, event_id, at_ms).alerts)
            except DetectorFailed:  # stored already: the worker that owns it accepted it; the market goes on
                log.exception("market-wide detector failed on a stored event", extra={"event_id": event.event_id})
            self.applied[partition] = max(offset, self.applied.get(partition, -1))
        held = {item[0] for item in self._held}
        for partition, (_, last) in ranges.items():  # rejections and duplicates leave no event: the range is done
            if partition not in held:
                self.applied[partition] = max(last, self.applied.get(partition, -1))
        for partition, batch in self._latest.items():  # a partition was heard from when its rows were stored
            self.surveillance.clock.heard_at(partition, batch.processed_ms)
        self.surveillance.caught_up(set())  # partitions gone quiet stop holding the market's clock
        alerts.extend(self.surveillance.advance())
        return alerts

    def record(self) -> None:
        """Make what was observed durable, once the alerts it led to are stored (see `restore`)."""
        changed = {p: offset for p, offset in self.applied.items() if self._recorded.get(p) != offset}
        if changed:
            record_market_progress(self.store, self.topic, self.topic_id, changed)
            self._recorded = {**self._recorded, **changed}

    def tick(self, now_ms: int) -> list[Alert]:
        """The wall-clock rule (a live exchange going quiet), resolutions and rule changes recorded since."""
        state = StateReader(self.store)
        ledger = self.surveillance.ledger
        ledger.apply_resolutions(ledger.resolutions_since(state))
        self.surveillance.ctx.rules = restore_rules(state, self.surveillance.configured_rules)  # as recorded
        return self.surveillance.tick(now_ms)


def _partition(item: Item) -> int:
    return item[0]


def _offset(item: Item) -> int:
    return item[1]


def _event_time(item: Item) -> int:
    return item[2].at_ms
