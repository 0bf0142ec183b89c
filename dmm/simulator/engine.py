"""The simulation run: set up the market, then play its agenda in event-time order.

Everything random flows from one `random.Random(seed)` and event time is simulated, so a
seed and a start time determine the output byte for byte, however fast it is consumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Final

from settings import RuleSettings
from dmm.simulator import prices
from dmm.simulator.agenda import Agenda
from dmm.simulator.anomalies import KINDS, Injector
from dmm.simulator.figures import EXCHANGE_WEIGHTS
from dmm.simulator.ground_truth import Incident
from dmm.simulator.market import Market, Product
from dmm.simulator.traffic import CleanTraffic
from dmm.simulator.venues import Venues
from dmm.simulator.volume import MinuteLedger
from dmm.simulator.wire import CST, Message, Tape, to_ms

HEARTBEAT_MS: Final = 10_000
_CATALOGUE_MS: Final = 20_000
# Exchanges' heartbeat clocks are not in phase: spread them over the interval.
_HEARTBEAT_PHASE_MS: Final = HEARTBEAT_MS // len(EXCHANGE_WEIGHTS)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; `rate` is business events (listing, trade, usage) per simulated second."""

    seed: int = 1
    start: datetime | None = None
    duration_s: float | None = 2_700.0
    rate: float = 1.0
    injections: Mapping[str, int] = field(default_factory=dict)
    rules: RuleSettings = field(default_factory=RuleSettings)

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
        if self.injections and self.duration_s is None:
            raise ValueError("injections need a finite duration")


class MarketSimulator:
    """Iterate once for the messages; `incidents` then holds the ground truth of what was injected."""

    def __init__(self, config: SimulationConfig) -> None:
        start = config.start or datetime.now(UTC).replace(microsecond=0)
        self.start_ms = to_ms(start)
        self.end_ms = None if config.duration_s is None else self.start_ms + round(config.duration_s * 1_000)
        self._rate = config.rate
        self._rng = random.Random(config.seed)
        self._agenda = Agenda(self.start_ms)
        self._tape = Tape()
        market = Market.build(self._rng)
        venues = Venues(market, self._tape, MinuteLedger(config.rules.volume_spike_history_windows))
        year = start.astimezone(CST).year
        self._traffic = CleanTraffic(self._rng, venues, config.rules.volume_spike_min_amount, year)
        self._injector = Injector(self._rng, venues, self._agenda, config.rules)
        self._schedule_catalogue(venues, market.initial_catalogue(self._rng, year))
        for index, code in enumerate(EXCHANGE_WEIGHTS):
            self._agenda.at(self.start_ms + index * _HEARTBEAT_PHASE_MS, partial(self._heartbeat, code))
        self._agenda.at(self._next_arrival(self.start_ms), self._arrive)
        if self.end_ms is not None:
            self._injector.plan(self.start_ms, self.end_ms, config.injections)

    @property
    def incidents(self) -> list[Incident]:
        return self._injector.incidents

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
        self._agenda.at(self._next_arrival(ms), self._arrive)

    def _next_arrival(self, ms: int) -> int:
        """Poisson arrivals at `rate` per simulated second (at least 1 ms apart)."""
        return ms + max(1, round(self._rng.expovariate(self._rate) * 1_000))
