"""Rows stored since a moment and late rows, read from the parts that hold them: every such row found (in a part
listed, one written or merged after the listing), no other part read; on a real embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinks.clickhouse.part_facts import late_rows, stored_since
from sinks.clickhouse.store import ChdbStore
from tests.sinks.test_console_queries import insert

pytestmark = pytest.mark.integration

HEARTBEAT = "exchange_id, event_id, occurred_at, seq, late, ingested_at"
NOW = datetime.now(UTC)
MOMENT_MS = int((NOW - timedelta(minutes=10)).timestamp() * 1000)


def at(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    opened = ChdbStore(tmp_path / "chdb")
    opened.apply_schema()
    yield opened
    opened.close()


def found(store: ChdbStore, condition: str) -> tuple[list[str], int]:
    """The heartbeats meeting the condition, and how many parts a read of them looks at (its indexes' first
    stage: a part pruned by name before it is not looked at)."""
    sql = f"SELECT event_id FROM datamarket.heartbeats WHERE {condition} ORDER BY event_id"
    plan = [row["explain"].strip() for row in store.rows(f"EXPLAIN indexes = 1 {sql}")]
    looked_at = next(int(line.split("/")[1]) for line in plan if line.startswith("Parts:") and "/" in line)
    return [row["event_id"] for row in store.rows(sql)], looked_at


def test_only_the_parts_holding_rows_stored_since_are_read(store: ChdbStore) -> None:
    insert(store, "heartbeats", HEARTBEAT, ("SHDEX", "H1", at(60), 1, 0, at(60)))  # a part of older rows
    insert(store, "heartbeats", HEARTBEAT, ("SZDEX", "H2", at(60), 1, 0, at(60)), ("BJDEX", "H3", at(1), 1, 0, at(1)))
    condition = stored_since(store, ("heartbeats",), MOMENT_MS)["heartbeats"]
    assert found(store, condition) == (["H3"], 1)  # the first part is not even looked at
    assert found(store, f"ingested_at >= fromUnixTimestamp64Milli(toInt64({MOMENT_MS}), 'UTC')") == (["H3"], 2)
    assert found(store, stored_since(store, ("heartbeats",), MOMENT_MS)["heartbeats"]) == (["H3"], 1)  # kept


def test_a_part_written_or_merged_after_the_listing_is_read(store: ChdbStore) -> None:
    insert(store, "heartbeats", HEARTBEAT, ("SHDEX", "H1", at(60), 1, 0, at(60)))
    insert(store, "heartbeats", HEARTBEAT, ("SZDEX", "H2", at(1), 1, 0, at(1)))
    condition = stored_since(store, ("heartbeats",), MOMENT_MS)["heartbeats"]
    insert(store, "heartbeats", HEARTBEAT, ("BJDEX", "H3", at(1), 1, 0, at(1)))  # after the parts were listed
    assert found(store, condition)[0] == ["H2", "H3"]
    store.command("OPTIMIZE TABLE datamarket.heartbeats FINAL")  # every listed part merged away
    assert found(store, condition)[0] == ["H2", "H3"]
    assert found(store, stored_since(store, ("heartbeats",), MOMENT_MS)["heartbeats"])[0] == ["H2", "H3"]


def test_only_the_parts_holding_late_rows_are_read_for_them(store: ChdbStore) -> None:
    insert(store, "heartbeats", HEARTBEAT, ("SHDEX", "H1", at(60), 1, 0, at(60)))  # on time
    insert(store, "heartbeats", HEARTBEAT, ("SZDEX", "H2", at(60), 1, 1, at(1)), ("BJDEX", "H3", at(1), 1, 0, at(1)))
    condition = late_rows(store, ("heartbeats",))["heartbeats"]
    assert found(store, condition) == (["H2"], 1)
    assert found(store, "late = 1") == (["H2"], 2)  # the index alone looks at every part
    insert(store, "heartbeats", HEARTBEAT, ("GZDEX", "H4", at(90), 1, 1, at(1)))  # a late row after the listing
    assert found(store, condition)[0] == ["H2", "H4"]
