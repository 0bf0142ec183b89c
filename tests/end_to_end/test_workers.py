"""Two worker processes share dm.events (four partitions, one consumer group) on the embedded store, served
by `dmm store-serve`: exact totals and the same alerts as one worker on one partition.

Every alert kind is injected, so the market-wide rules (volume_spike, exchange_silent), which need every
partition's events, run in the market stage of the worker that owns partition 0, over what both stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmm.broker import EmbeddedBroker
from dmm.evaluation import score
from dmm.producer import EventProducer
from dmm.query import wait_until_drained, worker_status
from dmm.replay import replay_file
from dmm.simulator import write_jsonl
from dmm.stack import WorkerGroup
from streams.kafka_client import ensure_topics
from tests.support.market_file import tally
from tests.support.stack import every_kind_scenario, run_one_worker, stack_settings, stored_outcome

pytestmark = pytest.mark.slow


def run_two_workers(events: Path, workdir: Path) -> dict[str, object]:
    base = stack_settings(workdir)
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"events_partitions": 4})})
    host, _, port = settings.kafka.bootstrap.rpartition(":")
    with EmbeddedBroker(host=host, port=int(port), log_dir=workdir):
        ensure_topics(settings.kafka)
        group = WorkerGroup(settings, workdir, workers=2)
        try:
            shared = group.start()
            # Produced once both share the partitions, so that both process it (a backfill loaded first would
            # be done by the first worker up before the second joined).
            with EventProducer(shared.kafka) as producer:
                replay_file(events, producer)
            wait_until_drained(shared, timeout=600, settle=2.0, workers=group.worker_settings)
            statuses = [worker_status(each) for each in group.worker_settings]
            stored = stored_outcome(shared)
        finally:
            group.stop()
    return {
        "owned": [sorted(int(p) for p in status["partitions"]) for status in statuses],
        "market_stage": [status["market_stage"] for status in statuses],
        **stored,
    }


def test_two_workers_on_four_partitions_store_and_alert_exactly_as_one(tmp_path: Path) -> None:
    simulation = every_kind_scenario()
    events = tmp_path / "events.jsonl"
    write_jsonl(simulation, events)
    expected = tally(events.read_bytes().splitlines(), [])

    one = run_one_worker(events, tmp_path / "one", partitions=1)
    two = run_two_workers(events, tmp_path / "two")

    assert sorted(p for owned in two["owned"] for p in owned) == [0, 1, 2, 3]  # type: ignore[union-attr]
    assert all(two["owned"]), "both workers own partitions"  # type: ignore[arg-type]
    assert sorted(two["market_stage"]) == [False, True]  # type: ignore[type-var]
    for result in (one, two):
        assert result["counts"] == {"n": expected.accepted, "d": 0, "r": 0}
        assert result["amounts"] == dict(expected.amount_by_exchange)
        report = score(simulation.incidents, result["alerts"])  # type: ignore[arg-type]
        assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    assert sorted(a.dedup_key for a in two["alerts"]) == sorted(a.dedup_key for a in one["alerts"])  # type: ignore[union-attr]
