"""`price_outlier`: a trade's unit price is >= 3x or <= 1/3 of the product's reference price.

The reference is the product's list price on the trade's exchange, else the
median of its list prices on the other exchanges where it is active (terms as
they stood at the trade's time, see `terms`). Out of scope: a reference of 0,
and a price of 0 for `purpose = public_governance` on a product priced `free`
or `conditional_free` (free public data is meant to be free). A trade with no
reference yet waits up to the allowed lateness for a listing (see `awaiting`).

Score: price/reference divided by the ratio when high, (1/ratio) divided by
price/reference when low, so 1.0 exactly at the threshold; a price of 0 counts
as one fen (0.01 CNY) so the score stays finite. One alert per trade.

Restore: unconcluded trades of the last two lateness spans, from `trades`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from statistics import median

from models import AlertKind, Trade
from streams.detectors.awaiting import AwaitingListings
from streams.detectors.base import Finding, MarketContext, trade_finding
from streams.detectors.terms import governing, listing_on, listings_elsewhere
from streams.detectors.wording import cny, exchange_en, exchange_zh, times

ONE_FEN = Decimal("0.01")
FREE = ("free", "conditional_free")


@dataclass(frozen=True, slots=True)
class Reference:
    price: Decimal
    basis_en: str
    basis_zh: str


def reference_price(trade: Trade, ctx: MarketContext) -> Reference | None:
    at = trade.at_ms
    own = listing_on(ctx.book, trade.exchange_id, trade.product_id, at)
    if own is not None and own.list_price is not None:
        return Reference(own.list_price, "its list price there", "本机构挂牌价")
    prices = [
        state.list_price
        for state in listings_elsewhere(ctx.book, trade.exchange_id, trade.product_id, at)
        if state.list_price is not None
    ]
    if not prices:
        return None
    return Reference(
        Decimal(median(prices)),
        f"the median of its list prices on {len(prices)} other exchange(s)",
        f"其在其他 {len(prices)} 家机构挂牌价的中位数",
    )


class PriceOutlier(AwaitingListings):
    kind: AlertKind = "price_outlier"

    def assess(self, trade: Trade, ctx: MarketContext) -> list[Finding] | None:
        reference = reference_price(trade, ctx)
        if reference is None:
            return None
        if reference.price == 0 or self._free_public_governance(trade, ctx):
            return []
        threshold = ctx.rules.price_outlier_ratio
        price = trade.price
        if price >= threshold * reference.price:
            score = float(price / reference.price / threshold)
        elif price * threshold <= reference.price:
            score = float(reference.price / (max(price, ONE_FEN) * threshold))
        else:
            return []
        return [self._finding(trade, reference, score)]

    def conclude(self, trade: Trade, ctx: MarketContext) -> list[Finding]:
        return self.assess(trade, ctx) or []

    def _free_public_governance(self, trade: Trade, ctx: MarketContext) -> bool:
        if trade.price != 0 or trade.purpose != "public_governance":
            return False
        terms = governing(ctx.book, trade.exchange_id, trade.product_id, trade.at_ms)
        return terms is not None and terms.pricing in FREE

    def _finding(self, trade: Trade, reference: Reference, score: float) -> Finding:
        ratio = float(trade.price / reference.price)
        high = trade.price > reference.price
        return trade_finding(
            self.kind,
            trade,
            dedup_key=f"price_outlier:{trade.exchange_id}:{trade.event_id}",
            score=score,
            message=(
                f"Trade {trade.trade_id} of product {trade.product_id} on {exchange_en(trade.exchange_id)} "
                f"was priced at {cny(trade.price)} CNY per unit, {'' if high else 'only '}{times(ratio)} "
                f"its reference price of {cny(reference.price)} CNY ({reference.basis_en})."
            ),
            message_zh=(
                f"{exchange_zh(trade.exchange_id)}成交 {trade.trade_id}（产品 {trade.product_id}）单价 "
                f"{cny(trade.price)} 元，{'为' if high else '仅为'}参考价 {cny(reference.price)} 元"
                f"（{reference.basis_zh}）的 {ratio:,.2f} 倍。"
            ),
        )
