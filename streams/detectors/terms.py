"""Which listings apply to a trade: the product's terms as they stood when it was traded.

The product book is folded in arrival order, so a delisting can be in the book
before a trade that happened earlier but arrived later. A listing therefore
*covers* a trade if it is active, or was delisted only after the trade's event
time. A listing that arrives after the trade (within the allowed lateness) is
active and covers it too, as the contract wants for `unlisted_product`.
"""

from __future__ import annotations

from streams.book import ProductBook, ProductListing


def covers(state: ProductListing, at_ms: int) -> bool:
    return state.active or state.changed_ms > at_ms


def listing_on(book: ProductBook, exchange_id: str, product_id: str, at_ms: int) -> ProductListing | None:
    """The product's own listing on this exchange, if it covers the trade."""
    state = book.by_product.get(product_id, {}).get(exchange_id)
    return state if state is not None and covers(state, at_ms) else None


def listings_elsewhere(book: ProductBook, exchange_id: str, product_id: str, at_ms: int) -> list[ProductListing]:
    """Covering listings of the product on other exchanges, in exchange-code order (deterministic)."""
    states = book.by_product.get(product_id, {})
    return [
        states[code] for code in sorted(states) if code != exchange_id and covers(states[code], at_ms)
    ]


def recognising(book: ProductBook, exchange_id: str, product_id: str, at_ms: int) -> ProductListing | None:
    """A covering listing elsewhere that names this exchange in `recognized_by` (一地上架、全国互认)."""
    for state in listings_elsewhere(book, exchange_id, product_id, at_ms):
        if exchange_id in state.recognized_by:
            return state
    return None


def governing(book: ProductBook, exchange_id: str, product_id: str, at_ms: int) -> ProductListing | None:
    """Whose source and pricing apply: the listing on this exchange, else a recognising one, else any."""
    return (
        listing_on(book, exchange_id, product_id, at_ms)
        or recognising(book, exchange_id, product_id, at_ms)
        or next(iter(listings_elsewhere(book, exchange_id, product_id, at_ms)), None)
    )
