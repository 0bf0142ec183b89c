"""Benchmark: simulated events through broker -> worker -> store, against a bare consumer.

Three measurements in one run, on one machine:
1. baseline: a bare aiokafka consumer that only decodes and validates the preloaded
   messages (the ceiling any Kafka consumer in Python reaches here);
2. throughput: the same preloaded messages through the real `dmm worker` process,
   from start of consumption until every row is stored and windows are flushed;
3. latency: live traffic at a fraction of that throughput, occurred_at = send time;
   event lag = ingested_at - occurred_at, exact percentiles from ClickHouse.
Peak RSS is the worker's high-water mark (VmHWM) from /proc.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.simulator import MarketSimulator, SimulationConfig, publish_live
from dmm.stack import EmbeddedStack
from models import EVENT_ADAPTER
from settings import Settings
from sinks.clickhouse import queries


@dataclass
class BenchResult:
    events: int
    baseline_events_per_s: float
    worker_events_per_s: float
    worker_seconds: float
    live_events: int
    live_rate: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    worker_peak_rss_mb: float
    baseline_peak_rss_mb: float


def preload(settings: Settings, events: int, seed: int) -> int:
    """Publish `events` simulated messages (event time two days ago) without a worker running."""
    rate = 200.0
    start = datetime.now(UTC) - timedelta(days=2)
    # Heartbeats and usage come on top of `rate`; twice the duration is always enough, we stop at `events`.
    simulation = MarketSimulator(SimulationConfig(seed=seed, start=start, duration_s=2 * events / rate, rate=rate))
    sent = 0
    with EventProducer(settings.kafka) as producer:
        for key, value in simulation.messages():
            producer.publish_raw(value, key)
            sent += 1
            if sent >= events:
                break
        producer.flush()
    return sent


async def _bare_consume(settings: Settings, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.kafka.events_topic,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen = 0
    started: float | None = None
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                if started is None:
                    started = time.perf_counter()
                for record in records:
                    EVENT_ADAPTER.validate_json(record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


def _peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(
    settings: Settings, workdir: Path, events: int, seed: int = 5, live_fraction: float = 0.25,
    live_seconds: float = 20.0, say: Callable[[str], None] = print,
) -> BenchResult:
    with EmbeddedStack(settings, workdir) as stack:
        stack.stop_worker()
        say(f"preloading {events} simulated events into {settings.kafka.events_topic} …")
        sent = preload(settings, events, seed)
        say("baseline: bare aiokafka consumer, decode + validate only …")
        baseline = asyncio.run(_bare_consume(settings, sent))
        say("throughput: the real worker on the preloaded topic …")
        started = time.perf_counter()
        stack.start_worker()
        wait_until_drained(settings, timeout=3600, settle=0.5)
        worker_seconds = time.perf_counter() - started
        first_last = query_rows(settings, queries.ingest_span(settings.clickhouse.database))[0]
        busy_s = max((int(first_last["b"]) - int(first_last["a"])) / 1000, 1e-3)
        worker_rate = sent / busy_s
        live_rate = max(1.0, worker_rate * live_fraction)
        say(f"latency: live traffic at {live_rate:.0f} events/s for {live_seconds:.0f} s …")
        live_start = datetime.now(UTC)
        simulation = MarketSimulator(
            SimulationConfig(seed=seed + 1, start=live_start, duration_s=live_seconds, rate=live_rate * 0.9)
        )
        with EventProducer(settings.kafka, linger_ms=1) as producer:
            live = publish_live(simulation, lambda k, v: producer.publish_raw(v, k), time_scale=1.0)
            producer.flush()
        wait_until_drained(settings, timeout=600, settle=0.5)
        lag = query_rows(settings, queries.ingest_lag(settings.clickhouse.database, live_start))[0]
        peak = _peak_rss_mb(stack.worker.pid) if stack.worker else 0.0
    return BenchResult(
        events=sent,
        baseline_events_per_s=baseline,
        worker_events_per_s=worker_rate,
        worker_seconds=worker_seconds,
        live_events=live,
        live_rate=live_rate,
        lag_p50_ms=float(lag["p50"]),
        lag_p99_ms=float(lag["p99"]),
        lag_max_ms=float(lag["mx"]),
        worker_peak_rss_mb=peak,
        baseline_peak_rss_mb=_peak_rss_mb(),
    )
