"""Benchmark: simulated events through broker -> worker -> store, against a bare consumer, in one run.

1. *baseline*: a bare aiokafka consumer that only decodes and validates the preloaded
   messages (the ceiling any Kafka consumer in Python reaches here);
2. *throughput*: the same preloaded messages through the real `dmm worker` process,
   from its first stored row to its last (rows stored, windows flushed, offsets
   committed), with the worker's own per-stage time (`dmm_stage_seconds_total`);
3. *latency*: live traffic at `live_rate` (or a fraction of the measured throughput),
   each event's occurred_at = its due send time; lag = when its batch was stored (the batch's
   progress marker, written after its rows) - occurred_at, exact percentiles from ClickHouse.
Peak RSS is the worker's high-water mark (VmHWM) from /proc.
With `signed`, then 4. *signed throughput*: phase 2 again on a fresh stack whose worker holds producer keys
(contract, Amendment 1), every preloaded message signed by its exchange's key, to read the cost of signing:
the verification, and records ~90 bytes longer (their headers), so that a fetch capped in bytes carries fewer.

`run_queries` times the regulator's questions over a long synthetic history instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from dmm.broker import free_port
from dmm.load_publisher import publish_paced
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_metrics
from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.wire import Message as SimulatedMessage
from dmm.simulator.wire import rfc3339
from dmm.stack import EmbeddedStack, WorkerGroup
from models import EVENT_ADAPTER, exchanges, sectors
from models.clock import to_ms
from models.keys import KeyRing, load_keys
from settings import ClickHouseSettings, IngestSettings, Settings, get_settings
from sinks.clickhouse import queries
from sinks.clickhouse.console_queries import Reader
from sinks.clickhouse.first_seen import record_first_seen
from sinks.clickhouse.synthetic import (
    HEARTBEAT_DAYS,
    build_rollups,
    insert_heartbeats,
    insert_listings,
    insert_trades,
    insert_usage,
)
from sinks.prometheus import STAGES

Say = Callable[[str], None]
MAX_DEFAULT_LIVE_RATE = 10_000.0  # events/s of the live phase unless --live-rate asks for more


@dataclass
class BenchResult:
    events: int
    partitions: int
    workers: int
    baseline_events_per_s: float
    worker_events_per_s: float
    worker_seconds: float
    # From launching the worker(s) to the first records taken with state restored: not in the rate above.
    worker_startup_s: float
    stages_us_per_event: dict[str, float]  # worker time per stage, microseconds per preloaded event
    store_write_us_per_event: float  # the store's writes in their thread, overlapping the next batch's stages
    # The workers' CPU time (every thread, ClickHouse's in-process ones included) from their first records taken to
    # drained, per event: steadier than the rate where other tenants take the machine's cores in turns.
    worker_cpu_us_per_event: float
    live_events: int
    live_rate: float
    live_achieved_rate: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    # How late the bench's own publisher handed events over, after their event time: part of the lag above.
    publisher_behind_p50_ms: float
    publisher_behind_p99_ms: float
    # The lag as the issue defines it: from the moment each event was handed to the producer to stored.
    published_lag_p50_ms: float
    published_lag_p99_ms: float
    published_lag_max_ms: float
    worker_peak_rss_mb: float
    baseline_peak_rss_mb: float
    notes: list[str] = field(default_factory=list)
    signed: SignedResult | None = None  # the same preload, signed, through a worker holding producer keys
    worker_batch_messages: float = 0.0  # mean messages per batch in the throughput phase (a fetch's worth)

    @property
    def worker_share(self) -> float:
        return self.worker_events_per_s / self.baseline_events_per_s if self.baseline_events_per_s else 0.0

    def as_dict(self) -> dict[str, object]:
        figures = {**asdict(self), "worker_share_of_baseline": round(self.worker_share, 4)}
        if self.signed is not None:
            figures["signed_share_of_unsigned"] = round(self.signed.events_per_s / self.worker_events_per_s, 4)
        return figures


@dataclass
class SignedResult:
    """Phase 2 on signed messages, the worker verifying each against the keys file."""

    events_per_s: float
    worker_seconds: float
    stages_us_per_event: dict[str, float]
    worker_cpu_us_per_event: float
    unauthenticated: int  # signed messages the worker rejected: 0, or the figures are not of verified events
    # Mean messages per batch: a signed record is ~90 bytes longer (its headers), and a fetch is capped in bytes.
    batch_messages: float


@dataclass
class _Throughput:
    """What phase 2 measures of the worker(s) on a preloaded topic."""

    events_per_s: float
    seconds: float  # launch to drained
    startup_s: float  # launch to the first records taken, state restored
    stages_us_per_event: dict[str, float]
    store_write_us_per_event: float
    cpu_us_per_event: float
    unauthenticated: int  # messages rejected as unauthenticated (dmm_rejected_total)
    batch_messages: float  # mean messages per batch (dmm_batch_size_messages)
    store: Settings  # where the worker(s) store: the one store, shared or not
    each: list[Settings]  # each worker's settings
    processes: list[subprocess.Popen[bytes] | None]


def preload(settings: Settings, events: int, seed: int, keys: KeyRing | None = None) -> int:
    """Publish `events` simulated messages (event time two days ago) without a worker running; with `keys`, each
    signed by its exchange's key. They end two days ago at the latest, however many: the monitor rejects events
    stamped ahead of its clock."""
    rate = 200.0
    start = datetime.now(UTC) - timedelta(days=2, seconds=events / rate)
    # Heartbeats and usage come on top of `rate`; twice the duration is always enough, we stop at `events`.
    simulation = MarketSimulator(SimulationConfig(seed=seed, start=start, duration_s=2 * events / rate, rate=rate))
    sent = 0
    with EventProducer(settings.kafka) as producer:
        for key, value in simulation.messages():
            signing_key = keys.signing_key(json.loads(value)["exchange_id"]) if keys is not None else None
            producer.publish_raw(value, key, signing_key)
            sent += 1
            if sent >= events:
                break
        producer.flush()
    return sent


def run(
    settings: Settings,
    workdir: Path,
    events: int,
    seed: int = 5,
    live_fraction: float = 0.25,
    live_seconds: float = 20.0,
    live_rate: float | None = None,
    workers: int = 1,
    say: Say = print,
    signed: bool = False,
) -> BenchResult:
    """`workers` > 1: that many worker processes in one group, sharing the store through `dmm store-serve`.
    `signed`: phase 2 again after the others, on signed messages through a worker holding producer keys."""
    notes: list[str] = []
    group = WorkerGroup(settings, workdir / "group", workers) if workers > 1 else None
    with EmbeddedStack(settings, workdir) as stack, _stopping(group):
        stack.stop_worker()
        say(
            f"preloading {events:,} simulated events into {settings.kafka.events_topic} "
            f"({settings.kafka.events_partitions} partition(s)) …"
        )
        sent = preload(settings, events, seed)
        say("baseline: bare aiokafka consumer, decode + validate only …")
        baseline = asyncio.run(_bare_consume(settings, sent))
        say(f"throughput: {workers} real worker process(es) on the preloaded topic …")
        measured = _throughput(settings, stack, group, sent, notes)
        store, each = measured.store, measured.each
        rate = live_rate or min(max(1.0, measured.events_per_s * live_fraction), MAX_DEFAULT_LIVE_RATE)
        say(f"latency: generating {live_seconds:.0f} s of live traffic at {rate:,.0f} events/s …")
        messages, start = _live_traffic(seed + 1, rate, live_seconds)
        say(f"latency: publishing {len(messages):,} events paced to their event time …")
        late_start_s = (datetime.now(UTC) - start).total_seconds()
        if late_start_s > 0.05:
            notes.append(f"live traffic started {late_start_s:.2f} s after its first event time (lag includes it)")
        published = time.perf_counter() + max(0.0, -late_start_s)  # the first message is due then
        published_ms, behind = asyncio.run(publish_paced(settings.kafka, messages))
        live = len(published_ms)
        achieved = live / max(time.perf_counter() - published, 1e-3)
        if achieved < 0.95 * len(messages) / live_seconds:
            notes.append(f"the publisher reached only {achieved:,.0f} events/s of the {rate:,.0f} asked")
        wait_until_drained(store, timeout=600, settle=0.5, workers=each)
        lag = query_rows(store, queries.ingest_lag(settings.clickhouse.database, start))[0]
        published_lag = _published_lag_ms(
            messages, published_ms, query_rows(store, queries.ingest_stored_at(settings.clickhouse.database, start))
        )
        peak = max((_peak_rss_mb(p.pid) for p in measured.processes if p is not None), default=0.0)
    signed_result = _signed(settings, workdir / "signed", events, seed, workers, say) if signed else None
    if signed_result is not None and signed_result.unauthenticated:
        notes.append(f"{signed_result.unauthenticated:,} signed message(s) were rejected as unauthenticated")
    return BenchResult(
        events=sent,
        partitions=settings.kafka.events_partitions,
        workers=workers,
        baseline_events_per_s=baseline,
        worker_events_per_s=measured.events_per_s,
        worker_seconds=measured.seconds,
        worker_startup_s=measured.startup_s,
        stages_us_per_event=measured.stages_us_per_event,
        store_write_us_per_event=measured.store_write_us_per_event,
        worker_cpu_us_per_event=measured.cpu_us_per_event,
        live_events=live,
        live_rate=rate,
        live_achieved_rate=achieved,
        lag_p50_ms=float(lag["p50"]),
        lag_p99_ms=float(lag["p99"]),
        lag_max_ms=float(lag["mx"]),
        publisher_behind_p50_ms=_percentile(behind, 0.5) * 1000,
        publisher_behind_p99_ms=_percentile(behind, 0.99) * 1000,
        published_lag_p50_ms=_percentile(published_lag, 0.5),
        published_lag_p99_ms=_percentile(published_lag, 0.99),
        published_lag_max_ms=max(published_lag, default=0.0),
        worker_peak_rss_mb=peak,
        baseline_peak_rss_mb=_peak_rss_mb(),
        notes=notes,
        signed=signed_result,
        worker_batch_messages=measured.batch_messages,
    )


def _throughput(
    settings: Settings, stack: EmbeddedStack, group: WorkerGroup | None, sent: int, notes: list[str]
) -> _Throughput:
    """Phase 2: start the worker(s) on the preloaded topic and time them until every message is stored."""
    started, launched_ms = time.perf_counter(), time.time() * 1000
    if group is None:
        stack.start_worker()
        store, each = settings, [settings]
    else:  # the first worker up starts alone until the others join: a rebalance is part of the run
        store, each = group.start(), group.worker_settings
        notes.append(f"{len(each)} workers share the store through dmm store-serve (one more process)")
    processes = [s.worker for s in group.stacks] if group is not None else [stack.worker]
    pids = [p.pid if p is not None else 0 for p in processes]
    ready_cpu_s = [_cpu_seconds(pid) if pid else 0.0 for pid in pids]
    wait_until_drained(store, timeout=3600, settle=0.5, workers=each)
    worker_seconds = time.perf_counter() - started
    drained_cpu_s = [_cpu_seconds(pid) if pid else 0.0 for pid in pids]
    span = query_rows(store, queries.ingest_span(settings.clickhouse.database))[0]
    metrics = [worker_metrics(one) for one in each]
    # Each worker's CPU from its first records taken (as it recorded it), else from when it was ready: the bench
    # sees it ready some time after it began consuming.
    cpu_s = sum(
        drained - (m.get("dmm_first_records_cpu_seconds") or ready)
        for ready, drained, m in zip(ready_cpu_s, drained_cpu_s, metrics, strict=True)
    )
    # From the first records any worker took into its pipeline, its state restored (the bare consumer's rate
    # also starts at its first records), not the first row stored: with several partitions the first batches
    # are held back for event-time alignment, work that the stored rows do not show.
    first_taken_ms = min(
        (m["dmm_first_records_timestamp_seconds"] * 1000 for m in metrics if m["dmm_first_records_timestamp_seconds"]),
        default=0,
    )
    busy_s = (int(span["b"]) - min(int(span["a"]), first_taken_ms or int(span["a"]))) / 1000
    if busy_s < 1.0:  # a batch or two: the stamps cannot time it; the whole run (start-up included) can
        busy_s = worker_seconds
        notes.append("too few events to time between the first and last stored row: rate over the whole run")
    stages = {
        s: sum(m.get(f'dmm_stage_seconds_total{{stage="{s}"}}', 0.0) for m in metrics) * 1e6 / sent for s in STAGES
    }
    # The writes alone, in the store's thread (`store` also counts the wait for the loop to take the result).
    writes = sum(v for m in metrics for k, v in m.items() if k.startswith("dmm_store_write_seconds_sum"))
    return _Throughput(
        events_per_s=sent / busy_s,
        seconds=worker_seconds,
        startup_s=max(0.0, (first_taken_ms - launched_ms) / 1000) if first_taken_ms else 0.0,
        stages_us_per_event=stages,
        store_write_us_per_event=writes * 1e6 / sent,
        cpu_us_per_event=cpu_s * 1e6 / sent,
        unauthenticated=int(sum(m.get('dmm_rejected_total{reason="unauthenticated"}', 0.0) for m in metrics)),
        batch_messages=sum(m["dmm_batch_size_messages_sum"] for m in metrics)
        / max(1.0, sum(m["dmm_batch_size_messages_count"] for m in metrics)),
        store=store,
        each=each,
        processes=processes,
    )


def _signed(settings: Settings, workdir: Path, events: int, seed: int, workers: int, say: Say) -> SignedResult:
    """Phase 2 on a fresh stack (its own broker and store) whose worker(s) hold producer keys: the same preload,
    each message signed by its exchange's key (a key per exchange, as a deployment has them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys_file = workdir / "producer-keys.csv"
    keys_file.write_text(
        "exchange_id,key_id,secret\n" + "".join(f"{code},bench-1,{os.urandom(32).hex()}\n" for code in exchanges())
    )
    keys_file.chmod(0o600)
    signed = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{free_port()}"}),
            "clickhouse": settings.clickhouse.model_copy(update={"chdb_path": workdir / "chdb"}),
            "web_port": free_port(),
            "ingest": IngestSettings(keys_file=keys_file),
        }
    )
    group = WorkerGroup(signed, workdir / "group", workers) if workers > 1 else None
    with EmbeddedStack(signed, workdir) as stack, _stopping(group):
        stack.stop_worker()
        say(f"signed: preloading the same {events:,} events, each signed by its exchange's key …")
        sent = preload(signed, events, seed, load_keys(keys_file))
        say(f"signed: {workers} worker process(es) verifying every message against the keys file …")
        measured = _throughput(signed, stack, group, sent, [])
    return SignedResult(
        events_per_s=measured.events_per_s,
        worker_seconds=measured.seconds,
        stages_us_per_event=measured.stages_us_per_event,
        worker_cpu_us_per_event=measured.cpu_us_per_event,
        unauthenticated=measured.unauthenticated,
        batch_messages=measured.batch_messages,
    )


