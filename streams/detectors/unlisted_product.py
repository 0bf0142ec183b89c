"""`unlisted_product`: a trade on exchange E of a product neither listed on E nor recognised by E.

A product may be traded on E if it is active there, or active on another
exchange whose listing names E in `recognized_by` (一地上架、全国互认). A listing
arriving up to the allowed lateness after the trade counts, so a trade without
one is held (see `awaiting`) until the watermark passes its time plus the
allowed lateness, then checked again. One alert per (exchange, product, day),
the day being the trade's calendar day in China Standard Time (UTC+8); the
evidence is the first unlisted trade of that day that reached a verdict.

Restore: unconcluded trades of the last two lateness spans, from `trades`.
"""

from __future__ import annotations

from models import AlertKind, Trade
from streams.detectors.awaiting import AwaitingListings
from streams.detectors.base import Finding, MarketContext, trade_finding
from streams.detectors.terms import listing_on, recognising
from streams.detectors.wording import china_day, cny, exchange_en, exchange_zh


class UnlistedProduct(AwaitingListings):
    kind: AlertKind = "unlisted_product"

    def assess(self, trade: Trade, ctx: MarketContext) -> list[Finding] | None:
        return [] if _allowed(trade, ctx) else None

    def conclude(self, trade: Trade, ctx: MarketContext) -> list[Finding]:
        if _allowed(trade, ctx):
            return []
        at = trade.at_ms
        day = china_day(at)
        return [
            trade_finding(
                self.kind,
                trade,
                dedup_key=f"unlisted_product:{trade.exchange_id}:{trade.product_id}:{day}",
                score=1.0,
                message=(
                    f"Product {trade.product_id} was traded on {exchange_en(trade.exchange_id)} on {day} "
                    f"(trade {trade.trade_id}, {cny(trade.amount)} CNY, seller {trade.seller_id}, "
                    f"buyer {trade.buyer_id}) although it is neither listed there nor recognised there "
                    "through a listing on another exchange."
                ),
                message_zh=(
                    f"产品 {trade.product_id} 于 {day} 在{exchange_zh(trade.exchange_id)}成交（成交 {trade.trade_id}，"
                    f"金额 {cny(trade.amount)} 元，卖方 {trade.seller_id}，买方 {trade.buyer_id}），"
                    "但该产品既未在该机构挂牌，也未通过其他机构的挂牌获得该机构互认。"
                ),
            )
        ]


def _allowed(trade: Trade, ctx: MarketContext) -> bool:
    at = trade.at_ms
    return (
        listing_on(ctx.book, trade.exchange_id, trade.product_id, at) is not None
        or recognising(ctx.book, trade.exchange_id, trade.product_id, at) is not None
    )
