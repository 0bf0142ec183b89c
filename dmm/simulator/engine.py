"""The simulation run: set up the market, then play its agenda in event-time order.

Everything random flows from one `random.Random(seed)` and event time is simulated, so a
seed and a start time determine the output byte for byte, however fast it is consumed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Final

from dmm.simulator import figures, prices
from dmm.simulator.agenda import Agenda
from dmm.simulator.anomalies import KINDS, Injector
from dmm.simulator.demand import Demand
from dmm.simulator.entrants import Entrants
from dmm.simulator.figures import EXCHANGE_WEIGHTS
from dmm.simulator.ground_truth import Incident
from dmm.simulator.growth import SECONDS_PER_DAY, SECONDS_PER_YEAR, Trend
from dmm.simulator.market import Market, Participant, Product
from dmm.simulator.traffic import CleanTraffic
from dmm.simulator.venues import Venues
from dmm.simulator.volume import MinuteLedger
from dmm.simulator.wire import Message, Tape
from models.clock import CHINA_STANDARD_TIME, to_ms
from settings import RuleSettings

HEARTBEAT_MS: Final = 10_000
_CATALOGUE_MS: Final = 20_000
# Exchanges' heartbeat clocks are not in phase: spread them over the interval.
_HEARTBEAT_PHASE_MS: Final = HEARTBEAT_MS // len(EXCHANGE_WEIGHTS)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; `rate` is business events (listing, trade, usage) per simulated second at the start.

    The market is the statements' for the start date, whatever the rate: a day of event time trades
    `traded_cny_per_day` (default: 160 billion CNY a year in 2024, grown by `growth` a year since; prices
    scale so `rate` events a second carry it), of which `on_exchange_share` on exchange (default: the
    statements', rising as on-exchange value doubles each year). Every rate grows by `growth` per market
    year of `year_s` simulated seconds (shorten it to see years of growth in a short run). New products
    and participants arrive at the published national counts per day of event time. In the exchanges of
    `high_quality_value_share`, high-quality datasets carry that share of the traded value.
    """

    seed: int = 1
    start: datetime | None = None
    duration_s: float | None = 2_700.0
    rate: float = 1.0
    injections: Mapping[str, int] = field(default_factory=dict)
    # Inject within the first this many seconds (default: the whole run); lets an endless run inject.
    injections_within_s: float | None = None
    rules: RuleSettings = field(default_factory=RuleSettings)
    growth: float = figures.ANNUAL_GROWTH
    year_s: float = SECONDS_PER_YEAR
    new_products_per_half_year: float = figures.NEW_PRODUCTS_PER_HALF_YEAR
    new_participants_per_quarter: float = figures.NEW_PARTICIPANTS_PER_QUARTER
    traded_cny_per_day: float | None = None
    on_exchange_share: float | None = None
    high_quality_value_share: Mapping[str, float] = field(
        default_factory=lambda: dict(figures.HIGH_QUALITY_VALUE_SHARE)
    )

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be > 0 events per simulated second")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be > 0 simulated seconds")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")
        unknown = sorted(set(self.injections) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown anomaly kind(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
        if self.injections and self.duration_s is None and self.injections_within_s is None:
            raise ValueError("injections need a finite duration (or a span to inject within)")
        if self.injections_within_s is not None and not 0 < self.injections_within_s <= (self.duration_s or math.inf):
            raise ValueError("the span to inject within must be > 0 and no longer than the run")
        if self.growth <= -1:
            raise ValueError("growth must be > -1 (-0.1 is a market shrinking 10% a year)")
        if self.year_s <= 0:
            raise ValueError("a market year must last > 0 simulated seconds")
        if self.new_products_per_half_year < 0 or self.new_participants_per_quarter < 0:
            raise ValueError("new products and new participants must be >= 0")
        if self.traded_cny_per_day is not None and self.traded_cny_per_day <= 0:
            raise ValueError("the value traded per day must be > 0 CNY")
        if self.on_exchange_share is not None and not 0 <= self.on_exchange_share <= 1:
            raise ValueError("the on-exchange share of traded value must be between 0 and 1")
        unknown = sorted(set(self.high_quality_value_share) - set(EXCHANGE_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown exchange(s) for a high-quality share: {', '.join(unknown)}")
        if not all(0 < share < 1 for share in self.high_quality_value_share.values()):
            raise ValueError("a high-quality share of traded value must be between 0 and 1 (exclusive)")


class MarketSimulator:
    """Iterate once for the messages; `incidents` then holds the ground truth of what was injected."""

    def __init__(self, config: SimulationConfig) -> None:
        start = config.start or datetime.now(UTC).replace(microsecond=0)
        self.start_ms = to_ms(start)
        self.end_ms = None if config.duration_s is None else self.start_ms + round(config.duration_s * 1_000)
        self._rate = config.rate
        self.trend = Trend(self.start_ms, config.growth, config.year_s, config.on_exchange_share)
        self.cny_per_day = config.traded_cny_per_day or self.trend.traded_cny_per_day(self.start_ms)
        self._rng = random.Random(config.seed)
        self._agenda = Agenda(self.start_ms)
        self._tape = Tape()
        price_scale = self.cny_per_day / SECONDS_PER_DAY / (config.rate * figures.CNY_PER_ARRIVAL)
        market = Market.build(self._rng, frozenset(config.high_quality_value_share), price_scale)
        venues = Venues(market, self._tape, MinuteLedger(config.rules))
        year = start.astimezone(CHINA_STANDARD_TIME).year
        demand = Demand(config.high_quality_value_share)
        self._traffic = CleanTraffic(self._rng, venues, demand, self._agenda, self.trend)
        self._injector = Injector(self._rng, venues, self._agenda, config.rules)
        self._entrants = Entrants(
            self._rng,
            self._traffic,
            self._agenda,
            self.trend,
            year,
            products_per_half_year=config.new_products_per_half_year,
            participants_per_quarter=config.new_participants_per_quarter,
        )
        self._schedule_catalogue(venues, market.initial_catalogue(self._rng, year))
        for index, code in enumerate(EXCHANGE_WEIGHTS):
            self._agenda.at(self.start_ms + index * _HEARTBEAT_PHASE_MS, partial(self._heartbeat, code))
        self._schedule_arrival(self.start_ms)
        self._entrants.start(self.start_ms + _CATALOGUE_MS)
        within = config.injections_within_s
        inject_until = self.end_ms if within is None else self.start_ms + round(within * 1_000)
        if inject_until is not None:
            self._injector.plan(self.start_ms, inject_until, config.injections)

    @property
    def planned(self) -> int:
        """Injections planned for the run."""
        return len(self._injector.incidents) + self._injector.pending

    @property
    def incidents(self) -> list[Incident]:
        return self._injector.incidents

    @property
    def newcomers(self) -> list[tuple[int, Participant]]:
        """Participants who joined during the run, with the event time (ms) they joined at."""
        return self._entrants.joined

    def __iter__(self) -> Iterator[Message]:
        while (due := self._agenda.next_time()) is not None and (self.end_ms is None or due <= self.end_ms):
            self._agenda.run_next()
            yield from self._tape.drain()
        if self._injector.pending:
            raise RuntimeError(f"{self._injector.pending} injection(s) found no target before the end of the run")

    def messages(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs for `dm.events`, in event-time order."""
        for message in self:
            yield message.key, message.value

    def _schedule_catalogue(self, venues: Venues, catalogue: list[tuple[Product, str]]) -> None:
        """Exchanges publish their catalogues during the first seconds."""
        for index, (product, code) in enumerate(catalogue):
            ms = self.start_ms + index * _CATALOGUE_MS // len(catalogue)
            price = prices.exchange_list_price(self._rng, product.base_price)
            self._agenda.at(ms, partial(venues.list_product, product=product, exchange_id=code, price=price))

    def _heartbeat(self, code: str, ms: int) -> None:
        if not self._tape.is_silent(code, ms):
            self._tape.heartbeat(code, ms)
        self._agenda.at(ms + HEARTBEAT_MS, partial(self._heartbeat, code))

    def _arrive(self, ms: int) -> None:
        self._traffic.arrive(ms)
        self._schedule_arrival(ms)

    def _schedule_arrival(self, ms: int) -> None:
        """Poisson arrivals at `rate` per simulated second, growing along the trend (at least 1 ms apart)."""
        due = self.trend.next_arrival(self._rng, ms, self._rate)
        if due is not None:
            self._agenda.at(due, self._arrive)
