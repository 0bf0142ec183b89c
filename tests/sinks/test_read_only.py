"""Read-only access: `dmm sql` and other readers open the store as a SELECT-only user would.

The embedded store runs such a session with `readonly = 1` (the profile deploy/clickhouse/grants.sql
gives `dmm_reader`): reading works, and nothing on that path creates, inserts or changes a setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import ClickHouseSettings, Settings
from sinks.clickhouse import StoreError, open_store
from sinks.clickhouse.store import ChdbStore


def test_a_reader_selects_but_cannot_write_or_create(tmp_path: Path) -> None:
    writer = open_store(ClickHouseSettings(chdb_path=tmp_path / "chdb"))
    writer.command(
        "INSERT INTO datamarket.alert_actions (dedup_key, action, actor, note, at) "
        "VALUES ('k', 'ack', 'li.wei', '', now64(3))"
    )
    writer.close()

    reader = open_store(ClickHouseSettings(chdb_path=tmp_path / "chdb"), read_only=True)
    try:
        assert reader.text("SELECT actor FROM datamarket.alert_actions", "CSV").strip() == '"li.wei"'
        with pytest.raises(StoreError, match="readonly"):
            reader.command("INSERT INTO datamarket.alert_actions (dedup_key, action, actor, note, at) "
                           "VALUES ('k2', 'ack', 'x', '', now64(3))")
        with pytest.raises(StoreError, match="readonly"):
            reader.command("CREATE TABLE datamarket.sneaky (a Int32) ENGINE = Memory")
    finally:
        reader.close()


def test_opening_for_reading_creates_no_schema(tmp_path: Path) -> None:
    reader = open_store(ClickHouseSettings(chdb_path=tmp_path / "empty"), read_only=True)
    try:
        with pytest.raises(StoreError, match="(?i)database datamarket does not exist|UNKNOWN_DATABASE"):
            reader.text("SELECT count() FROM datamarket.trades", "CSV")
    finally:
        reader.close()


def test_dmm_sql_runs_on_a_read_only_session_without_the_worker(tmp_path: Path) -> None:
    from dmm.query import query_rows

    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    store.close()
    settings = Settings(clickhouse=ClickHouseSettings(chdb_path=tmp_path / "chdb"), web_port=1)  # no worker there
    assert query_rows(settings, "SELECT count() AS n FROM datamarket.trades") == [{"n": 0}]
