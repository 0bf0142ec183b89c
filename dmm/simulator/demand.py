"""Which listing a buyer picks on an exchange: where high-quality datasets are meant to carry a
given share of traded value, listings are weighted so they do; elsewhere all are equally likely.

Trade prices stay near list prices and quantities do not depend on the product, so weighting
by list price aims the expected value share directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from dmm.simulator.market import Listing


class Demand:
    def __init__(self, high_quality_value_share: Mapping[str, float]) -> None:
        self.targets = dict(high_quality_value_share)

    def weights(self, exchange_id: str, listings: list[Listing]) -> list[float]:
        """Relative chance of each listing to be bought next."""
        share = self.targets.get(exchange_id)
        hq_value = sum((item.price for item in listings if item.product.high_quality), Decimal(0))
        other_value = sum((item.price for item in listings if not item.product.high_quality), Decimal(0))
        if share is None or hq_value == 0 or other_value == 0:
            return [1.0] * len(listings)
        boost = share * float(other_value) / ((1 - share) * float(hq_value))
        return [boost if item.product.high_quality else 1.0 for item in listings]
