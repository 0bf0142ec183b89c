"""Market surveillance as one object: accepted events in, alerts out. No SQL, no metrics, no Kafka.

It owns what the rules need to see the market: the product book, event time
(the watermark), the detectors and the alert ledger. The pipeline calls, in
arrival order, `observe` for every accepted first-seen event, `advance` once per
batch (windows close, exchanges fall silent) and `tick` on a wall-clock timer.
`restore` rebuilds all of it from the store's typed state reader.

Usage, four events in five, is not observed one by one where the outcome allows
(`whole_batch`): its lateness comes from the running maximum of event
time over the batch, `exchange_silent` takes the batch's events at its end, and
`volume_spike` ignores sightings that cannot move its windows. The rest of the batch
is observed in order meanwhile, with event time passing the usage before each event.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models import Alert, AnyEvent, Dims, Heartbeat, Listing, Trade, Usage
from settings import RuleSettings
from sinks.clickhouse.state import StateReader
from streams.alerts import AlertLedger
from streams.book import UNKNOWN, ProductBook, ProductListing, dims_among
from streams.detectors import build_detectors
from streams.detectors.base import (
    Detector,
    Finding,
    KeepsState,
    MarketContext,
    SightsAhead,
    TakesBatches,
    TakesSightings,
)
from streams.kept_state import take_or_rebuild
from streams.rules import restore_rules
from streams.watermark import MarketClock

EVENT_TYPES = (Listing, Trade, Usage, Heartbeat)


Rule = tuple[str, Callable[..., list[Finding]]]  # a detector's kind, and its `observe` or `sighted`


class DetectorFailed(RuntimeError):
    """A detector raised on one event (a poison message): that event is rejected, the market goes on."""

    def __init__(self, kind: str, cause: Exception) -> None:
        super().__init__(f"detector {kind} failed on this event: {type(cause).__name__}: {cause}")
        self.kind = kind


class Observed(NamedTuple):
    """What surveillance makes of one accepted event (a tuple: one is made per event)."""

    late: bool  # older than the allowed lateness behind the watermark: stored, but its window stays closed
    dims: Dims  # the product's classification, from its listing as known on arrival
    alerts: Sequence[Alert]


NO_ALERTS: tuple[Alert, ...] = ()  # what most events raise (shared: nothing made per event)


class Judged(NamedTuple):
    """What surveillance makes of a batch's usage at its end (`WholeBatch.judge`)."""

    late: np.ndarray  # bool, per usage event in arrival order
    alerts: list[Alert]
    failed: list[DetectorFailed]  # rules that raised on the batch (they missed it; the market goes on)