@contextmanager
def _stopping(group: WorkerGroup | None) -> Iterator[None]:
    try:
        yield
    finally:
        if group is not None:
            group.stop()


@dataclass
class SoakResult:
    rate: float
    seconds: float
    events: int
    event_hours: float  # event time the traffic spans (0: as it is sent)
    rss_mib: list[tuple[float, float]]  # (seconds since start, worker RSS MiB), every sample
    warm_up_s: float  # the samples before are left out of the slope (see `soak_warm_up_s`)
    slope_mib_per_hour: float  # the worker's, after warm-up, least squares
    rss_end_mib: float  # once the worker has taken every event
    # The store's own process (`dmm store-serve`, as a ClickHouse server is in production), sampled beside it.
    store_rss_mib: list[tuple[float, float]]
    store_slope_mib_per_hour: float
    store_rss_end_mib: float
    dedup_index_events: float
    dedup_ram_bytes_per_event: float  # the index's filters and RocksDB memtables, as the worker reports them
    dedup_disk_bytes_per_event: float  # its state directory, every file
    dedup_disk_probe_rate: float  # disk reads per identity looked up (resends and filter false positives)
    expected_index_mib_per_hour: float  # what remembering every event for 24 h adds to RAM at this rate
    # With `event_hours` beyond the 24 h horizon: RSS when event time reached 24 h after its start (the sample
    # nearest), and the end's RSS against it (the bar: within 10 % once the horizon passes).
    rss_at_horizon_mib: float | None = None
    rss_end_over_horizon: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_soak(
    settings: Settings,
    workdir: Path,
    rate: float,
    seconds: float,
    seed: int = 5,
    say: Say = print,
    sample_every_s: float = 2.0,
    event_hours: float = 0.0,
) -> SoakResult:
    """Live traffic at `rate` for `seconds` through the real worker; its RSS sampled all along. `event_hours`:
    the traffic's event time spans that many hours up to now (more than the dedup horizon: it passes within the
    run), instead of moving as it is sent.

    The store runs in a process of its own (`dmm store-serve`), as ClickHouse does in production, where the
    worker's memory limit is the worker's alone: the worker's RSS is then what it keeps (the rules' state, the
    dedup index, the batches), not the store's parts, caches and merges, which ClickHouse bounds by its own
    settings. Both are sampled and reported."""
    templates, _ = _live_traffic(seed, min(rate, 20_000), 10)
    group = WorkerGroup(settings, workdir / "group", workers=1)
    with EmbeddedStack(settings, workdir) as stack, _stopping(group):
        stack.stop_worker()  # the stack's broker and store claim; its worker is the group's, the store apart
        shared = group.start()
        worker, server = group.stacks[0].worker, group.server
        assert worker is not None and server is not None
        samples: list[tuple[float, float, float]] = []
        stop = threading.Event()
        began = time.monotonic()

        def watch() -> None:
            while not stop.wait(sample_every_s):
                samples.append((time.monotonic() - began, _rss_mb(worker.pid), _rss_mb(server.pid)))
                at, worker_mib, store_mib = samples[-1]
                if len(samples) % max(1, round(10 / sample_every_s)) == 0:  # a line about every 10 s
                    say(f"soak: {at:,.0f} s, RSS worker {worker_mib:,.0f} MiB, store {store_mib:,.0f} MiB")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        sent = 0
        span_ms = event_hours * 3_600_000 if event_hours else seconds * 1000
        with EventProducer(settings.kafka, linger_ms=5) as producer:
            start_ms = to_ms(datetime.now(UTC)) - (int(span_ms) if event_hours else 0)
            step_ms = span_ms / (seconds * rate)
            while (elapsed := time.monotonic() - began) < seconds:
                due = int(elapsed * rate)
                while sent < due:
                    key, value = _renamed(templates[sent % len(templates)], sent, start_ms + int(sent * step_ms))
                    producer.publish_raw(value, key)
                    sent += 1
                time.sleep(0.005)
            producer.flush()
        stop.set()
        watcher.join()
        wait_until_drained(shared, timeout=600, workers=group.worker_settings)
        rss_end, store_end = _rss_mb(worker.pid), _rss_mb(server.pid)
        metrics = worker_metrics(group.worker_settings[0])
        state_path = group.worker_settings[0].state_path
        disk = sum(path.stat().st_size for path in state_path.rglob("*") if path.is_file())
    index_events = metrics.get("dmm_dedup_index_events", 0.0)
    per_event = metrics.get('dmm_dedup_index_bytes{medium="ram"}', 0.0) / max(index_events, 1.0)
    probed = metrics.get('dmm_dedup_probes_total{tier="filter"}', 0.0)
    warm_up_s = soak_warm_up_s(settings, seconds)
    worker_rss = [(t, mib) for t, mib, _ in samples]
    store_rss = [(t, mib) for t, _, mib in samples]
    at_horizon = None
    if event_hours > 24 and samples:
        horizon_s = seconds * 24 / event_hours
        at_horizon = min(worker_rss, key=lambda sample: abs(sample[0] - horizon_s))[1]
    return SoakResult(
        rate,
        seconds,
        sent,
        event_hours,
        worker_rss,
        warm_up_s,
        _slope_per_hour([(t, mib) for t, mib in worker_rss if t >= warm_up_s]),
        rss_end,
        store_rss,
        _slope_per_hour([(t, mib) for t, mib in store_rss if t >= warm_up_s]),
        store_end,
        index_events,
        per_event,
        disk / max(index_events, 1.0),
        metrics.get('dmm_dedup_probes_total{tier="disk"}', 0.0) / max(probed, 1.0),
        per_event * rate * 3600 / 2**20,
        at_horizon,
        rss_end / at_horizon if at_horizon else None,
    )


