"""Read-only access on a real embedded store: what `dmm sql` and the console read runs with.

A reader opening the store runs its session with `readonly = 1` (the profile deploy/clickhouse/grants.sql
gives `dmm_reader`). Reads for someone else (`Store.reads`) run each on a connection of their own with
`readonly = 1` and ClickHouse's limits, behind the SQL guard for typed statements: the attacks of issue 25
change nothing and read nothing, a runaway query is stopped, and a slow one holds no write.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from settings import ClickHouseSettings, Settings, SqlSettings
from sinks.clickhouse import ReadOnlyViolation, StoreError, open_store
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration

ACTION = (
    "INSERT INTO datamarket.alert_actions (dedup_key, action, actor, note, at) "
    "VALUES ('k', 'ack', 'li.wei', '', now64(3))"
)
# Thirty seconds of sleep in three-second steps (ClickHouse sleeps at most 3 s per block), no table needed.
SLOW = "SELECT sum(s) AS slept FROM (" + " UNION ALL ".join(["SELECT sleep(3) AS s"] * 20) + ")"


@pytest.fixture
def store(tmp_path: Path) -> ChdbStore:
    opened = ChdbStore(tmp_path / "chdb")
    opened.apply_schema()
    opened.command(ACTION)
    yield opened
    opened.close()


def test_a_reader_selects_but_cannot_write_or_create(tmp_path: Path) -> None:
    writer = open_store(ClickHouseSettings(chdb_path=tmp_path / "chdb"))
    writer.command(ACTION)
    writer.close()

    reader = open_store(ClickHouseSettings(chdb_path=tmp_path / "chdb"), read_only=True)
    try:
        assert reader.reads(SqlSettings()).ad_hoc("SELECT actor FROM alert_actions", "CSV").strip() == '"li.wei"'
        with pytest.raises(StoreError, match="readonly"):
            reader.command(ACTION.replace("'k'", "'k2'"))
        with pytest.raises(StoreError, match="readonly"):
            reader.command("CREATE TABLE datamarket.sneaky (a Int32) ENGINE = Memory")
    finally:
        reader.close()


def test_opening_for_reading_creates_no_schema(tmp_path: Path) -> None:
    reader = open_store(ClickHouseSettings(chdb_path=tmp_path / "empty"), read_only=True)
    try:
        with pytest.raises(StoreError, match=r"(?i)database datamarket does not exist|UNKNOWN_DATABASE"):
            reader.reads(SqlSettings()).ad_hoc("SELECT count() FROM datamarket.trades", "CSV")
    finally:
        reader.close()


def test_dmm_sql_runs_on_a_read_only_session_without_the_worker(tmp_path: Path) -> None:
    from dmm.query import query_rows

    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    store.close()
    settings = Settings(clickhouse=ClickHouseSettings(chdb_path=tmp_path / "chdb"), web_port=1)  # no worker there
    assert query_rows(settings, "SELECT count() AS n FROM datamarket.trades") == [{"n": 0}]


def test_the_attacks_of_issue_25_write_nothing_and_read_nothing(store: ChdbStore, tmp_path: Path) -> None:
    """Each ran on the store before (through `/api/sql`); now the guard refuses it before ClickHouse sees it."""
    reads = store.reads(SqlSettings())
    written = tmp_path / "written.txt"
    for attack in (
        f"SELECT 'owned' INTO OUTFILE '{written}'",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT file('/etc/hostname') AS stolen",
        "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
        f"SELECT count() FROM alert_actions SETTINGS readonly = 0; {ACTION}",
        "SELECT name FROM system.tables",
    ):
        with pytest.raises(ReadOnlyViolation):
            reads.ad_hoc(attack, "TSV")
    assert not written.exists()
    assert store.rows("SELECT count() AS n FROM datamarket.alert_actions") == [{"n": 1}]


def test_even_past_the_guard_a_read_connection_writes_nothing(store: ChdbStore) -> None:
    """The monitor's own statements skip the guard; the connection they run on is still read-only."""
    reads = store.reads(SqlSettings())
    for statement in (ACTION, "DROP TABLE datamarket.alerts", "SET readonly = 0", "SELECT 1 SETTINGS readonly = 0"):
        with pytest.raises(StoreError, match="READONLY"):
            reads.rows(statement)
    assert store.rows("SELECT count() AS n FROM datamarket.alert_actions") == [{"n": 1}]


def test_a_runaway_read_is_stopped_by_clickhouse(store: ChdbStore) -> None:
    reads = store.reads(SqlSettings(max_execution_s=1))
    with pytest.raises(StoreError, match="TIMEOUT_EXCEEDED"):
        reads.ad_hoc(SLOW, "TSV")
    small = store.reads(SqlSettings(max_result_rows=10))
    with pytest.raises(StoreError, match="TOO_MANY_ROWS_OR_BYTES"):
        small.ad_hoc("SELECT p FROM alert_actions ARRAY JOIN range(100) AS p", "TSV")


def test_a_slow_read_holds_no_write_and_no_other_read(store: ChdbStore) -> None:
    """The issue measured 29 s of ingestion held by one query (reads and writes shared a lock and a session):
    now a write, and another read, complete while the slow read is still running."""
    reads = store.reads(SqlSettings(max_execution_s=10))
    happened: list[str] = []
    failed: list[BaseException] = []

    def slow() -> None:
        try:
            reads.ad_hoc(SLOW.replace("slept", "slow_read"), "TSV")
        except StoreError as exc:
            failed.append(exc)
        happened.append("slow read ended")

    reader = threading.Thread(target=slow)
    reader.start()
    while not store.rows("SELECT count() AS n FROM system.processes WHERE query LIKE '%AS slow_read%'")[0]["n"]:
        assert reader.is_alive(), failed
    store.command(ACTION.replace("'k'", "'during'"))
    happened.append("written")
    assert reads.rows("SELECT count() AS n FROM datamarket.alert_actions") == [{"n": 2}]
    happened.append("read")
    assert reader.is_alive()
    reader.join()
    assert happened == ["written", "read", "slow read ended"]
