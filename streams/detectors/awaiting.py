"""Trade rules that need the product's listings, and wait up to the allowed lateness for them.

A listing may arrive after a trade it covers (exchanges send on their own
schedule; the contract accepts events up to the allowed lateness). So a rule
that cannot judge a trade yet, because the listings it needs are not in the book,
holds the trade until the event-time watermark passes `occurred_at + allowed
lateness` and then concludes with whatever the book holds. Held trades are
bounded by the trade volume of one lateness span.

Restore: trades of the last two lateness spans are read back from `trades` and
assessed against the rebuilt book; those still waiting are held again. Trades
already concluded before the restart may conclude again: their findings carry
the same dedup keys, so the AlertLedger (restored from `alerts`) drops them.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod

from models import AnyEvent, Trade
from sinks.clickhouse.state import StateReader
from streams.detectors.base import EventTimeDetector, Finding, MarketContext


class AwaitingListings(EventTimeDetector, ABC):
    observes = (Trade,)

    def __init__(self) -> None:
        self._held: list[tuple[int, int, Trade]] = []  # heap of (due_ms, arrival seq, trade)
        self._seq = itertools.count()

    @abstractmethod
    def assess(self, trade: Trade, ctx: MarketContext) -> list[Finding] | None:
        """The verdict on arrival, or None when the listings needed are not known yet."""

    @abstractmethod
    def conclude(self, trade: Trade, ctx: MarketContext) -> list[Finding]:
        """The final verdict once no listing may still arrive in time."""

    @property
    def held(self) -> int:
        return len(self._held)

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        if not isinstance(event, Trade):
            return []
        verdict = self.assess(event, ctx)
        if verdict is None:
            self._hold(event, ctx)
            return []
        return verdict

    def advance(self, ctx: MarketContext) -> list[Finding]:
        findings: list[Finding] = []
        while self._held and self._held[0][0] <= ctx.watermark_ms:
            _, _, trade = heapq.heappop(self._held)
            findings.extend(self.conclude(trade, ctx))
        return findings

    def restore(self, state: StateReader, ctx: MarketContext) -> None:
        self._held.clear()
        for stored in state.recent_trades(ctx.watermark_ms - 2 * ctx.allowed_lateness_ms):
            if self.assess(stored.trade, ctx) is None:
                self._hold(stored.trade, ctx)

    def _hold(self, trade: Trade, ctx: MarketContext) -> None:
        due = trade.at_ms + ctx.allowed_lateness_ms
        heapq.heappush(self._held, (due, next(self._seq), trade))
