"""Clean market activity: trades, usage metering and catalogue changes, clean by construction.

Every choice here stays inside the contract's rules: trades only of products active on the
exchange, from the product's own seller to a buyer, near the list price; public data bought
for public governance at 0; list prices moved in small steps inside the product's band; and
each exchange's traded amount per minute kept under a share of its volume-spike threshold.
"""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal
from functools import partial
from typing import Final

from dmm.simulator import figures, prices
from dmm.simulator.agenda import Agenda
from dmm.simulator.demand import Demand
from dmm.simulator.growth import Trend
from dmm.simulator.market import Listing, Market, Participant, pick
from dmm.simulator.venues import Venues
from dmm.simulator.volume import CLEAN_SHARE, MINUTE_MS, minute_of
from dmm.simulator.wire import Tape

_QUANTITIES: Final = (1, 2, 3, 5)
_QUANTITY_WEIGHTS: Final = (60, 25, 10, 5)
# New products come from `entrants` at the published rate; these are changes to listed ones.
_LISTING_CHANGES: Final[dict[str, float]] = {"cross_list": 0.35, "reprice": 0.55, "delist": 0.10}
_MIN_ACTIVE_PER_EXCHANGE: Final = 4
_ENTITLEMENTS_KEPT: Final = 500
_METERED: Final = frozenset({"api", "dataset"})


class CleanTraffic:
    def __init__(self, rng: random.Random, venues: Venues, demand: Demand, agenda: Agenda, trend: Trend) -> None:
        self.rng = rng
        self.agenda = agenda
        self.demand = demand
        self.venues = venues
        self.market: Market = venues.market
        self.tape: Tape = venues.tape
        self.trend = trend
        # Bought api/dataset products whose use is metered: (exchange, product, buyer).
        self.entitlements: deque[tuple[str, str, str]] = deque(maxlen=_ENTITLEMENTS_KEPT)

    def arrive(self, ms: int) -> None:
        """One arrival of the market's business-event process."""
        activity = pick(self.rng, figures.ACTIVITY_WEIGHTS)
        if activity == "listing":
            self.change_listing(ms)
        elif activity == "usage":
            if not self.meter(ms):
                self.trade(ms)
        elif not self.trade(ms):
            self.meter(ms)  # no exchange open: the rate holds

    def sending(self, ms: int) -> list[str]:
        """Exchanges not silent at `ms`, in registry order."""
        return [code for code in figures.EXCHANGE_WEIGHTS if not self.tape.is_silent(code, ms)]

    def trade(self, ms: int, buyer: Participant | None = None) -> bool:
        """A buyer (default: any) buys an active listing near its list price; False if no exchange is open."""
        open_ = {code: figures.EXCHANGE_WEIGHTS[code] for code in self.sending(ms) if self.market.active[code]}
        if not open_:
            return False
        code = pick(self.rng, open_)
        listings = list(self.market.active[code].values())
        listing = self.rng.choices(listings, weights=self.demand.weights(code, listings))[0]
        buyer = buyer or self.rng.choice(self.market.buyers)
        purpose = pick(self.rng, figures.PURPOSE_WEIGHTS[buyer.kind])
        quantity = self.rng.choices(_QUANTITIES, weights=_QUANTITY_WEIGHTS)[0]
        self._deal(listing, buyer, purpose, quantity, ms)
        return True

    def _deal(self, listing: Listing, buyer: Participant, purpose: str, quantity: int, ms: int) -> None:
        """Buy `quantity` units: what the exchange's minute has room for now, the rest at a moment of the next
        minute. A deal the volume cap holds back is deferred, not lost, so the market's value per day does not
        depend on how lumpy its trades are (only a unit dearer than a whole minute's room is dropped)."""
        code, product = listing.exchange_id, listing.product
        if self.market.active[code].get(product.product_id) is not listing or self.tape.is_silent(code, ms):
            self.trade(ms, buyer)  # delisted or silent meanwhile: the buyer looks elsewhere
            return
        ledger = self.venues.ledger
        price = self._price(listing, purpose)
        if price > CLEAN_SHARE * ledger.threshold(code, ms):
            return
        now = quantity if price == 0 else min(quantity, max(0, int(ledger.room(code, ms, CLEAN_SHARE) // price)))
        if now < quantity:
            later = (minute_of(ms) + 1) * MINUTE_MS + self.rng.randrange(MINUTE_MS)
            self.agenda.at(later, partial(self._deal, listing, buyer, purpose, quantity - now))
        if now == 0:
            return
        venue = "on_exchange" if self.rng.random() < self.trend.on_exchange_share(ms) else "off_exchange_registered"
        self.venues.trade(
            ms,
            code,
            product,
            seller_id=product.seller_id,
            buyer_id=buyer.code,
            price=price,
            quantity=now,
            purpose=purpose,
            venue=venue,
        )
        if product.category in _METERED:
            self.entitlements.append((code, product.product_id, buyer.code))

    def _price(self, listing: Listing, purpose: str) -> Decimal:
        """Free data costs nothing; conditionally free data is free for public governance."""
        product = listing.product
        if product.pricing == "free" or (product.pricing == "conditional_free" and purpose == "public_governance"):
            return prices.ZERO
        return prices.trade_price(self.rng, listing.price)

    def meter(self, ms: int) -> bool:
        """Usage under an earlier purchase; False when no purchase can be metered now."""
        while self.entitlements:
            code, product_id, buyer_id = self.rng.choice(self.entitlements)
            listing = self.market.active[code].get(product_id)
            if listing is None:
                self.entitlements.remove((code, product_id, buyer_id))
                continue
            if self.tape.is_silent(code, ms):
                return False
            if listing.product.category == "api":
                calls = self.rng.randint(50, 5_000)
                bytes_ = calls * self.rng.randint(500, 4_000)
            else:
                calls = self.rng.randint(1, 20)
                bytes_ = (listing.product.size_bytes or 0) // self.rng.randint(5, 50)
            self.venues.usage(ms, code, product_id, buyer_id, calls, bytes_)
            return True
        return False

    def change_listing(self, ms: int) -> None:
        """A catalogue change: listing on another exchange, repricing or delisting."""
        change = pick(self.rng, _LISTING_CHANGES)
        sending = self.sending(ms)
        if change == "cross_list":
            products = [
                p
                for p in self.market.products
                if not p.frozen and p.pricing != "free" and self.market.listings_of(p.product_id)
            ]
            if not products:
                return
            product = self.rng.choice(products)
            targets = [code for code in self.market.cross_list_targets(self.rng, product) if code in sending]
            if targets:
                price = prices.exchange_list_price(self.rng, product.base_price)
                self.venues.list_product(ms, product, targets[0], price)
            return
        changeable = [
            listing for code in sending for listing in self.market.active[code].values() if not listing.product.frozen
        ]
        if change == "delist":
            changeable = [
                item for item in changeable if len(self.market.active[item.exchange_id]) > _MIN_ACTIVE_PER_EXCHANGE
            ]
        else:
            changeable = [item for item in changeable if item.product.pricing != "free"]
        if not changeable:
            return
        listing = self.rng.choice(changeable)
        if change == "delist":
            self.venues.delist(ms, listing)
            return
        price = prices.reprice(self.rng, listing.product.base_price, listing.price)
        if price != listing.price:
            self.venues.reprice(ms, listing, price)
