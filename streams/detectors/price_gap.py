"""`cross_exchange_price_gap`: one product's highest list price is >= 2x its lowest across exchanges.

Evaluated whenever a listing of the product changes (the pipeline folds the
listing into the book first). A gap is an *episode*: it opens with the listing
that created it and lasts until a change closes it (prices converge, or fewer
than two exchanges list it); a later gap is a new incident. The dedup key holds
the episode's start, so each episode is alerted once; while it stays open every
further change re-states it under the same key (the ledger drops those unless
the alert was resolved meanwhile). A lowest price of 0 against a positive one
is a gap (free here, paid there); its score counts 0 as one fen.

Restore: the book is rebuilt by the pipeline; open episodes are recovered by
matching each product that has a gap now with its latest stored alert of this
kind in `alerts` (same episode start, so no second alert). A gap without a
stored alert is announced at the next advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from models import AlertKind, AnyEvent, Listing
from sinks.clickhouse.state import StateReader
from streams.book import ProductListing
from streams.detectors.base import EventTimeDetector, Finding, MarketContext
from streams.detectors.wording import cny, exchange_en, exchange_zh, times

ONE_FEN = Decimal("0.01")


@dataclass(slots=True)
class Episode:
    start_ms: int
    exchange_id: str  # where the listing change that opened the gap happened


@dataclass(frozen=True, slots=True)
class Gap:
    highest: ProductListing
    lowest: ProductListing
    score: float


def price_gap(listings: list[ProductListing], ratio: Decimal) -> Gap | None:
    """The product's highest and lowest list price (ties: the greater, the lesser exchange code), if they are
    `ratio` apart. One pass, no key functions: it runs for every listing event."""
    highest: ProductListing | None = None
    lowest: ProductListing | None = None
    high = low = Decimal(0)  # their prices
    for state in listings:
        price = state.list_price
        if price is None:
            continue
        if highest is None or lowest is None:
            highest = lowest = state
            high = low = price
            continue
        if price > high or (price == high and state.exchange_id > highest.exchange_id):
            highest, high = state, price
        if price < low or (price == low and state.exchange_id < lowest.exchange_id):
            lowest, low = state, price
    if highest is None or lowest is None or highest is lowest:
        return None
    if high == 0 or high < ratio * low:
        return None
    return Gap(highest, lowest, float(high / (max(low, ONE_FEN) * ratio)))


def _price(state: ProductListing) -> Decimal:
    return state.list_price if state.list_price is not None else Decimal(0)


class CrossExchangePriceGap(EventTimeDetector):
    kind: AlertKind = "cross_exchange_price_gap"
    observes = (Listing,)

    def __init__(self) -> None:
        self._open: dict[str, Episode] = {}
        self._unannounced: list[str] = []

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        if not isinstance(event, Listing):
            return []
        at = event.at_ms
        gap = price_gap(ctx.book.active(event.product_id), ctx.rules.cross_exchange_gap_ratio)
        if gap is None:
            self._open.pop(event.product_id, None)
            return []
        episode = self._open.setdefault(event.product_id, Episode(at, event.exchange_id))
        return [self._finding(event.product_id, episode, gap, at, ctx)]

    def advance(self, ctx: MarketContext) -> list[Finding]:
        findings: list[Finding] = []
        for product_id in self._unannounced:
            gap = price_gap(ctx.book.active(product_id), ctx.rules.cross_exchange_gap_ratio)
            episode = self._open.get(product_id)
            if gap is not None and episode is not None:
                findings.append(self._finding(product_id, episode, gap, episode.start_ms, ctx))
        self._unannounced.clear()
        return findings

    def restore(self, state: StateReader, ctx: MarketContext) -> None:
        self._open.clear()
        self._unannounced.clear()
        latest = {alert.product_id: alert for alert in state.stored_alerts(self.kind)}
        for product_id in ctx.book.by_product:
            active = ctx.book.active(product_id)
            if price_gap(active, ctx.rules.cross_exchange_gap_ratio) is None:
                continue
            alert = latest.get(product_id)
            if alert is not None and alert.window_start_ms is not None:
                self._open[product_id] = Episode(alert.window_start_ms, alert.exchange_id)
            else:
                newest = max(active, key=lambda s: (s.changed_ms, s.exchange_id))
                self._open[product_id] = Episode(newest.changed_ms, newest.exchange_id)
                self._unannounced.append(product_id)

    def _finding(self, product_id: str, episode: Episode, gap: Gap, at: int, ctx: MarketContext) -> Finding:
        high, low = gap.highest, gap.lowest
        high_price, low_price = _price(high), _price(low)
        threshold = float(ctx.rules.cross_exchange_gap_ratio)
        if low_price:
            ratio = float(high_price / low_price)
            how_far = f"{times(ratio)} as much (threshold {times(threshold)})"
            how_far_zh = f"前者为后者的 {ratio:,.2f} 倍（阈值 {threshold:,.2f} 倍）"
        else:
            how_far, how_far_zh = "free on one exchange and paid on another", "一处免费、一处收费"
        return Finding(
            kind=self.kind,
            dedup_key=f"cross_exchange_price_gap:{product_id}:{episode.start_ms}",
            exchange_id=episode.exchange_id,
            product_id=product_id,
            parties=sorted({s for s in (high.seller_id, low.seller_id) if s}),
            event_ids=[high.event_id, low.event_id],
            score=gap.score,
            window_start_ms=episode.start_ms,
            window_end_ms=max(at, episode.start_ms),
            message=(
                f"Product {product_id} is listed at {cny(high_price)} CNY on {exchange_en(high.exchange_id)} "
                f"but at {cny(low_price)} CNY on {exchange_en(low.exchange_id)}: {how_far}."
            ),
            message_zh=(
                f"产品 {product_id} 在{exchange_zh(high.exchange_id)}挂牌价 {cny(high_price)} 元，"
                f"在{exchange_zh(low.exchange_id)}挂牌价 {cny(low_price)} 元，{how_far_zh}。"
            ),
        )