def soak_warm_up_s(settings: Settings, seconds: float) -> float:
    """When a soak's worker has filled what it keeps for a bounded time, not for the horizon: the minute windows
    are held for the allowed lateness and let go two minutes after it (5 + 2 min by default), the store's parts and
    caches settle in the first two minutes; at most 70 % of the run, so a short one still has a slope (sampled
    every 2 s, three minutes of a ten-minute run are 90 samples)."""
    return min(seconds * 0.7, max(120.0, settings.allowed_lateness_s + 120.0))


def _renamed(template: SimulatedMessage, n: int, at_ms: int) -> tuple[bytes, bytes]:
    """A template message as a new event: its own event id and event time."""
    return template.key, _restamped(template.value, at_ms, id_suffix=f"-S{n}")


def _restamped(value: bytes, at_ms: int, id_suffix: str = "") -> bytes:
    """A simulated message with its event time moved to `at_ms` (and its event id suffixed, if asked)."""
    event = json.loads(value)
    event["event_id"] += id_suffix
    event["occurred_at"] = rfc3339(at_ms)
    return json.dumps(event, ensure_ascii=False).encode()


def _slope_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    slope = statistics.linear_regression([t for t, _ in samples], [m for _, m in samples]).slope
    return slope * 3600


def _rss_mb(pid: int | str) -> float:
    return _memory_mb(pid, "VmRSS")


