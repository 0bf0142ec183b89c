from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore
from streams.alerts import AlertLedger, alert_id, split_occurrence
from streams.detectors.base import Finding
from tests.support.detector_market import open_store, store_alerts

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def finding(key: str = "self_dealing:SHDEX:E1", event_ids: list[str] | None = None) -> Finding:
    return Finding(
        kind="self_dealing",
        dedup_key=key,
        exchange_id="SHDEX",
        product_id="P1",
        parties=["A"],
        event_ids=event_ids if event_ids is not None else ["E1"],
        score=1.0,
        window_start_ms=1_795_226_400_000,
        window_end_ms=1_795_226_460_000,
        message="Participant A is both buyer and seller.",
        message_zh="买方与卖方为同一主体 A。",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    opened = open_store(tmp_path / "chdb")
    yield opened
    opened.close()


def record(store: ChdbStore, dedup_key: str, action: str, at: datetime) -> None:
    stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    store.command(
        f"INSERT INTO datamarket.alert_actions VALUES ('{dedup_key}', '{action}', 'analyst', '', '{stamp}')"
    )


def test_a_finding_becomes_a_contract_alert() -> None:
    alert = AlertLedger().admit(finding(), now=NOW)
    assert alert is not None
    assert alert.alert_id == alert_id("self_dealing:SHDEX:E1") and alert.alert_id.startswith("a-")
    assert len(alert.alert_id) == 14
    assert alert.severity == "critical" and alert.dedup_key == "self_dealing:SHDEX:E1"
    assert alert.window_start == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    assert alert.window_end == datetime(2026, 11, 21, 2, 1, tzinfo=UTC)
    assert alert.detected_at == NOW
    assert b'"window_start":"2026-11-21T02:00:00.000Z"' in alert.to_json()


def test_one_alert_per_dedup_key() -> None:
    ledger = AlertLedger()
    assert ledger.admit(finding(), now=NOW) is not None
    assert ledger.admit(finding(event_ids=["E1", "E2"]), now=NOW) is None
    assert ledger.admit(finding("self_dealing:SHDEX:E2", ["E2"]), now=NOW) is not None


def test_acked_incidents_stay_one_alert_resolved_ones_recur_with_new_evidence() -> None:
    ledger = AlertLedger()
    first = ledger.admit(finding(event_ids=["E1"]), now=NOW)
    assert first is not None
    ledger.resolved(first.dedup_key)
    assert ledger.admit(finding(event_ids=["E1"]), now=NOW) is None  # the same evidence again (a replay)
    second = ledger.admit(finding(event_ids=["E1", "E9"]), now=NOW)
    assert second is not None and second.dedup_key == "self_dealing:SHDEX:E1#2"
    assert second.alert_id != first.alert_id
    assert ledger.admit(finding(event_ids=["E10"]), now=NOW) is None  # #2 is open
    ledger.resolved("self_dealing:SHDEX:E1")  # resolving the old occurrence again changes nothing
    assert ledger.admit(finding(event_ids=["E10"]), now=NOW) is None
    ledger.resolved(second.dedup_key)
    third = ledger.admit(finding(event_ids=["E11"]), now=NOW)
    assert third is not None and third.dedup_key == "self_dealing:SHDEX:E1#3"


def test_split_occurrence() -> None:
    assert split_occurrence("k") == ("k", 1)
    assert split_occurrence("k#2") == ("k", 2)
    assert split_occurrence("k#12") == ("k", 12)
    assert split_occurrence("k#1") == ("k#1", 1)
    assert split_occurrence("k#x") == ("k#x", 1)


def test_memory_is_bounded_by_the_horizon() -> None:
    ledger = AlertLedger(horizon_s=3600)
    for n in range(100):
        ledger.admit(finding(f"k{n}", [f"E{n}"]), now=NOW)
    assert len(ledger) == 100
    ledger.admit(finding("recent", ["R"]), now=NOW + timedelta(hours=2))
    assert len(ledger) == 1


@pytest.mark.integration
def test_restore_from_clickhouse_knows_alerted_and_resolved_incidents(store: ChdbStore) -> None:
    live = AlertLedger()
    one = live.admit(finding("k1", ["E1"]), now=NOW)
    two = live.admit(finding("k2", ["E2"]), now=NOW)
    assert one is not None and two is not None
    store_alerts(store, [one, two])
    record(store, "k2", "ack", NOW)
    record(store, "k1", "resolve", NOW)

    ledger = AlertLedger()
    ledger.restore(StateReader(store), now=NOW + timedelta(minutes=5))
    assert len(ledger) == 2
    assert ledger.admit(finding("k2", ["E2", "E3"]), now=NOW) is None  # acked: still the same incident
    assert ledger.admit(finding("k1", ["E1"]), now=NOW) is None  # resolved, nothing new
    recurred = ledger.admit(finding("k1", ["E1", "E4"]), now=NOW)
    assert recurred is not None and recurred.dedup_key == "k1#2"

    store_alerts(store, [recurred])
    again = AlertLedger()
    again.restore(StateReader(store), now=NOW + timedelta(minutes=5))
    assert again.admit(finding("k1", ["E5"]), now=NOW) is None  # k1#2 is the latest, and open
    record(store, "k1#2", "resolve", NOW + timedelta(minutes=6))
    again.sync(StateReader(store))
    third = again.admit(finding("k1", ["E5"]), now=NOW)
    assert third is not None and third.dedup_key == "k1#3"


@pytest.mark.integration
def test_restore_forgets_alerts_beyond_the_horizon(store: ChdbStore) -> None:
    old = AlertLedger().admit(finding("old", ["E1"]), now=NOW - timedelta(days=8))
    assert old is not None
    store_alerts(store, [old])
    ledger = AlertLedger()
    ledger.restore(StateReader(store), now=NOW)
    assert len(ledger) == 0


# -- `dmm alerts`: the lifecycle as operators see it ---------------------------------------


@pytest.mark.integration
def test_list_sql_derives_status_and_filters(store: ChdbStore) -> None:
    from dmm.cli.alerts import as_record
    from sinks.clickhouse.queries import alert_list as list_sql

    ledger = AlertLedger()
    alerts = [ledger.admit(finding(f"k{n}", [f"E{n}"]), now=NOW + timedelta(minutes=n)) for n in range(3)]
    store_alerts(store, [a for a in alerts if a is not None])
    record(store, "k1", "ack", NOW + timedelta(hours=1))
    record(store, "k2", "ack", NOW + timedelta(hours=1))
    record(store, "k2", "resolve", NOW + timedelta(hours=2))

    rows = [as_record(row) for row in store.rows(*list_sql("datamarket"))]
    assert [(r["dedup_key"], r["status"]) for r in rows] == [("k2", "resolved"), ("k1", "acked"), ("k0", "open")]
    assert rows[0]["actor"] == "analyst" and rows[0]["action_at"] == "2026-11-21T04:00:00.000Z"
    assert rows[2]["actor"] is None and rows[2]["detected_at"] == "2026-11-21T02:00:00.000Z"
    assert rows[2]["window_start"] == "2026-11-21T02:00:00.000Z" and rows[2]["severity"] == "critical"

    def keys(**filters: object) -> list[str]:
        return [row["dedup_key"] for row in store.rows(*list_sql("datamarket", **filters))]  # type: ignore[arg-type]

    assert keys(status="open") == ["k0"]
    assert keys(status="resolved") == ["k2"]
    assert keys(kind="self_dealing", severity="critical", exchange="SHDEX", limit=2) == ["k2", "k1"]
    assert keys(kind="volume_spike") == []
    assert keys(since=NOW + timedelta(minutes=1)) == ["k2", "k1"]
    assert keys(exchange="x' OR 1=1 --") == []  # values are quoted, never spliced


def test_parse_since() -> None:
    from dmm.cli.alerts import parse_since

    assert parse_since("24h", now=NOW) == NOW - timedelta(hours=24)
    assert parse_since("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2026-11-21T10:00:00+08:00") == NOW
    assert parse_since("2026-11-21T02:00:00") == NOW
    with pytest.raises(ValueError):
        parse_since("yesterday")


@pytest.mark.integration
def test_cli_lists_acks_and_resolves_against_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dmm.broker import free_port
    from dmm.cli import app
    from settings import get_settings

    path = tmp_path / "cli-chdb"
    opened = open_store(path)
    alert = AlertLedger().admit(finding("self_dealing:SHDEX:E1"), now=NOW)
    assert alert is not None
    store_alerts(opened, [alert])
    opened.close()
    monkeypatch.setenv("DMM_CLICKHOUSE__CHDB_PATH", str(path))
    monkeypatch.setenv("DMM_WEB_PORT", str(free_port()))  # no worker there: the CLI opens the store itself
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["alerts", "list", "--format", "json"])
        assert listed.exit_code == 0, listed.output
        assert '"status": "open"' in listed.output and '"dedup_key": "self_dealing:SHDEX:E1"' in listed.output
        missing = runner.invoke(app, ["alerts", "ack", "nope", "--by", "li.wei"])
        assert missing.exit_code == 1 and "no alert" in missing.output
        acked = runner.invoke(
            app, ["alerts", "ack", "self_dealing:SHDEX:E1", "--by", "li.wei", "--note", "calling SHDEX"]
        )
        assert acked.exit_code == 0, acked.output
        resolved = runner.invoke(app, ["alerts", "resolve", "self_dealing:SHDEX:E1", "--by", "wang.fang"])
        assert resolved.exit_code == 0, resolved.output
        table = runner.invoke(app, ["alerts", "list", "--status", "resolved"], env={"COLUMNS": "250"})
        assert table.exit_code == 0, table.output
        assert "resolved" in table.output and "wang.fang" in table.output
        assert "self_dealing:SHDEX:E1" in table.output
        bad = runner.invoke(app, ["alerts", "list", "--status", "closed"])
        assert bad.exit_code != 0
    finally:
        get_settings.cache_clear()
