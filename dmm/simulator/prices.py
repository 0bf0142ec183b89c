"""Prices: what products cost, how exchanges reprice them, and what buyers pay.

The bounds keep clean traffic far from every price rule of the contract: list prices of
one product across exchanges stay within BAND_HIGH / BAND_LOW (< 1.5x, gap rule is 2x), and
trade prices within TRADE_SPREAD of the list price (outlier rule is 3x or 1/3).
"""

from __future__ import annotations

import math
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

CENT: Final = Decimal("0.01")
ZERO: Final = Decimal("0.00")

# A product's list price on any exchange stays within [BAND_LOW, BAND_HIGH] x its base price.
BAND_LOW: Final = 0.88
BAND_HIGH: Final = 1.20
LIST_SPREAD: Final = (0.92, 1.10)
REPRICE_STEP: Final = 0.05
TRADE_SPREAD: Final = 0.15

# Median and spread (lognormal sigma) of the base price per category, CNY per unit.
_BASE_PRICE: Final[dict[str, tuple[float, float]]] = {
    "dataset": (4_000.0, 0.7),
    "api": (800.0, 0.6),
    "report": (2_500.0, 0.5),
    "model": (6_000.0, 0.5),
    "service": (3_000.0, 0.5),
    "compute": (2_000.0, 0.5),
}
_HIGH_QUALITY_PREMIUM: Final = 1.6
# Cost-recovery fee of conditionally free public data for commercial use.
_CONDITIONAL_FEE: Final = (100.0, 1_500.0)
_PRICE_FLOOR: Final = 50.0
_PRICE_CEILING: Final = 15_000.0


def money(value: float | Decimal) -> Decimal:
    """CNY rounded to the fen, as the contract's decimal strings carry it."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def base_price(rng: random.Random, category: str, pricing: str, high_quality: bool, scale: float = 1.0) -> Decimal:
    """The product's reference price before each exchange's own listing spread; `scale` multiplies every price
    (the market's value per arrival, see `figures.CNY_PER_ARRIVAL`)."""
    if pricing == "free":
        return ZERO
    if pricing == "conditional_free":
        return money(rng.uniform(*_CONDITIONAL_FEE) * scale)
    median, sigma = _BASE_PRICE[category]
    premium = _HIGH_QUALITY_PREMIUM if high_quality else 1.0
    value = median * premium * math.exp(rng.gauss(0.0, sigma))
    return money(min(max(value, _PRICE_FLOOR), _PRICE_CEILING) * scale)


def exchange_list_price(rng: random.Random, base: Decimal) -> Decimal:
    """One exchange's list price for a product: close to its base price."""
    return money(float(base) * rng.uniform(*LIST_SPREAD))


def reprice(rng: random.Random, base: Decimal, current: Decimal) -> Decimal:
    """A small repricing step that stays inside the product's clean band."""
    step = float(current) * (1.0 + rng.uniform(-REPRICE_STEP, REPRICE_STEP))
    low, high = float(base) * BAND_LOW, float(base) * BAND_HIGH
    return money(min(max(step, low), high))


def trade_price(rng: random.Random, reference: Decimal) -> Decimal:
    """A negotiated unit price near the reference (list) price."""
    return money(float(reference) * rng.uniform(1.0 - TRADE_SPREAD, 1.0 + TRADE_SPREAD))