@dataclass
class QueryBenchResult:
    rows: int
    usage_rows: int
    days: int
    generate_s: float
    rollup_s: float
    queries_ms: dict[str, dict[str, float]]  # question -> p50 / max over the runs
    store_mib: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_queries(
    workdir: Path,
    rows: int,
    days: int = 365,
    runs: int = 5,
    usage_rows: int = 0,
    say: Say = print,
    progress: Callable[[str, int, int], None] = lambda what, done, total: None,
) -> QueryBenchResult:
    """`rows` synthetic trades (and `usage_rows` usage events, a listing of each product, the exchanges' heartbeats)
    over `days` days straight into a fresh embedded store, rollups and first sightings built as the worker builds
    them, then each regulator question and each console endpoint (`console_endpoints`) timed `runs` times (p50 and
    max, milliseconds)."""
    from sinks.clickhouse.store import ChdbStore

    store = ChdbStore(workdir / "chdb")
    try:
        store.apply_schema()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=days)
        say(f"generating {rows:,} trades over {days} days inside ClickHouse …")
        began = time.perf_counter()
        insert_trades(
            store,
            rows,
            start,
            days,
            sorted(exchanges()),
            sorted(sectors()),
            progress=lambda done: progress("trades", done, rows),
        )
        insert_listings(store, start, days, sorted(exchanges()), sorted(sectors()))
        heartbeats = insert_heartbeats(store, end, days, sorted(exchanges()))
        say(f"… and {heartbeats:,} heartbeats (every exchange's, the last {min(days, HEARTBEAT_DAYS)} days)")
        if usage_rows:
            say(f"generating {usage_rows:,} usage events …")
            insert_usage(
                store,
                usage_rows,
                start,
                days,
                sorted(exchanges()),
                sorted(sectors()),
                progress=lambda done: progress("usage", done, usage_rows),
            )
        generate_s = time.perf_counter() - began
        say("building market_1m / market_1h / market_1d, a day per statement …")
        began = time.perf_counter()
        build_rollups(store, start, days, progress=lambda done: progress("days", done, days))
        record_first_seen(store)  # as the worker's window flush does
        rollup_s = time.perf_counter() - began
        timings: dict[str, dict[str, float]] = {}
        for question, sql in queries.regulator_questions(store.database, end - timedelta(minutes=1)).items():
            timings[question] = _timed(partial(store.rows, sql), runs)
        for endpoint, build in console_endpoints(store.reads(get_settings().sql)).items():
            timings[endpoint] = _timed(build, runs)
        size = sum(f.stat().st_size for f in (workdir / "chdb").rglob("*") if f.is_file()) / 2**20
    finally:
        store.close()
    return QueryBenchResult(rows, usage_rows, days, generate_s, rollup_s, timings, size)


