"""A real embedded stack (Tansu broker + `dmm worker` process + chdb store) per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dmm.broker import free_port
from dmm.stack import EmbeddedStack
from settings import ClickHouseSettings, KafkaSettings, Settings


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
