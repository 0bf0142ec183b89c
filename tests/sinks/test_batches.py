"""Batches become Arrow tables shaped exactly like the ClickHouse tables, and land there."""

from __future__ import annotations

from pathlib import Path

from models import Alert
from sinks.clickhouse.batches import BatchRows
from sinks.clickhouse.store import ChdbStore


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
