"""The exchanges' books: every listing change, trade and metering record goes through here.

One path for clean and injected traffic keeps the catalogue state, the wire and the
per-minute volume ledger in step, whatever produced the event.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dmm.simulator.market import Listing, Market, Product
from dmm.simulator.volume import MinuteLedger
from dmm.simulator.wire import Tape


class Venues:
    def __init__(self, market: Market, tape: Tape, ledger: MinuteLedger) -> None:
        self.market = market
        self.tape = tape
        self.ledger = ledger

    def list_product(self, ms: int, product: Product, exchange_id: str, price: Decimal) -> Listing:
        """Put a product on an exchange (上架)."""
        fields: dict[str, Any] = {
            "action": "list",
            "product_id": product.product_id,
            "seller_id": product.seller_id,
            "title": product.title,
            "category": product.category,
            "source": product.source,
            "sector": product.sector,
            "pricing": product.pricing,
            "list_price": price,
            "unit": product.unit,
            "high_quality": product.high_quality,
        }
        if product.size_bytes is not None:
            fields["size_bytes"] = product.size_bytes
        fields["recognized_by"] = [code for code in product.recognized_by if code != exchange_id]
        event_id = self.tape.emit("listing", exchange_id, ms, fields)
        listing = Listing(product, exchange_id, price, event_id, ms)
        self.market.activate(listing)
        return listing

    def reprice(self, ms: int, listing: Listing, price: Decimal) -> str:
        """Change a product's list price on one exchange (调价)."""
        fields = {"action": "reprice", "product_id": listing.product.product_id, "list_price": price}
        event_id = self.tape.emit("listing", listing.exchange_id, ms, fields)
        listing.price, listing.price_event_id, listing.price_event_ms = price, event_id, ms
        return event_id

    def delist(self, ms: int, listing: Listing) -> str:
        """Take a product off one exchange for good (下架)."""
        fields = {"action": "delist", "product_id": listing.product.product_id}
        event_id = self.tape.emit("listing", listing.exchange_id, ms, fields)
        self.market.deactivate(listing.exchange_id, listing.product.product_id)
        return event_id

    def trade(
        self,
        ms: int,
        exchange_id: str,
        product: Product,
        *,
        seller_id: str,
        buyer_id: str,
        price: Decimal,
        quantity: int,
        purpose: str,
        venue: str = "on_exchange",
    ) -> str:
        """Record a trade (成交); amount is price x quantity exactly."""
        amount = price * quantity
        fields: dict[str, Any] = {
            "product_id": product.product_id,
            "buyer_id": buyer_id,
            "seller_id": seller_id,
            "price": price,
            "quantity": quantity,
            "amount": amount,
            "currency": "CNY",
            "venue": venue,
            "purpose": purpose,
        }
        if product.size_bytes is not None:
            fields["data_bytes"] = product.size_bytes * quantity
        event_id = self.tape.emit("trade", exchange_id, ms, fields)
        self.ledger.add(exchange_id, ms, amount)
        return event_id

    def usage(self, ms: int, exchange_id: str, product_id: str, buyer_id: str, calls: int, bytes_: int) -> str:
        """Meter calls and bytes delivered under a bought product (计量)."""
        fields = {"product_id": product_id, "buyer_id": buyer_id, "calls": calls, "bytes": bytes_}
        return self.tape.emit("usage", exchange_id, ms, fields)
