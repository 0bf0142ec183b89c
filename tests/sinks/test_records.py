"""Records the worker writes about itself, in a real embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.clickhouse.records import record_market_progress
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration


def test_market_progress_at_the_same_offsets_of_a_new_log_is_recorded_not_dropped_as_a_retry(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    record_market_progress(store, "dm.events", "log-a", {0: 3})
    record_market_progress(store, "dm.events", "log-a", {0: 3})  # a retry: the same write, dropped
    record_market_progress(store, "dm.events", "log-b", {0: 3})  # a new broker's log, as far along
    reader = StateReader(store)
    assert reader.market_progress("dm.events", "log-a") == {0: 3}
    assert reader.market_progress("dm.events", "log-b") == {0: 3}
    assert store.rows("SELECT count() AS n FROM datamarket.market_progress") == [{"n": 2}]
    store.close()
