from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse.store import ChdbStore
from tests.support.detector_market import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    """An embedded ClickHouse store with the monitor's schema, on a fresh directory."""
    opened = open_store(tmp_path / "chdb")
    yield opened
    opened.close()
