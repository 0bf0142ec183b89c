"""What every detector is: event-time driven, bounded state, rebuilt from the store.

The pipeline calls, in arrival order, for every *accepted, first-seen* event:
`observe(event, ctx)`; after each batch `advance(ctx)` (the event-time watermark
moved: windows may close, exchanges may fall silent); on a wall-clock timer
`tick(ctx, now_ms)`. Each returns Findings; the AlertLedger turns findings into
alerts, one per dedup key. Detectors never do I/O except in `restore`, and only
`exchange_silent`'s live rule looks at the wall clock (`tick`), so replaying a
file gives the same findings as receiving it live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from models import AlertKind, AnyEvent, Heartbeat, Listing, Trade, Usage
from settings import RuleSettings
from sinks.clickhouse.state import StateReader
from streams.book import ProductBook


@dataclass(slots=True)
class MarketContext:
    """Shared, read-only for detectors: rules, the product book and event time."""

    rules: RuleSettings
    book: ProductBook
    allowed_lateness_ms: int
    watermark_ms: int = 0  # latest occurred_at seen from any exchange, ms since epoch

    def is_late(self, at_ms: int) -> bool:
        """Later than the allowed lateness behind the watermark: its minute window is closed."""
        return at_ms < self.watermark_ms - self.allowed_lateness_ms


@dataclass(slots=True)
class Finding:
    """A detector's verdict, before it becomes an `Alert` (ids, severity, detected_at added later)."""

    kind: AlertKind
    dedup_key: str
    exchange_id: str
    product_id: str | None
    parties: list[str]
    event_ids: list[str]
    score: float
    window_start_ms: int | None
    window_end_ms: int | None
    message: str
    message_zh: str
    extra: dict[str, str] = field(default_factory=dict)


class Detector(Protocol):
    kind: AlertKind
    # Judges one exchange across all its products, so across partitions (the contract keys events by product):
    # with several workers it runs once, in the market stage over the store (`streams.market`).
    market_wide: bool

    @property
    def observes(self) -> tuple[type[AnyEvent], ...]:
        """Event types `observe` looks at: the others never reach it (read-only: a rule names its own)."""
        ...

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]: ...

    def advance(self, ctx: MarketContext) -> list[Finding]: ...

    def tick(self, ctx: MarketContext, now_ms: int) -> list[Finding]: ...

    def restore(self, state: StateReader, ctx: MarketContext) -> None: ...


@runtime_checkable
class TakesSightings(Protocol):
    """A rule that reads of an event other than a trade only who sent it, its id and its time: it can take
    events that never become objects (usage read as columns, `streams.columnar`; what the market stage reads
    back, `models.Sighting`)."""

    def sighted(self, exchange_id: str, event_id: str, at: int, ctx: MarketContext) -> list[Finding]: ...


@runtime_checkable
class TakesBatches(Protocol):
    """A rule that reads of every event only who sent it, its id and its time, whose state nothing else reads
    while a batch is processed: it can take a whole batch's events at its end, at once, instead of one by one
    in their places (`Surveillance.whole_batch`). It must find exactly what it would have found one by one."""

    def sighted_batch(
        self,
        exchange_ids: Sequence[str | None],
        event_ids: Sequence[str],
        at: np.ndarray,
        watermarks: np.ndarray,
        ctx: MarketContext,
    ) -> list[Finding]:
        """Events in arrival order (`exchange_ids[i]` None: not an event, only event time passing), each with the
        market's event time with it in it (`watermarks[i]`, what `ctx.watermark_ms` would have been)."""
        ...


@runtime_checkable
class SightsAhead(Protocol):
    """A rule that sights events other than trades, where sighting a batch's once per exchange, at the earliest of
    them and ahead of the batch's other events, leaves it exactly as sighting each in its place would (until
    `advance`): a batch's usage can then be taken at its end (`Surveillance.whole_batch`)."""

    def sight_ahead(self, earliest: Mapping[str, int]) -> None:
        """Sight these exchanges' events, the earliest of each at `earliest[exchange_id]` (ms)."""
        ...


@runtime_checkable
class KeepsState(Protocol):
    """A rule whose state is too large to rebuild at every start: a graceful stop leaves it on local disk and
    the next start takes it if it is still what the store holds (`streams.kept_state`)."""

    def keep(self, directory: Path) -> None:
        """Write the state into `directory` (its RocksDB directory at `kept_state.DATABASE`); it is closed."""
        ...

    def take(self, directory: Path, ctx: MarketContext) -> None:
        """Instead of `restore`: the state kept in `directory`. Raises if it cannot be read whole."""
        ...


class EventTimeDetector:
    """Defaults for the hooks a detector does not need: no wall-clock rule, nothing to rebuild or close."""

    observes: tuple[type[AnyEvent], ...] = (Listing, Trade, Usage, Heartbeat)
    market_wide = False

    def advance(self, ctx: MarketContext) -> list[Finding]:
        return []

    def tick(self, ctx: MarketContext, now_ms: int) -> list[Finding]:
        return []

    def restore(self, state: StateReader, ctx: MarketContext) -> None:
        return None


def trade_finding(
    kind: AlertKind, trade: Trade, dedup_key: str, score: float, message: str, message_zh: str
) -> Finding:
    """A finding whose evidence is one trade: its parties, its id, its event time."""
    at = trade.at_ms
    parties = [trade.seller_id] if trade.seller_id == trade.buyer_id else [trade.seller_id, trade.buyer_id]
    return Finding(
        kind=kind,
        dedup_key=dedup_key,
        exchange_id=trade.exchange_id,
        product_id=trade.product_id,
        parties=parties,
        event_ids=[trade.event_id],
        score=score,
        window_start_ms=at,
        window_end_ms=at,
        message=message,
        message_zh=message_zh,
    )