def console_endpoints(store: Reader) -> dict[str, Callable[[], object]]:
    """The console's own endpoint functions, each building the JSON its page reads (SQL and Python) through
    `store` as the web port gives them one (a store's `reads`: a connection per statement, the limits set): the
    period API for the watermark's day, the last full month and the last 365 days, feeds and alerts."""
    from models.clock import CHINA_STANDARD_TIME
    from sinks.clickhouse.console_queries import AlertFilter
    from streams.console.encode import plain
    from streams.console.feeds import feeds_view
    from streams.console.market import period_view
    from streams.console.surveillance import alerts_view

    lateness_s = get_settings().allowed_lateness_s
    today = datetime.now(CHINA_STANDARD_TIME).date()
    month_end = today.replace(day=1) - timedelta(days=1)
    return {
        "console: market, a day (?from=&to=)": lambda: plain(period_view(store, None, None, lateness_s)),
        "console: market, a month": lambda: plain(
            period_view(store, month_end.replace(day=1).isoformat(), month_end.isoformat(), lateness_s)
        ),
        "console: market, 365 days": lambda: plain(
            period_view(store, (today - timedelta(days=364)).isoformat(), today.isoformat(), lateness_s)
        ),
        "console: feeds": lambda: plain(feeds_view(store, 120)),
        "console: alerts": lambda: plain(alerts_view(store, AlertFilter(), 200)),
    }


