"""Market growth: every activity rate rises by `growth` per market year of simulated time, and the
statements' figures (value per day, on-exchange share) follow the calendar from 1 January 2024.

Arrivals are an inhomogeneous Poisson process of intensity rate x (1 + growth)^(t / year).
Each gap is drawn by inverting the intensity's integral, so counts follow the trend exactly
however much the calendar is compressed (`year_s` shorter than a real year shows years of
growth in a short run).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from dmm.simulator import figures
from models.clock import to_ms

SECONDS_PER_YEAR: Final = 365 * 24 * 3600
SECONDS_PER_DAY: Final = 24 * 3600
_EPOCH_MS: Final = to_ms(figures.STATEMENTS_EPOCH)


@dataclass(frozen=True)
class Trend:
    start_ms: int
    growth: float
    year_s: float = SECONDS_PER_YEAR
    # A fixed on-exchange share of value instead of the statements' rising one.
    fixed_on_exchange_share: float | None = None

    @property
    def _per_ms(self) -> float:
        """Continuous growth rate per millisecond."""
        return math.log1p(self.growth) / (self.year_s * 1_000)

    def factor(self, ms: int) -> float:
        """How much busier the market is at `ms` than at the start."""
        return math.exp(self._per_ms * (ms - self.start_ms))

    def market_years(self, ms: int) -> float:
        """Market years from the statements' epoch to `ms`: calendar years up to the run's start (its date is
        the statements' date), then one per `year_s` of simulated time."""
        before = (self.start_ms - _EPOCH_MS) / (SECONDS_PER_YEAR * 1_000)
        return before + (ms - self.start_ms) / (self.year_s * 1_000)

    def traded_cny_per_day(self, ms: int) -> float:
        """The national value traded per day at `ms`: 160 billion CNY a year in 2024, growing `growth` a year."""
        return figures.TRADED_CNY_2024 / 365 * math.pow(1 + self.growth, self.market_years(ms))

    def on_exchange_share(self, ms: int) -> float:
        """The on-exchange venue's share of value at `ms`: 30 of 160 billion in 2024, on-exchange value doubling
        each market year (while the whole market grows `growth`), up to the cap; or the fixed share."""
        if self.fixed_on_exchange_share is not None:
            return self.fixed_on_exchange_share
        rise = (1 + figures.ON_EXCHANGE_ANNUAL_GROWTH) / (1 + self.growth)
        share = figures.ON_EXCHANGE_CNY_2024 / figures.TRADED_CNY_2024 * math.pow(rise, self.market_years(ms))
        return min(share, figures.ON_EXCHANGE_SHARE_CAP)

    def next_arrival(self, rng: random.Random, ms: int, rate_per_s: float) -> int | None:
        """Event time of the next arrival after `ms` (at least 1 ms later); None if a shrinking
        market has no arrival left to come."""
        return self.after(ms, rate_per_s, rng.expovariate(1.0))

    def after(self, ms: int, rate_per_s: float, expected: float) -> int | None:
        """Event time by which `expected` arrivals at `rate_per_s` (growing along the trend) are due after `ms`
        (at least 1 ms later); None if a shrinking market never gets there."""
        if rate_per_s <= 0:
            return None
        intensity = rate_per_s / 1_000 * self.factor(ms)
        k = self._per_ms
        if k == 0:
            gap = expected / intensity
        else:
            inner = expected * k / intensity
            if inner <= -1:
                return None
            gap = math.log1p(inner) / k
        return ms + max(1, round(gap))
