"""JSON for the page: money as text to the fen (never a float), shares as percent text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

PERCENT_PLACES = Decimal("0.01")


def share(part: Decimal | int, whole: Decimal | int) -> str | None:
    """`part` as a percentage of `whole`, to two decimals; None when the whole is zero."""
    if not whole:
        return None
    return str((Decimal(part) * 100 / Decimal(whole)).quantize(PERCENT_PLACES))


def plain(value: Any) -> Any:
    """The value with every Decimal as its exact text, ready for JSON."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