def _timed(run: Callable[[], object], runs: int) -> dict[str, float]:
    """p50 and max of `runs` calls, in milliseconds."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        run()
        samples.append((time.perf_counter() - began) * 1000)
    return {"p50": statistics.median(samples), "max": max(samples)}


@dataclass
class RestoreBenchResult:
    """What a worker's start costs with a day of trades in the store (`run_restore`)."""

    trades: int
    seconds: float  # the whole restore
    seconds_by_part: dict[str, float]
    trades_per_s: float
    rss_before_mib: float
    rss_after_mib: float
    peak_rss_mib: float  # during the restore
    wash_trading_legs_in_ram: int
    state_disk_mib: float  # the local state directory after it
    day_at_5k_per_s_minutes: float  # a day at 5,000 events/s (432M events, as trades) at this pace
    keep_seconds: float  # a graceful stop leaving that state on disk (`Pipeline.keep_state`)
    restart_seconds: float  # the next start taking it (`streams.kept_state`) instead of rebuilding
    restart_by_part: dict[str, float]
    restart_kept_state: str  # what that start said of the kept state ("taken")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_restore(
    workdir: Path,
    trades: int,
    say: Say = print,
    progress: Callable[[str, int, int], None] = lambda what, done, total: None,
) -> RestoreBenchResult:
    """`trades` synthetic trades over the last 24 h straight into a fresh embedded store, then a worker's whole
    restore from it timed in this process (the dedup index and the wash-trading legs take most of it)."""
    from sinks.clickhouse.store import ChdbStore
    from streams.pipeline import Pipeline

    store = ChdbStore(workdir / "chdb")
    try:
        store.apply_schema()
        end = datetime.now(UTC)
        say(f"generating {trades:,} trades over the last 24 h inside ClickHouse …")
        insert_trades(
            store, trades, end - timedelta(days=1), 1, sorted(exchanges()), sorted(sectors()),
            progress=lambda done: progress("trades", done, trades),
        )
        settings = Settings(clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"), state_dir=workdir / "state")

        async def nowhere(topic: str, key: bytes | None, value: bytes) -> None:
            return None

        pipeline = Pipeline(settings, store, nowhere)
        _reset_peak_rss()
        before = _rss_mb("self")
        say("restoring …")
        began = time.perf_counter()
        parts = pipeline.restore()
        seconds = time.perf_counter() - began
        wash = next(d for d in pipeline.surveillance.detectors if d.kind == "wash_trading")
        disk = sum(path.stat().st_size for path in settings.state_path.rglob("*") if path.is_file())
        after, peak, legs_in_ram = _rss_mb("self"), _peak_rss_mb(), getattr(wash, "legs_in_ram", 0)
        say("stopping gracefully, then starting again from the state kept …")
        began = time.perf_counter()
        pipeline.keep_state()
        keep_seconds = time.perf_counter() - began
        restarted = Pipeline(settings, store, nowhere)
        began = time.perf_counter()
        restart_parts = restarted.restore()
        restart_seconds = time.perf_counter() - began
        return RestoreBenchResult(
            trades,
            seconds,
            parts,
            trades / seconds,
            before,
            after,
            peak,
            legs_in_ram,
            disk / 2**20,
            432_000_000 / (trades / seconds) / 60,
            keep_seconds,
            restart_seconds,
            restart_parts,
            restarted.kept_state_outcome,
        )
    finally:
        store.close()


def _live_traffic(seed: int, rate: float, seconds: float) -> tuple[list[SimulatedMessage], datetime]:
    """`rate` x `seconds` simulated messages, generated ahead (no CPU spent on it while they are sent) and
    re-timed to one every 1/rate s from a start after they are all ready (the simulator's market is slower than
    a load test needs: its per-minute volumes are realistic). The start leaves time for the re-timing, as long as
    its first messages took, so that the first are not due before the last are written."""
    count = max(1, int(rate * seconds))
    simulation = MarketSimulator(
        SimulationConfig(seed=seed, start=datetime.now(UTC) - timedelta(days=1), duration_s=count / 100, rate=200.0)
    )
    generated = list(islice(simulation.messages(), count))
    sample = min(len(generated), 2_000)
    timed = time.perf_counter()
    for _key, value in generated[:sample]:
        _restamped(value, 0)
    restamp_s = (time.perf_counter() - timed) / max(sample, 1) * len(generated)
    start = datetime.now(UTC) + timedelta(seconds=0.5 + 1.5 * restamp_s)
    start_ms = to_ms(start)
    messages = []
    for index, (key, value) in enumerate(generated):
        at_ms = start_ms + int(index * 1000 / rate)
        messages.append(SimulatedMessage(key, _restamped(value, at_ms), at_ms))
    return messages, start


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


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _published_lag_ms(
    messages: list[SimulatedMessage], published_ms: list[float], stored: list[dict[str, Any]]
) -> list[float]:
    """Per stored live event, ms from the moment it was handed to the producer (its first copy, if resent) to
    the moment it was stored."""
    sent: dict[tuple[str, str], float] = {}
    for message, at in zip(messages, published_ms, strict=False):  # those published, in order
        fields = json.loads(message.value)
        sent.setdefault((fields.get("exchange_id"), fields.get("event_id")), at)
    return [
        float(row["stored_ms"]) - sent[key] for row in stored if (key := (row["exchange_id"], row["event_id"])) in sent
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _peak_rss_mb(pid: int | str = "self") -> float:
    return _memory_mb(pid, "VmHWM")


def _reset_peak_rss() -> None:
    """Start this process's peak RSS (VmHWM) afresh from its RSS now (Linux: `clear_refs` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _memory_mb(pid: int | str, field: str) -> float:
    """One memory figure of a process (VmRSS now, VmHWM peak) from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0
