"""Two worker processes share dm.events (four partitions, one consumer group) on the embedded store, served
by `dmm store-serve`: exact totals and the same alerts as one worker on one partition.

Every alert kind is injected, so the market-wide rules (volume_spike, exchange_silent), which need every
partition's events, run in the market stage of the worker that owns partition 0, over what both stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dmm.broker import EmbeddedBroker, free_port
from dmm.evaluation import alert_from_row, score
from dmm.producer import EventProducer
from dmm.query import WorkerUnavailable, _end_offsets, query_rows, worker_status
from dmm.replay import replay_file
from dmm.simulator import write_jsonl
from dmm.stack import EmbeddedStack
from settings import Settings, settings_env
from sinks.clickhouse import queries
from sinks.clickhouse.store import StoreError, open_store
from streams.kafka_client import ensure_topics
from tests.end_to_end.conftest import every_kind_scenario, stack_settings
from tests.end_to_end.market_file import tally
from tests.end_to_end.test_partitions import run as run_one_worker

pytestmark = pytest.mark.slow


def start_store_server(settings: Settings, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings)}
    env.pop("DMM_CLICKHOUSE__URL", None)  # the server opens the embedded store itself
    with (workdir / "store.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "dmm", "store-serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            open_store(settings.clickhouse, read_only=True).close()
            return server
        except StoreError:
            assert server.poll() is None, (workdir / "store.log").read_text()
            time.sleep(0.2)
    raise TimeoutError("dmm store-serve did not answer")


def wait_until_sharing(workers: list[Settings], timeout: float = 120) -> None:
    """Both workers ready, each owning some of the four partitions."""
    deadline = time.monotonic() + timeout
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        try:
            statuses = [worker_status(settings) for settings in workers]
        except (WorkerUnavailable, RuntimeError, ValueError):
            time.sleep(0.5)
            continue
        owned = [{int(p) for p in status.get("partitions") or {}} for status in statuses]
        if (
            all(status.get("ready") for status in statuses)
            and all(owned)
            and sorted(owned[0] | owned[1]) == [0, 1, 2, 3]
            and not owned[0] & owned[1]
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the two workers did not come to share the partitions: {owned}")


def wait_until_both_drained(workers: list[Settings], timeout: float = 600) -> None:
    """Every partition processed to the broker's end by one of the workers, nothing pending, and the market
    stage (in one of them) has observed every partition to its end."""
    ends = _end_offsets(workers[0])
    deadline = time.monotonic() + timeout
    statuses: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            statuses = [worker_status(settings) for settings in workers]
        except (WorkerUnavailable, RuntimeError, ValueError):  # a rebalance in progress
            time.sleep(0.5)
            continue
        processed = {int(p): s["processed"] for status in statuses for p, s in (status.get("partitions") or {}).items()}
        applied = next((status["market_applied"] for status in statuses if status.get("market_stage")), None) or {}
        if (
            all(processed.get(p, -1) >= end - 1 for p, end in ends.items())
            and all(int(applied.get(str(p), applied.get(p, -1))) >= end - 1 for p, end in ends.items() if end > 0)
            and all(status.get("pending_acks") == 0 and status.get("dirty_windows") == 0 for status in statuses)
        ):
            time.sleep(2)  # the poll that applied the last batch also closed windows; its alerts are being stored
            return
        time.sleep(0.5)
    raise TimeoutError(f"the two workers did not drain dm.events: {statuses}")


def run_two_workers(events: Path, workdir: Path) -> dict[str, object]:
    workdir.mkdir(parents=True)
    store_port = free_port()
    base = stack_settings(workdir)
    shared = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"events_partitions": 4}),
            "clickhouse": base.clickhouse.model_copy(update={"url": f"http://127.0.0.1:{store_port}"}),
        }
    )
    host, _, port = shared.kafka.bootstrap.rpartition(":")
    with EmbeddedBroker(host=host, port=int(port), log_dir=workdir):
        ensure_topics(shared.kafka)
        server = start_store_server(shared, store_port, workdir)
        try:
            workers = [
                shared.model_copy(
                    update={
                        "web_port": free_port(),
                        "clickhouse": shared.clickhouse.model_copy(update={"chdb_path": workdir / f"w{n}" / "chdb"}),
                    }
                )
                for n in (1, 2)
            ]
            stacks = [
                EmbeddedStack(settings, workdir / f"w{n}", start_broker=False) for n, settings in enumerate(workers)
            ]
            for stack in stacks:
                stack.workdir.mkdir(parents=True)
                stack.start_worker(wait=False)
            try:
                wait_until_sharing(workers)
                # Produced once both share the partitions, so that both process it (a backfill loaded first
                # would be done by the first worker up before the second joined).
                with EventProducer(shared.kafka) as producer:
                    replay_file(events, producer)
                wait_until_both_drained(workers)
                statuses = [worker_status(settings) for settings in workers]
                alerts = [
                    alert_from_row(r) for r in query_rows(shared, queries.alerts_in_detection_order("datamarket"))
                ]
                amounts = query_rows(
                    shared,
                    "SELECT toString(exchange_id) AS exchange_id, toString(sum(amount)) AS amount "
                    "FROM datamarket.trades FINAL GROUP BY exchange_id",
                )
                counts = query_rows(
                    shared,
                    "SELECT (SELECT count() FROM datamarket.listings FINAL) + (SELECT count() FROM datamarket.trades "
                    "FINAL) + (SELECT count() FROM datamarket.usage FINAL) + (SELECT count() FROM datamarket.heartbeats "
                    "FINAL) AS n, (SELECT count() FROM datamarket.duplicate_events) AS d, "
                    "(SELECT count() FROM datamarket.rejected_events) AS r",
                )[0]
            finally:
                for stack in stacks:
                    stack.stop_worker()
        finally:
            server.terminate()
            server.wait(30)
    return {
        "owned": [sorted(int(p) for p in status["partitions"]) for status in statuses],
        "market_stage": [status["market_stage"] for status in statuses],
        "alerts": alerts,
        "amounts": {row["exchange_id"]: Decimal(row["amount"]) for row in amounts},
        "counts": {key: int(value) for key, value in counts.items()},
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
