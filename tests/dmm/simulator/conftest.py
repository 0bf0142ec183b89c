"""Simulated runs shared by the simulator tests: one clean, one with every anomaly kind injected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dmm.simulator import SCENARIO_ALL, Incident, MarketSimulator, Message, SimulationConfig

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


@pytest.fixture(scope="session")
def clean_run() -> Run:
    """45 minutes of clean traffic at the default rate."""
    return simulate(seed=11)


@pytest.fixture(scope="session")
def injected_run() -> Run:
    """The `all` scenario: two incidents of every kind."""
    return simulate(seed=5, injections=SCENARIO_ALL)
