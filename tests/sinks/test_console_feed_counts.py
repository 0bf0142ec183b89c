"""The feeds' counts of listings and heartbeats, a month (a partition) at a time, each month kept by the version of
its rows: read again when they change (a late heartbeat, a merge), never taken from another store; on real embedded
stores (each opened in turn: one per process at a time)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from settings import SqlSettings
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.store import ChdbStore, Parameters
from tests.sinks.test_console_queries import insert

pytestmark = pytest.mark.integration

HEARTBEAT = "exchange_id, event_id, occurred_at, seq, late, ingested_at"
NOW = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # stored now: the table keeps 90 days from it
OCTOBER = ("SHDEX", "H1", "2026-10-03 08:00:00", 1, 0, NOW), ("SHDEX", "H2", "2026-10-03 08:00:10", 2, 0, NOW)
NOVEMBER = ("SHDEX", "H3", "2026-11-20 08:00:00", 3, 0, NOW), ("SZDEX", "H4", "2026-11-20 08:00:00", 1, 0, NOW)


class Recorded:
    """A store's reads (the console's), keeping the statements they run."""

    def __init__(self, store: ChdbStore) -> None:
        self.database = store.database
        self.reads = store.reads(SqlSettings())
        self.statements: list[str] = []

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        self.statements.append(sql)
        return self.reads.rows(sql, parameters)


def heartbeats_counted(reader: Recorded) -> tuple[dict[str, tuple[int, int]], str]:
    """The feeds' heartbeats per exchange (events, late), and the statement that counted events."""
    reader.statements.clear()
    rows = q.feed_events(reader, q.snapshot(reader, allowed_lateness_s=300))
    [counting] = [sql for sql in reader.statements if "events_n" in sql]
    return {r["exchange_id"]: (r["events"], r["late"]) for r in rows if r["type"] == "heartbeats"}, counting


def heartbeats_stored(store: ChdbStore) -> dict[str, tuple[int, int]]:
    rows = store.rows(
        "SELECT toString(exchange_id) AS code, count() AS n, sum(late) AS late FROM datamarket.heartbeats FINAL "
        "GROUP BY code"
    )
    return {r["code"]: (int(r["n"]), int(r["late"])) for r in rows}


def test_a_month_is_counted_again_only_when_its_rows_change(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.apply_schema()
        insert(store, "heartbeats", HEARTBEAT, *OCTOBER, *NOVEMBER)
        reader = Recorded(store)
        counted, counting = heartbeats_counted(reader)
        assert counted == heartbeats_stored(store) == {"SHDEX": (3, 0), "SZDEX": (1, 0)}
        assert "'202610'" in counting and "'202611'" in counting
        counted, counting = heartbeats_counted(reader)  # nothing stored since: both months kept
        assert counted == {"SHDEX": (3, 0), "SZDEX": (1, 0)} and "_partition_id" not in counting
        insert(store, "heartbeats", HEARTBEAT, ("SHDEX", "H5", "2026-10-04 08:00:00", 4, 1, NOW))  # late, in October
        counted, counting = heartbeats_counted(reader)
        assert counted == heartbeats_stored(store) == {"SHDEX": (4, 1), "SZDEX": (1, 0)}
        assert "'202610'" in counting and "'202611'" not in counting
        insert(store, "heartbeats", HEARTBEAT, OCTOBER[0])  # a row stored again: FINAL counts it once
        store.command("OPTIMIZE TABLE datamarket.heartbeats FINAL")  # new parts, the same rows
        counted, counting = heartbeats_counted(reader)
        assert counted == heartbeats_stored(store) == {"SHDEX": (4, 1), "SZDEX": (1, 0)}
        assert "'202610'" in counting and "'202611'" in counting
    finally:
        store.close()


def test_a_month_kept_from_one_store_is_not_taken_for_another(tmp_path: Path) -> None:
    """The second store's months have the same partitions and parts' names as the first's, other rows."""
    for name, rows, expected in (
        ("a", (*OCTOBER, *NOVEMBER), {"SHDEX": (3, 0), "SZDEX": (1, 0)}),
        ("b", (OCTOBER[0], NOVEMBER[1]), {"SHDEX": (1, 0), "SZDEX": (1, 0)}),
    ):
        store = ChdbStore(tmp_path / name)
        try:
            store.apply_schema()
            insert(store, "heartbeats", HEARTBEAT, *rows)
            assert heartbeats_counted(Recorded(store))[0] == heartbeats_stored(store) == expected
        finally:
            store.close()


class NoSystemTables(Recorded):
    """Reads as a user not shown `system.parts` would (a server may so restrict its system tables)."""

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        return [] if "system.parts" in sql else super().rows(sql, parameters)


def test_a_store_that_shows_no_parts_has_every_row_counted(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.apply_schema()
        insert(store, "heartbeats", HEARTBEAT, *OCTOBER, *NOVEMBER)
        for _ in range(2):
            assert heartbeats_counted(NoSystemTables(store))[0] == {"SHDEX": (3, 0), "SZDEX": (1, 0)}
    finally:
        store.close()
