"""The product book: what is listed where, at what price, as the event stream says.

Applied in arrival order, one `listing` event at a time. Enrichment (a trade's
sector, category, source) and several detectors read it; on start the worker
rebuilds it from the `listings` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from models import Listing
from sinks.clickhouse import Dims

UNKNOWN = Dims()


@dataclass(frozen=True, slots=True)
class ProductListing:
    """A product's listing on one exchange (active until delisted)."""

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
    dims: Dims = field(init=False)  # built once per listing state: every trade and usage event reads it

    def __post_init__(self) -> None:
        dims = Dims(
            sector=self.sector or "unknown",
            category=self.category or "unknown",
            source=self.source or "unknown",
            high_quality=self.high_quality,
        )
        object.__setattr__(self, "dims", dims)


@dataclass
class ProductBook:
    by_product: dict[str, dict[str, ProductListing]] = field(default_factory=dict)

    def apply(self, listing: Listing) -> ProductListing | None:
        """Fold one listing event in; returns the product's new state on that exchange (None if unknown)."""
        on_exchange = self.by_product.setdefault(listing.product_id, {})
        current = on_exchange.get(listing.exchange_id)
        at = listing.at_ms
        if listing.action == "list":
            state = ProductListing(
                exchange_id=listing.exchange_id,
                product_id=listing.product_id,
                seller_id=listing.seller_id,
                category=listing.category,
                source=listing.source,
                sector=listing.sector,
                pricing=listing.pricing,
                list_price=listing.list_price,
                high_quality=listing.high_quality,
                recognized_by=frozenset(listing.recognized_by),
                active=True,
                changed_ms=at,
                event_id=listing.event_id,
            )
        elif current is None:
            return None  # reprice/delist of a product never listed here: stored, nothing to change
        elif listing.action == "reprice":
            state = replace(current, list_price=listing.list_price, changed_ms=at, event_id=listing.event_id)
        else:
            state = replace(current, active=False, changed_ms=at, event_id=listing.event_id)
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
        state = self.by_product.get(product_id, {}).get(exchange_id)
        if state is None:
            known = self.by_product.get(product_id)
            state = next(iter(known.values()), None) if known else None
        return state.dims if state is not None else UNKNOWN
