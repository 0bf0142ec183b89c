"""Simulated runs shared by the simulator tests: one clean, one with every anomaly kind injected."""

from __future__ import annotations

import pytest

from dmm.simulator import SCENARIO_ALL
from tests.support.simulated_runs import Run, simulate


@pytest.fixture(scope="session")
def clean_run() -> Run:
    """45 minutes of clean traffic at the default rate."""
    return simulate(seed=11)


@pytest.fixture(scope="session")
def injected_run() -> Run:
    """The `all` scenario: two incidents of every kind."""
    return simulate(seed=5, injections=SCENARIO_ALL)
