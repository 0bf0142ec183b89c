"""dm.events on four partitions: exact totals and the same alerts as on one.

The same seeded scenario (every alert kind injected) is replayed through a fresh stack with
one partition and with four. Four partitions are consumed at different speeds within each
fetch, so this is where a market watermark taken from the fastest partition would make
on-time events late and exchanges silent (see `streams.watermark`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dmm.evaluation import alert_from_row, score
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_status
from dmm.replay import replay_file
from dmm.simulator import write_jsonl
from dmm.stack import EmbeddedStack
from settings import Settings
from sinks.clickhouse import queries
from tests.end_to_end.conftest import every_kind_scenario, stack_settings
from tests.end_to_end.market_file import tally

pytestmark = pytest.mark.slow


def run(events: Path, workdir: Path, partitions: int) -> dict[str, object]:
    base = stack_settings(workdir)
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"events_partitions": partitions})})
    with EmbeddedStack(settings, workdir) as stack:
        # The file is loaded first, as a backfill: a partition counts as caught up once the worker has read
        # what the broker had at its last fetch, and a file produced while it reads would race that.
        stack.stop_worker()
        with EventProducer(settings.kafka) as producer:
            replay_file(events, producer)
        stack.start_worker()
        wait_until_drained(settings, timeout=600)
        status = worker_status(settings)
        stored = stored_outcome(settings)
        stack.stop_worker()
    return {"partitions": status["partitions"], **stored}


def stored_outcome(settings: Settings) -> dict[str, object]:
    """Alerts in detection order, traded amount per exchange and row counts, as stored."""
    alerts = [alert_from_row(r) for r in query_rows(settings, queries.alerts_in_detection_order("datamarket"))]
    amounts = query_rows(
        settings,
        "SELECT toString(exchange_id) AS exchange_id, toString(sum(amount)) AS amount "
        "FROM datamarket.trades FINAL GROUP BY exchange_id",
    )
    counts = query_rows(
        settings,
        "SELECT (SELECT count() FROM datamarket.listings FINAL) + (SELECT count() FROM datamarket.trades FINAL) "
        "+ (SELECT count() FROM datamarket.usage FINAL) + (SELECT count() FROM datamarket.heartbeats FINAL) AS n, "
        "(SELECT count() FROM datamarket.duplicate_events) AS d, "
        "(SELECT count() FROM datamarket.rejected_events) AS r",
    )[0]
    return {
        "alerts": alerts,
        "amounts": {row["exchange_id"]: Decimal(row["amount"]) for row in amounts},
        "counts": {key: int(value) for key, value in counts.items()},
    }


def test_four_partitions_store_and_alert_exactly_as_one(tmp_path: Path) -> None:
    simulation = every_kind_scenario()
    events = tmp_path / "events.jsonl"
    write_jsonl(simulation, events)
    expected = tally(events.read_bytes().splitlines(), [])

    one = run(events, tmp_path / "one", partitions=1)
    four = run(events, tmp_path / "four", partitions=4)

    assert len(four["partitions"]) == 4
    assert all(p["processed"] >= 0 for p in four["partitions"].values()), "every partition carried events"
    for result in (one, four):
        assert result["counts"] == {"n": expected.accepted, "d": 0, "r": 0}
        assert result["amounts"] == dict(expected.amount_by_exchange)
        report = score(simulation.incidents, result["alerts"])
        assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    assert sorted(a.dedup_key for a in four["alerts"]) == sorted(a.dedup_key for a in one["alerts"])