class Surveillance:
    def __init__(
        self,
        rules: RuleSettings,
        allowed_lateness_ms: int,
        detectors: list[Detector] | None = None,
        partition_idle_ms: int = 30_000,
        wall_ms: Callable[[], float] | None = None,
        enrich: bool = True,
    ) -> None:
        """`wall_ms`: the wall clock that tells a quiet partition (default: the monotonic one). `enrich`: keep
        the product book and classify events from it; the market stage does not (its rules read neither, and
        it reads back events other than trades only as sightings)."""
        self.enrich = enrich
        self.configured_rules = rules
        self.clock = MarketClock(partition_idle_ms) if wall_ms is None else MarketClock(partition_idle_ms, wall_ms)
        self.book = ProductBook()
        self.ctx = MarketContext(rules=rules, book=self.book, allowed_lateness_ms=allowed_lateness_ms)
        self.detectors = tuple(detectors if detectors is not None else build_detectors(rules))
        self.ledger = AlertLedger()
        # Per event type, the detectors that look at it, in order: the others are never called.
        observers = {kind: [d for d in self.detectors if kind in d.observes] for kind in EVENT_TYPES}
        self._observing: dict[type, list[Rule]] = {
            kind: [(d.kind, d.observe) for d in rules] for kind, rules in observers.items()
        }
        # Per type other than a trade, the same rules as sightings (`sight`), if they all can take one. A
        # listing also changes the book, so it is sighted only where there is none (`enrich` false).
        self._sighting: dict[type, list[Rule]] = {
            kind: [(d.kind, d.sighted) for d in observers[kind] if isinstance(d, TakesSightings)]
            for kind in (Usage, Heartbeat, *(() if enrich else (Listing,)))
            if all(isinstance(d, TakesSightings) for d in observers[kind])
        }
        # Rules that can take a batch's events whole at its end (`whole_batch`): they sight every type of event.
        self._batch_takers = [
            d for d in observers[Usage] if isinstance(d, TakesBatches) and set(d.observes) == set(EVENT_TYPES)
        ]
        self._one_by_one = self._observing
        self._in_batches: dict[type, list[Rule]] = {
            kind: [(d.kind, d.observe) for d in rules if d not in self._batch_takers]
            for kind, rules in observers.items()
        }
        self._usage_others = [d for d in observers[Usage] if d not in self._batch_takers]
        self._sights_ahead = all(isinstance(d, SightsAhead) for d in self._usage_others)
        self._whole: WholeBatch | None = None  # the batch whose usage waits for its end, while it is taken

    @property
    def watermark_ms(self) -> int:
        return self.ctx.watermark_ms

    def restore(self, state: StateReader, partition_watermarks: dict[int, int], kept: Path | None = None) -> None:
        """Event time, book, rules in force, detector state and alerted incidents, as stored. `kept`: state a
        graceful stop left, checked as built from what the store holds now (`streams.kept_state`): a rule that
        keeps state takes its part (`<kind>` in it) instead of restoring, and restores if it cannot."""
        self.clock.restore(partition_watermarks)
        self.ctx.watermark_ms = self.clock.value
        if self.enrich:
            for listing in state.listings():
                self.book.apply(listing)
        self.ctx.rules = restore_rules(state, self.configured_rules)
        for detector in self.detectors:
            rebuild = partial(detector.restore, state, self.ctx)
            if kept is not None and isinstance(detector, KeepsState):
                take_or_rebuild(kept / detector.kind, partial(detector.take, ctx=self.ctx), rebuild)
            else:
                rebuild()
        self.ledger.restore(state)

    def keep(self, into: Path) -> None:
        """Leave the state of the rules that keep theirs in `into`, a directory each, by kind."""
        for detector in self.detectors:
            if isinstance(detector, KeepsState):
                (into / detector.kind).mkdir()
                detector.keep(into / detector.kind)

    def redelivered(self, partition: int, stored_ms: int) -> None:
        """A message stored before a crash comes again: event time passes it, as it did the first time."""
        if stored_ms:
            if self._whole is not None:
                self._whole.arrived(None, "", stored_ms)
            self.ctx.watermark_ms = self.clock.advance(partition, stored_ms)

    def observe(self, event: AnyEvent, partition: int = 0) -> Observed:
        """Run every rule on one event of `partition`, then let event time pass it. Raises DetectorFailed
        (state untouched by the later detectors; the event is then not stored)."""
        kind, whole = type(event), self._whole
        # `type(event) is …` on the event itself narrows it for the type checker (`isinstance` and class patterns
        # cost three to four times as much on pydantic models: this runs per event).
        if kind is Heartbeat or not self.enrich:
            dims = UNKNOWN
        elif type(event) is Listing:
            if whole is not None and event.action == "list":
                whole.relist(event)
            else:
                self.book.apply(event)
            dims = self.book.dims(event.exchange_id, event.product_id)
        elif type(event) is Trade or type(event) is Usage:
            dims = self.book.dims(event.exchange_id, event.product_id)
        else:
            raise TypeError(f"not an event: {kind}")
        observed = self._judge(partition, event.at_ms, dims, self._observing[kind], (event,))
        if whole is not None:
            whole.arrived(event.exchange_id, event.event_id, event.at_ms)
        return observed

    def takes_whole(self, partition: int) -> bool:
        """Whether a batch of `partition` may have its usage judged at its end, at once (`whole_batch`), finding
        exactly what judging each event in its place would: event time is the latest event time so far (one
        partition), and each rule that sights usage either takes batches whole (it then takes every event of the
        batch at its end) or sights a batch's first-seen usage ahead (`WholeBatch.sight_ahead`)."""
        return self.enrich and Usage in self._sighting and self._sights_ahead and self.clock.alone(partition)

    @contextmanager
    def whole_batch(self, partition: int) -> Iterator[WholeBatch]:
        """A batch of `partition` whose usage is judged at its end (`takes_whole` must hold). Within it: the
        first-seen usage to `sight_ahead`, the other events observed in order, each after `pass_usage` says how
        much usage came before it, then the usage to `judge` and `classify`. The rules then take events one by
        one again, however the block ends."""
        assert self.takes_whole(partition), "whole_batch where usage must be taken one by one"
        self._whole = whole = WholeBatch(self, partition, self.ctx.watermark_ms)
        self._observing = self._in_batches
        try:
            yield whole
        finally:
            self._whole, self._observing = None, self._one_by_one

    def sights(self, kind: type[AnyEvent]) -> bool:
        """Whether events of this type can be taken as sightings (`sight`)."""
        return kind in self._sighting

    def sight(
        self, kind: type[AnyEvent], partition: int, exchange_id: str, event_id: str, at_ms: int, product_id: str = ""
    ) -> Observed:
        """`observe` for an event that is never an object (usage read as columns, what the market stage reads
        back): exactly what `observe` does with one, from the fields the rules and the classification read
        (`product_id`: a usage event's, for its classification)."""
        dims = self.book.dims(exchange_id, product_id) if self.enrich and kind is Usage else UNKNOWN
        return self._judge(partition, at_ms, dims, self._sighting[kind], (exchange_id, event_id, at_ms))

    def _judge(self, partition: int, at_ms: int, dims: Dims, rules: list[Rule], given: tuple[object, ...]) -> Observed:
        """Each rule called with `*given, ctx`, against the market's event time as it stands with this event in
        it; then event time passes the event. A rule that raises leaves event time where it was."""
        ctx, clock = self.ctx, self.clock
        late = at_ms < ctx.watermark_ms - ctx.allowed_lateness_ms  # `ctx.is_late`, inline: it runs per event
        ctx.watermark_ms = watermark_ms = clock.peek(partition, at_ms)
        findings: list[Finding] = []
        for kind, rule in rules:
            try:
                found = rule(*given, ctx)
            except Exception as exc:  # a poison event must not stop the market's surveillance
                ctx.watermark_ms = clock.value  # the rejected event does not move event time
                raise DetectorFailed(kind, exc) from exc
            if found:
                findings.extend(found)
        clock.advance(partition, at_ms, watermark_ms)
        return Observed(late, dims, self._admit(findings) if findings else NO_ALERTS)

    def caught_up(self, partitions: set[int]) -> None:
        """These partitions have nothing left to deliver: they no longer hold the market's event time back."""
        self.ctx.watermark_ms = self.clock.caught_up(partitions)

    def advance(self) -> list[Alert]:
        """After a batch: event time moved, windows may close and exchanges fall silent."""
        return self._admit([f for detector in self.detectors for f in detector.advance(self.ctx)])

    def tick(self, now_ms: int) -> list[Alert]:
        """Wall-clock rules (a live exchange going quiet)."""
        return self._admit([f for detector in self.detectors for f in detector.tick(self.ctx, now_ms)])

    def _admit(self, findings: list[Finding]) -> list[Alert]:
        alerts = []
        for finding in findings:
            alert = self.ledger.admit(finding)
            if alert is not None:
                alerts.append(alert)
        return alerts


