"""Simulated runs for the tests: fixed start, so every run is reproducible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dmm.simulator import Incident, MarketSimulator, Message, SimulationConfig

START = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    messages: list[Message]
    incidents: list[Incident]

    @property
    def lines(self) -> list[bytes]:
        return [message.value for message in self.messages]


def simulate(**options: object) -> Run:
    simulator = MarketSimulator(SimulationConfig(start=START, **options))  # type: ignore[arg-type]
    return Run(list(simulator), simulator.incidents)
