"""The eight surveillance rules of the contract, one module each, built from the rule settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from settings import RuleSettings
from streams.detectors.base import Detector, EventTimeDetector, Finding, MarketContext
from streams.detectors.exchange_silent import ExchangeSilent
from streams.detectors.legs import RAM_LEGS
from streams.detectors.price_gap import CrossExchangePriceGap
from streams.detectors.price_outlier import PriceOutlier
from streams.detectors.pricing_policy import PricingPolicy
from streams.detectors.self_dealing import SelfDealing
from streams.detectors.unlisted_product import UnlistedProduct
from streams.detectors.volume_spike import VolumeSpike
from streams.detectors.wash_trading import WashTrading

Scope = Literal["all", "local", "market"]


def build_detectors(
    rules: RuleSettings, scope: Scope = "all", state_dir: Path | None = None, ram_legs: int = RAM_LEGS
) -> list[Detector]:
    """One instance of every enabled rule. Thresholds are read from `MarketContext.rules` at each call.
    `state_dir`, `ram_legs`: where wash-trading legs beyond that many go (see `streams.detectors.legs`).
    `scope`: a worker that owns every partition runs them `all`; with several workers each runs the `local`
    ones (one product's events share a partition) and one runs the `market`-wide ones (`streams.market`)."""
    detectors: list[Detector] = [
        SelfDealing(),
        WashTrading(state_dir, ram_legs),
        PricingPolicy(),
        PriceOutlier(),
        CrossExchangePriceGap(),
        VolumeSpike(),
        ExchangeSilent(),
    ]
    if rules.unlisted_product_enabled:
        detectors.insert(2, UnlistedProduct())
    if scope == "all":
        return detectors
    return [detector for detector in detectors if detector.market_wide == (scope == "market")]


__all__ = [
    "CrossExchangePriceGap",
    "Detector",
    "EventTimeDetector",
    "ExchangeSilent",
    "Finding",
    "MarketContext",
    "PriceOutlier",
    "PricingPolicy",
    "Scope",
    "SelfDealing",
    "UnlistedProduct",
    "VolumeSpike",
    "WashTrading",
    "build_detectors",
]
