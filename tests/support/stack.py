"""The embedded stack (Tansu broker + `dmm worker` process + chdb store) the end-to-end and fault-injection tests
run: its settings, the scenario they share, and a file replayed through it with what it stored."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from dmm.broker import free_port
from dmm.evaluation import alert_from_row
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_status
from dmm.replay import replay_file
from dmm.simulator import KINDS, MarketSimulator, SimulationConfig
from dmm.stack import EmbeddedStack
from settings import ClickHouseSettings, KafkaSettings, Settings
from sinks.clickhouse import queries


def every_kind_scenario() -> MarketSimulator:
    """The seeded scenario the end-to-end tests share: 50 minutes, every alert kind injected twice."""
    return MarketSimulator(
        SimulationConfig(
            seed=21,
            start=datetime.fromisoformat("2026-11-21T08:00:00+08:00"),
            duration_s=3000,
            rate=2.0,
            injections={kind: 2 for kind in KINDS},
        )
    )


def stack_settings(workdir: Path) -> Settings:
    """An embedded stack in `workdir`: its own broker and web ports, its store there, JSON logs."""
    return Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
        clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"),
        web_port=free_port(),
        log_json=True,
    )


def settings_for(workdir: Path, **overrides: Any) -> Settings:
    """Like `stack_settings`, the store giving up a failed insert after 2 s, and the given top-level fields replaced."""
    settings = stack_settings(workdir)
    clickhouse = settings.clickhouse.model_copy(update={"insert_retry_max_s": 2.0})
    return settings.model_copy(update={"clickhouse": clickhouse, **overrides})


def run_one_worker(events: Path, workdir: Path, partitions: int) -> dict[str, object]:
    """Replay `events` through a fresh stack with one worker on `partitions` partitions: its partitions and what
    it stored."""
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
