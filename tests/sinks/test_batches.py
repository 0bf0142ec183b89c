"""Batches become Arrow tables shaped exactly like the ClickHouse tables, and land there."""

from __future__ import annotations

from pathlib import Path

import pytest

import sinks
from models import EVENT_ADAPTER, Alert, Dims, Sighting, Trade
from sinks.clickhouse.batches import BatchRows, Duplicate, Rejected, StoredEvent
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration

KINDS = ("listing", "trade", "usage", "heartbeat")


def test_an_alert_round_trips_through_the_alerts_table(tmp_path: Path) -> None:
    alert = Alert.model_validate_json(
        (Path(__file__).parents[1] / "fixtures" / "alert.json").read_text(encoding="utf-8")
    )
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    rows = BatchRows(alerts=[alert])
    store.insert("alerts", rows.tables()["alerts"], "t1")
    store.insert("alerts", rows.tables()["alerts"], "t1")  # a retried insert with the same token lands once
    stored = store.rows(
        "SELECT dedup_key, kind, toString(window_start) AS ws, parties, event_ids FROM datamarket.alerts"
    )
    assert stored == [
        {
            "dedup_key": alert.dedup_key,
            "kind": "self_dealing",
            "ws": "2026-11-21 02:14:02.000",
            "parties": alert.parties,
            "event_ids": alert.event_ids,
        }
    ]


def test_the_market_stage_reads_back_trades_whole_and_other_events_by_identity_and_time(tmp_path: Path) -> None:
    """`StateReader.market_events_in` rebuilds events without validating them again: a trade must equal, field
    for field and in event time, the one validated on arrival and stored; any other event is a `Sighting`: its
    type, identity and event time (all the market-wide rules read of it), and nothing else."""
    examples = Path(__file__).parents[1] / "fixtures"
    events = [EVENT_ADAPTER.validate_json(examples.joinpath(f"{kind}.json").read_bytes()) for kind in KINDS]
    rows = BatchRows()
    for offset, event in enumerate(events):
        rows.add(StoredEvent(event, 0, offset, False, Dims()))
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    for table, batch in rows.tables().items():
        store.insert(table, batch, table)
    found = StateReader(store).market_events_in({0: (0, len(events) - 1)}, 0)
    store.close()
    assert [(partition, offset) for partition, offset, _ in found] == [(0, n) for n in range(len(events))]
    for (_, _, again), event in zip(found, events, strict=True):
        if isinstance(event, Trade):
            assert isinstance(again, Trade) and again.at_ms == event.at_ms
            assert again == event
            assert again.model_dump() == event.model_dump()
        else:
            assert again == Sighting(type(event), event.exchange_id, event.event_id, event.at_ms)


def test_the_restore_reads_back_recent_trades_whole_with_their_lateness(tmp_path: Path) -> None:
    """`StateReader.recent_trades` (wash trading, volume spikes and unlisted products restore from it) rebuilds
    trades as the market stage does: each equals, field for field, the one validated on arrival."""
    examples = Path(__file__).parents[1] / "fixtures"
    trade = EVENT_ADAPTER.validate_json(examples.joinpath("trade.json").read_bytes())
    late = trade.model_copy(update={"event_id": f"{trade.event_id}-late"})
    rows = BatchRows()
    rows.add(StoredEvent(trade, 0, 0, False, Dims()))
    rows.add(StoredEvent(late, 0, 1, True, Dims()))
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    for table, batch in rows.tables().items():
        store.insert(table, batch, table)
    restored = StateReader(store).recent_trades(trade.at_ms)
    assert StateReader(store).recent_trades(trade.at_ms + 1) == []
    store.close()
    assert [(stored.trade.event_id, stored.late) for stored in restored] == [
        (trade.event_id, False),
        (late.event_id, True),
    ]
    assert restored[0].trade == trade and restored[0].trade.model_dump() == trade.model_dump()
    assert restored[0].trade.at_ms == trade.at_ms


def _offset_zero_of(log_id: str) -> BatchRows:
    rejected = Rejected("dm.events", 0, 0, None, b"{", "malformed_json", "cut short", "", "")
    duplicate = Duplicate("dm.events", 0, 1, "SHDEX", "e-1", "trade", 0, 7)
    return BatchRows(rejected=[rejected], duplicates=[duplicate], log_id=log_id)


def test_rejections_and_duplicates_of_a_new_log_keep_those_of_the_old_one_at_the_same_offsets(tmp_path: Path) -> None:
    """A new broker (or a recreated topic) starts its offsets at 0 again. Keyed by offset alone, its rejection
    at offset 0 would replace the old log's in every FINAL read (and in merges): one message unaccounted for.
    A store created before the key named the log gains it, its rows kept (with no log id)."""
    store = ChdbStore(tmp_path / "chdb")
    store.command("CREATE DATABASE datamarket")
    schema = (Path(sinks.__file__).parent / "clickhouse" / "schema.sql").read_text(encoding="utf-8")
    for table, offset in (("rejected_events", 0), ("duplicate_events", 1)):  # as created before: no log named
        created = schema[schema.index(f"CREATE TABLE IF NOT EXISTS datamarket.{table}") :]
        created = created[: created.index(";")]
        old = "\n".join(line for line in created.splitlines() if not line.lstrip().startswith("topic_id"))
        store.command(old.replace("src_offset, topic_id)", "src_offset)"))
        store.command(
            f"INSERT INTO datamarket.{table} (src_topic, src_partition, src_offset) VALUES ('dm.events', 0, {offset})"
        )
    store.apply_schema()
    store.apply_schema()  # on every start: the change applies once
    for log_id in ("log-a", "log-b"):
        for table, batch in _offset_zero_of(log_id).tables().items():
            store.insert(table, batch, f"{table}-{log_id}")
    for table in ("rejected_events", "duplicate_events"):
        kept = store.rows(f"SELECT topic_id FROM datamarket.{table} FINAL ORDER BY topic_id")
        assert [row["topic_id"] for row in kept] == ["", "log-a", "log-b"]
    store.close()
