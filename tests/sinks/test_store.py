"""A batch's tables staged by the embedded store and written in one statement: in order, stamped by ClickHouse,
idempotent when a failed write is retried, and nothing left behind in the spool."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import EVENT_ADAPTER, Dims
from sinks.clickhouse.batches import BatchRows, Marker, StoredEvent
from sinks.clickhouse.memory import MemoryStore
from sinks.clickhouse.store import SPOOL_PREFIX, ChdbStore, Spooled, StoreError, Write, sweep_spool

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures"


def batch() -> BatchRows:
    rows = BatchRows(markers=[Marker("dm.events", "log", 0, 0, 1, 2)])
    for offset, kind in enumerate(("trade", "usage")):
        event = EVENT_ADAPTER.validate_json(FIXTURES.joinpath(f"{kind}.json").read_bytes())
        rows.add(StoredEvent(event, 0, offset, False, Dims()))
    return rows


def writes(rows: BatchRows) -> list[Write]:
    stamped = datetime(2000, 1, 1, tzinfo=UTC)  # as the batch was built; the store stamps the markers again
    return [
        Write(table, table_rows, f"token-{table}", "processed_at" if table == "processed_batches" else None)
        for table, table_rows in rows.tables(stamped).items()
    ]


def counts(store: ChdbStore, tables: tuple[str, ...] = ("trades", "usage", "processed_batches")) -> dict[str, int]:
    return {table: int(store.rows(f"SELECT count() AS n FROM datamarket.{table}")[0]["n"]) for table in tables}


def test_a_staged_batch_is_written_at_once_with_its_markers_stamped_as_stored(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    staged = store.stage(writes(batch()))
    assert isinstance(staged, Spooled) and len(staged.files) == 3
    spooled = list(staged.files)
    before = datetime.now(UTC)
    assert [table for table, _ in staged.write()] == ["batch"]
    staged.close()
    assert not any(Path(name).exists() for name in spooled)
    assert counts(store) == {"trades": 1, "usage": 1, "processed_batches": 1}
    stamp = store.rows("SELECT toUnixTimestamp64Milli(processed_at) AS ms FROM datamarket.processed_batches")[0]
    assert int(stamp["ms"]) >= int(before.timestamp() * 1000) - 1  # the write's moment, not the batch's
    store.close()


def test_the_embedded_store_writes_a_batch_as_packed_parts_also_in_a_store_created_before(tmp_path: Path) -> None:
    """One file per small part (PACKED_PARTS), not ~14: applied on every start, so a store created without it
    gets it too; the rows read back whole after the store is opened again."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    for table in ("trades", "usage", "processed_batches"):  # as a store created before had them
        store.command(f"ALTER TABLE datamarket.{table} RESET SETTING min_bytes_for_full_part_storage")
    store.close()
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    staged = store.stage(writes(batch()))
    staged.write()
    staged.close()
    parts = store.rows(
        "SELECT table, part_storage_type AS storage FROM system.parts WHERE database = 'datamarket' AND active"
    )
    assert sorted(part["table"] for part in parts) == ["processed_batches", "trades", "usage"]
    assert {part["storage"] for part in parts} == {"Packed"}
    store.close()
    store = ChdbStore(tmp_path / "chdb")
    assert counts(store) == {"trades": 1, "usage": 1, "processed_batches": 1}
    assert store.rows("SELECT event_id FROM datamarket.trades FINAL")[0]["event_id"]
    store.close()


def test_a_write_that_failed_part_way_is_retried_whole_and_lands_once(tmp_path: Path) -> None:
    """The first statements ran, a later one failed (its table missing): the retry runs them all again, and
    their deduplication tokens drop what was written the first time."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    store.command("RENAME TABLE datamarket.usage TO datamarket.usage_away")
    staged = store.stage(writes(batch()))
    with pytest.raises(StoreError, match="usage"):
        staged.write()
    assert counts(store, ("trades", "processed_batches")) == {
        "trades": 1,
        "processed_batches": 0,
    }  # written up to the failure
    store.command("RENAME TABLE datamarket.usage_away TO datamarket.usage")
    staged.write()
    staged.close()
    assert counts(store) == {"trades": 1, "usage": 1, "processed_batches": 1}
    store.close()


def test_a_store_written_table_by_table_goes_on_from_the_table_that_failed() -> None:
    """The server and in-memory stores write a staged batch one table at a time; the stamp is set as written."""
    store = MemoryStore()
    staged = store.stage(writes(batch()))
    assert staged.pending == "trades"
    written = staged.write()
    assert [table for table, _ in written] == ["trades", "usage", "processed_batches"]
    assert staged.pending == "" and staged.write() == []
    (markers,) = store.tables["processed_batches"]
    assert markers.column("processed_at")[0].as_py().year > 2000


def test_files_spooled_by_a_process_that_is_gone_are_swept(tmp_path: Path) -> None:
    """A worker killed while a batch was staged leaves its files; the next store opened sweeps them, and only
    them (another live process may be writing its own)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = tmp_path / f"{SPOOL_PREFIX}{gone.pid}-abc.arrow"
    mine = tmp_path / f"{SPOOL_PREFIX}{os.getpid()}-def.arrow"
    other = tmp_path / "someone-else.arrow"
    for path in (left, mine, other):
        path.write_bytes(b"rows")
    assert sweep_spool(tmp_path) == 1
    assert not left.exists() and mine.exists() and other.exists()
