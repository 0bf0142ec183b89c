"""Batches become Arrow tables shaped exactly like the ClickHouse tables, and land there."""

from __future__ import annotations

from pathlib import Path

from models import EVENT_ADAPTER, Alert, Sighting, Trade
from sinks.clickhouse.batches import BatchRows, Dims, StoredEvent
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore

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