class WholeBatch:
    """A batch of one partition whose usage is judged at its end (`Surveillance.whole_batch`). It keeps the
    batch's events other than usage, in arrival order, while the usage waits: who sent each, its id, its event
    time and how much usage came before it; and the products a `list` event of the batch reclassified."""

    __slots__ = (
        "_surveillance", "after", "at", "before", "event_ids", "exchange_ids", "failed", "partition", "usage_before",
        "usage_passed", "watermark_ms",
    )  # fmt: skip

    def __init__(self, surveillance: Surveillance, partition: int, watermark_ms: int) -> None:
        self._surveillance = surveillance
        self.partition = partition
        self.watermark_ms = watermark_ms  # the market's event time as the batch began
        self.exchange_ids: list[str | None] = []  # None: event time passing a redelivered message
        self.event_ids: list[str] = []
        self.at: list[int] = []
        self.usage_before: list[int] = []  # first-seen usage events that came before each
        self.usage_passed = 0  # usage events event time has passed (`pass_usage`)
        self.failed: list[DetectorFailed] = []  # rules that raised sighting the usage ahead
        # Products a `list` event of this batch changed the classification of: their listings as the batch began,
        # and after each `list` event of theirs since (with the usage events before it).
        self.before: dict[str, dict[str, ProductListing]] = {}
        self.after: dict[str, list[tuple[int, dict[str, ProductListing]]]] = {}

    def sight_ahead(self, earliest: Mapping[str, int]) -> None:
        """The batch's first-seen usage, as the earliest event time (ms) of each exchange's, to the rules that
        sight usage but do not take batches whole: before its other events are observed. A rule that raises
        misses them (`judge` tells)."""
        for detector in self._surveillance._usage_others:
            try:
                cast(SightsAhead, detector).sight_ahead(earliest)  # each is: `Surveillance.takes_whole`
            except Exception as exc:  # a rule with a bug misses this batch; the market goes on
                self.failed.append(DetectorFailed(detector.kind, exc))

    def pass_usage(self, count: int, latest_ms: int) -> None:
        """`count` first-seen usage events of the batch came so far, the latest of those since the previous call
        at `latest_ms`: event time passes them before the next event is observed."""
        surveillance = self._surveillance
        surveillance.ctx.watermark_ms = surveillance.clock.advance(self.partition, latest_ms)
        self.usage_passed = count

    def judge(self, exchange_ids: Sequence[str], event_ids: Sequence[str], at: np.ndarray) -> Judged:
        """The batch's first-seen usage, in arrival order, judged: late or not against the event time before
        each, and the rules that take batches whole given every event of the batch."""
        surveillance = self._surveillance
        ctx = surveillance.ctx
        if len(at) > self.usage_passed:
            self.pass_usage(len(at), int(at[self.usage_passed :].max()))
        others = len(self.at)
        before = np.array(self.usage_before, np.int64)
        usage_slots = np.arange(len(at)) + np.searchsorted(before, np.arange(len(at)), side="right")
        other_slots = before + np.arange(others)
        times = np.empty(len(at) + others, np.int64)
        times[usage_slots], times[other_slots] = at, self.at
        if not len(times):
            return Judged(np.zeros(0, np.bool_), [], self.failed)
        watermarks = np.maximum.accumulate(np.maximum(times, self.watermark_ms))
        previous = np.concatenate(([self.watermark_ms], watermarks[:-1]))
        late = at < previous[usage_slots] - ctx.allowed_lateness_ms
        findings: list[Finding] = []
        failed = self.failed
        if surveillance._batch_takers:
            senders, named = np.empty(len(times), object), np.empty(len(times), object)
            senders[usage_slots], senders[other_slots] = exchange_ids, self.exchange_ids
            named[usage_slots], named[other_slots] = event_ids, self.event_ids
            senders_list, named_list = senders.tolist(), named.tolist()
            for detector in surveillance._batch_takers:
                try:
                    findings.extend(detector.sighted_batch(senders_list, named_list, times, watermarks, ctx))
                except Exception as exc:  # a rule with a bug misses this batch; the market goes on
                    failed.append(DetectorFailed(detector.kind, exc))
        return Judged(late, surveillance._admit(findings) if findings else [], failed)

    def classify(self, exchange_ids: pa.Array, product_ids: pa.Array) -> tuple[list[Dims], np.ndarray]:
        """The batch's first-seen usage classified, each from the book as it stood when it came: as the batch
        began, except a product a `list` event of the batch changed. Returns the classifications found and, per
        event, the position of its own among them: one book lookup per exchange and product, not per event."""
        by_product, before, after = self._surveillance.book.by_product, self.before, self.after
        exchanges, products = exchange_ids.dictionary_encode(), product_ids.dictionary_encode()
        exchange_names, product_names = exchanges.dictionary.to_pylist(), products.dictionary.to_pylist()
        width = len(product_names)
        pair_of_row = exchanges.indices.to_numpy().astype(np.int64) * width + products.indices.to_numpy()
        present = np.zeros(len(exchange_names) * width, np.bool_)  # exchanges are the registry's: a few dozen
        present[pair_of_row] = True
        pairs = np.flatnonzero(present)
        code_of_pair = np.empty(len(present), np.int64)
        code_of_pair[pairs] = np.arange(len(pairs))
        codes = code_of_pair[pair_of_row]
        kinds = [
            dims_among(by_product.get(product_names[p % width]), exchange_names[p // width]) for p in pairs.tolist()
        ]
        if before:  # rare: the book changed under some of them during the batch
            changed = pc.is_in(product_ids, value_set=pa.array(list(before), pa.string()))
            for number in np.flatnonzero(changed.to_numpy(zero_copy_only=False)).tolist():
                pair = int(pair_of_row[number])
                product_id = product_names[pair % width]
                changes = after[product_id]
                since = bisect_right(changes, number, key=lambda change: change[0])
                listings = changes[since - 1][1] if since else before[product_id]
                codes[number] = len(kinds)
                kinds.append(dims_among(listings, exchange_names[pair // width]))
        return kinds, codes

    def relist(self, listing: Listing) -> None:
        """Apply a `list` event during the batch. If it changes how any exchange's usage of the product is
        classified (only the listing exchange's can change, or every exchange's for a product listed nowhere
        before), the product's listings are kept as they were, and as they are after this and every later
        `list` event of it in the batch."""
        book = self._surveillance.book
        product_id = listing.product_id
        previous = dict(book.by_product.get(product_id, {}))
        book.apply(listing)
        if product_id not in self.before:
            if previous and dims_among(previous, listing.exchange_id) == book.dims(listing.exchange_id, product_id):
                return
            self.before[product_id], self.after[product_id] = previous, []
        self.after[product_id].append((self.usage_passed, dict(book.by_product[product_id])))

    def arrived(self, exchange_id: str | None, event_id: str, at_ms: int) -> None:
        """An event other than usage (or event time passing a redelivery), in its place among the usage."""
        self.exchange_ids.append(exchange_id)
        self.event_ids.append(event_id)
        self.at.append(at_ms)
        self.usage_before.append(self.usage_passed)
