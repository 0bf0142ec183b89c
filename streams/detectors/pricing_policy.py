"""`pricing_policy_violation`: public data listed free or conditionally free, charged for public governance.

Public data (公共数据) supplied for public governance and public-interest use
(公共治理、公益事业) is to be provided free (无偿) or conditionally free
(有条件无偿). A trade with `purpose = public_governance` and `amount > 0` of a
product listed with `source = public` and such pricing breaks that policy. The
listing whose terms apply is the product's listing on the trade's exchange,
else one recognising it there, else any other (see `terms`). A trade whose
product has no listing yet waits up to the allowed lateness (see `awaiting`).
One alert per trade.

Restore: unconcluded trades of the last two lateness spans, from `trades`.
"""

from __future__ import annotations

from models import AlertKind, Trade
from streams.detectors.awaiting import AwaitingListings
from streams.detectors.base import Finding, MarketContext, trade_finding
from streams.detectors.terms import governing
from streams.detectors.wording import cny, exchange_en, exchange_zh

FREE_PRICING = {"free": ("free", "无偿"), "conditional_free": ("conditionally free", "有条件无偿")}


class PricingPolicy(AwaitingListings):
    kind: AlertKind = "pricing_policy_violation"

    def assess(self, trade: Trade, ctx: MarketContext) -> list[Finding] | None:
        if trade.purpose != "public_governance" or trade.amount <= 0:
            return []
        terms = governing(ctx.book, trade.exchange_id, trade.product_id, trade.at_ms)
        if terms is None:
            return None
        if terms.source != "public" or terms.pricing not in FREE_PRICING:
            return []
        pricing_en, pricing_zh = FREE_PRICING[terms.pricing]
        return [
            trade_finding(
                self.kind,
                trade,
                dedup_key=f"pricing_policy_violation:{trade.exchange_id}:{trade.event_id}",
                score=1.0,
                message=(
                    f"Trade {trade.trade_id} on {exchange_en(trade.exchange_id)} charged {cny(trade.amount)} CNY "
                    f"for public-governance use of product {trade.product_id}, public data listed as "
                    f"{pricing_en} on {exchange_en(terms.exchange_id)} (seller {trade.seller_id}, "
                    f"buyer {trade.buyer_id})."
                ),
                message_zh=(
                    f"{exchange_zh(trade.exchange_id)}成交 {trade.trade_id} 以公共治理用途购买公共数据产品 "
                    f"{trade.product_id}，该产品在{exchange_zh(terms.exchange_id)}挂牌为{pricing_zh}，"
                    f"但成交金额为 {cny(trade.amount)} 元（卖方 {trade.seller_id}，买方 {trade.buyer_id}）。"
                ),
            )
        ]

    def conclude(self, trade: Trade, ctx: MarketContext) -> list[Finding]:
        return self.assess(trade, ctx) or []
