"""A real embedded stack (Tansu broker + `dmm worker` process + chdb store) per test module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dmm.broker import free_port
from dmm.simulator import KINDS, MarketSimulator, SimulationConfig
from dmm.stack import EmbeddedStack
from settings import ClickHouseSettings, KafkaSettings, Settings


def every_kind_scenario() -> MarketSimulator:
    """The seeded scenario the end-to-end tests share: 50 minutes, every alert kind injected twice."""
    return MarketSimulator(
        SimulationConfig(
            seed=21,
            start=datetime.fromisoformat("2026-11-21T08:00:00+08:00"),
            duration_s=3000,
            rate=2.0,
            injections={kind: 2 for kind in KINDS},
        )
    )


def stack_settings(workdir: Path) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
        clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"),
        web_port=free_port(),
        log_json=True,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(stack_settings(workdir), workdir) as running:
        yield running
