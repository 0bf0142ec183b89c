"""The product book: what is listed where, at what price, as the event stream says.

Applied in arrival order, one `listing` event at a time. Enrichment (a trade's
sector, category, source) and several detectors read it; on start the worker
rebuilds it from the `listings` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from models import Dims, Listing

UNKNOWN = Dims()


class ProductListing(NamedTuple):
    """A product's listing on one exchange (active until delisted). A tuple: a reprice or delist makes a new
    one with `_replace`, several times cheaper than `dataclasses.replace` (about one event in thirteen)."""

    exchange_id: str
    product_id: str
    seller_id: str | None
    category: str | None
    source: str | None
    sector: str | None
    pricing: str | None
    list_price: Decimal | None
    high_quality: bool
    recognized_by: frozenset[str]
    active: bool
    changed_ms: int
    event_id: str
    dims: Dims  # built once per listing: every trade and usage event reads it

    @classmethod
    def listed(cls, listing: Listing) -> ProductListing:
        dims = Dims(
            sector=listing.sector or "unknown",
            category=listing.category or "unknown",
            source=listing.source or "unknown",
            high_quality=listing.high_quality,
        )
        return cls(
            listing.exchange_id,
            listing.product_id,
            listing.seller_id,
            listing.category,
            listing.source,
            listing.sector,
            listing.pricing,
            listing.list_price,
            listing.high_quality,
            frozenset(listing.recognized_by),
            True,
            listing.at_ms,
            listing.event_id,
            dims,
        )


@dataclass
class ProductBook:
    by_product: dict[str, dict[str, ProductListing]] = field(default_factory=dict)

    def apply(self, listing: Listing) -> ProductListing | None:
        """Fold one listing event in; returns the product's new state on that exchange (None if unknown)."""
        on_exchange = self.by_product.setdefault(listing.product_id, {})
        current = on_exchange.get(listing.exchange_id)
        at = listing.at_ms
        if listing.action == "list":
            state = ProductListing.listed(listing)
        elif current is None:
            return None  # reprice/delist of a product never listed here: stored, nothing to change
        elif listing.action == "reprice":
            state = current._replace(list_price=listing.list_price, changed_ms=at, event_id=listing.event_id)
        else:
            state = current._replace(active=False, changed_ms=at, event_id=listing.event_id)
        on_exchange[listing.exchange_id] = state
        return state

    def on(self, exchange_id: str, product_id: str) -> ProductListing | None:
        """The product's active listing on this exchange, if any."""
        state = self.by_product.get(product_id, {}).get(exchange_id)
        return state if state is not None and state.active else None

    def active(self, product_id: str) -> list[ProductListing]:
        return [s for s in self.by_product.get(product_id, {}).values() if s.active]

    def recognised_on(self, exchange_id: str, product_id: str) -> ProductListing | None:
        """An active listing elsewhere that names this exchange in `recognized_by` (一地上架、全国互认)."""
        for state in self.active(product_id):
            if state.exchange_id != exchange_id and exchange_id in state.recognized_by:
                return state
        return None

    def dims(self, exchange_id: str, product_id: str) -> Dims:
        """Classification for aggregates: this exchange's listing, else any listing of the product."""
        return dims_among(self.by_product.get(product_id), exchange_id)


def dims_among(listings: Mapping[str, ProductListing] | None, exchange_id: str) -> Dims:
    """`ProductBook.dims` from one product's listings by exchange (the book's, or a copy of them kept)."""
    if not listings:
        return UNKNOWN
    state = listings.get(exchange_id)
    if state is None:
        state = next(iter(listings.values()))
    return state.dims
