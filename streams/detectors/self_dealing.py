"""`self_dealing`: a trade whose buyer is its own seller (对敲自买自卖).

Judged per trade on arrival, late or not: the trade alone is the evidence, so
there is no state to keep or rebuild. One alert per trade.
"""

from __future__ import annotations

from models import AlertKind, AnyEvent, Trade
from streams.detectors.base import EventTimeDetector, Finding, MarketContext, trade_finding
from streams.detectors.wording import cny, exchange_en, exchange_zh


class SelfDealing(EventTimeDetector):
    kind: AlertKind = "self_dealing"
    observes = (Trade,)

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        if not isinstance(event, Trade) or event.buyer_id != event.seller_id:
            return []
        return [
            trade_finding(
                self.kind,
                event,
                dedup_key=f"self_dealing:{event.exchange_id}:{event.event_id}",
                score=1.0,
                message=(
                    f"Participant {event.buyer_id} is both buyer and seller in trade {event.trade_id} "
                    f"of product {event.product_id} on {exchange_en(event.exchange_id)}, "
                    f"worth {cny(event.amount)} CNY."
                ),
                message_zh=(
                    f"{exchange_zh(event.exchange_id)}成交 {event.trade_id}（产品 {event.product_id}，"
                    f"金额 {cny(event.amount)} 元）的买方与卖方为同一主体 {event.buyer_id}。"
                ),
            )
        ]
