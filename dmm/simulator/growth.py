"""Market growth: every activity rate rises by `growth` per market year of simulated time.

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

SECONDS_PER_YEAR: Final = 365 * 24 * 3600


@dataclass(frozen=True)
class Trend:
    start_ms: int
    growth: float
    year_s: float = SECONDS_PER_YEAR

    @property
    def _per_ms(self) -> float:
        """Continuous growth rate per millisecond."""
        return math.log1p(self.growth) / (self.year_s * 1_000)

    def factor(self, ms: int) -> float:
        """How much busier the market is at `ms` than at the start."""
        return math.exp(self._per_ms * (ms - self.start_ms))

    def next_arrival(self, rng: random.Random, ms: int, rate_per_s: float) -> int | None:
        """Event time of the next arrival after `ms` (at least 1 ms later); None if a shrinking
        market has no arrival left to come."""
        if rate_per_s <= 0:
            return None
        draw = rng.expovariate(1.0)
        intensity = rate_per_s / 1_000 * self.factor(ms)
        k = self._per_ms
        if k == 0:
            gap = draw / intensity
        else:
            inner = draw * k / intensity
            if inner <= -1:
                return None
            gap = math.log1p(inner) / k
        return ms + max(1, round(gap))
