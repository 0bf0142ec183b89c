"""Market surveillance as one object: accepted events in, alerts out. No SQL, no metrics, no Kafka.

It owns what the rules need to see the market: the product book, event time
(the watermark), the detectors and the alert ledger. The pipeline calls, in
arrival order, `observe` for every accepted first-seen event, `advance` once per
batch (windows close, exchanges fall silent) and `tick` on a wall-clock timer.
`restore` rebuilds all of it from the store's typed state reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from models import Alert, AnyEvent, Heartbeat, Listing, Trade, Usage
from settings import RuleSettings
from sinks.clickhouse import Dims
from sinks.clickhouse.state import StateReader
from streams.alerts import AlertLedger
from streams.book import UNKNOWN, ProductBook
from streams.detectors import build_detectors
from streams.detectors.base import Detector, Finding, MarketContext, TakesSightings
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
    alerts: list[Alert]


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
            kind: [(d.kind, d.sighted) for d in observers[kind]]  # type: ignore[attr-defined]
            for kind in (Usage, Heartbeat, *(() if enrich else (Listing,)))
            if all(isinstance(d, TakesSightings) for d in observers[kind])
        }

    @property
    def watermark_ms(self) -> int:
        return self.ctx.watermark_ms

    def restore(self, state: StateReader, partition_watermarks: dict[int, int]) -> None:
        """Event time, book, rules in force, detector state and alerted incidents, as stored."""
        self.clock.restore(partition_watermarks)
        self.ctx.watermark_ms = self.clock.value
        if self.enrich:
            for listing in state.listings():
                self.book.apply(listing)
        self.ctx.rules = restore_rules(state, self.configured_rules)
        for detector in self.detectors:
            detector.restore(state, self.ctx)
        self.ledger.restore(state)

    def redelivered(self, partition: int, stored_ms: int) -> None:
        """A message stored before a crash comes again: event time passes it, as it did the first time."""
        if stored_ms:
            self.ctx.watermark_ms = self.clock.advance(partition, stored_ms)

    def observe(self, event: AnyEvent, partition: int = 0) -> Observed:
        """Run every rule on one event of `partition`, then let event time pass it. Raises DetectorFailed
        (state untouched by the later detectors; the event is then not stored)."""
        kind = type(event)
        if kind is Heartbeat or not self.enrich:
            dims = UNKNOWN
        else:
            if kind is Listing:
                self.book.apply(event)  # type: ignore[arg-type]
            dims = self.book.dims(event.exchange_id, event.product_id)  # type: ignore[union-attr]
        return self._judge(partition, event.at_ms, dims, self._observing[kind], (event,))

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
        return Observed(late, dims, self._admit(findings) if findings else findings)

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
