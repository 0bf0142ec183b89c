"""The worker's Prometheus metrics, served at /metrics on its web port.

Labels are bounded sets only (type, exchange, sector, reason, kind, table):
never a product or participant id, which would explode cardinality. The worker
reports through one `PipelineSensor`, in its own words (a batch stored, a stage's
time, a store failure); which metric each report moves is decided here.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter, Gauge, Histogram

from sinks.clickhouse import BatchRows
from sinks.clickhouse.batches import EVENT_TYPE

EVENTS = Counter("dmm_events_total", "Accepted events, by type and exchange", ["type", "exchange_id"])
REJECTED = Counter("dmm_rejected_total", "Messages rejected, by contract reason", ["reason"])
DUPLICATES = Counter("dmm_duplicates_total", "Messages counted as duplicates of an earlier event", ["type"])
LATE = Counter("dmm_late_events_total", "Accepted events older than watermark minus allowed lateness", ["type"])
REDELIVERED = Counter(
    "dmm_redelivered_total", "Messages seen again after a restart (already stored; not counted twice)"
)
TRADED_AMOUNT = Counter(
    "dmm_traded_amount_cny_total", "Traded amount in CNY, by exchange and sector", ["exchange_id", "sector"]
)
EVENT_LAG = Histogram(
    "dmm_event_lag_seconds",
    "End-to-end lag: time stored minus the event's occurred_at",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
BATCH_SIZE = Histogram(
    "dmm_batch_size_messages", "Messages per processed batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
)
STORE_WRITE = Histogram(
    "dmm_store_write_seconds",
    "Latency of one batch write to ClickHouse, by table",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_FAILURES = Counter("dmm_store_write_failures_total", "Failed ClickHouse writes (retried)", ["table"])
STORE_BACKPRESSURE = Gauge(
    "dmm_store_backpressure", "1 while the worker has stopped consuming to retry a failed store write"
)
LAST_EVENT = Gauge(
    "dmm_last_event_timestamp_seconds", "occurred_at of the latest event from each exchange", ["exchange_id"]
)
WATERMARK = Gauge("dmm_watermark_timestamp_seconds", "Market event-time watermark (latest occurred_at seen)")
EXCHANGE_CLOCK_AHEAD = Gauge(
    "dmm_exchange_clock_ahead_seconds",
    "How far an exchange's latest event time runs ahead of every other exchange's latest (0 unless it leads): "
    "beyond DMM_MAX_CLOCK_SKEW_S, its clock is likely wrong (events further ahead of the wall clock are rejected "
    "as future_event)",
    ["exchange_id"],
)
FIRST_RECORDS = Gauge(
    "dmm_first_records_timestamp_seconds",
    "When this worker process first took records into its pipeline, its state restored (unix time; 0 before): "
    "where a benchmark's busy time starts",
)
FIRST_RECORDS_CPU = Gauge(
    "dmm_first_records_cpu_seconds",
    "This worker process's CPU time, all threads, when it first took records into its pipeline (0 before): a "
    "benchmark's CPU per event counts from there",
)
LAST_BATCH = Gauge(
    "dmm_last_batch_timestamp_seconds", "Wall-clock time the worker last finished a batch (stalls show here)"
)
CONSUMER_LAG = Gauge(
    "dmm_consumer_lag_messages", "Messages on dm.events not yet processed, by partition", ["partition"]
)
ALERTS = Counter("dmm_alerts_total", "Alerts raised, by kind and severity", ["kind", "severity"])
DETECTOR_ERRORS = Counter(
    "dmm_detector_errors_total",
    "Events a detector failed on (rejected as poison, not retried), or batches whose usage it missed",
    ["detector"],
)
WORKER_RESTARTS = Gauge(
    "dmm_worker_restarts", "Times the supervisor (`dmm up`) restarted this worker after it died; 0 when unsupervised"
)
STAGE_SECONDS = Counter(
    "dmm_stage_seconds_total",
    "Worker time spent in each pipeline stage (fetch: fetches that brought records, a group join excluded; decode, "
    "dedup, surveillance, arrow, store (in its thread, overlapping the next batch), store_wait (the batch loop "
    "waiting for it), windows, publish, metrics, commit, and the market stage's read-back and rules): rate() "
    "gives each stage's share of a core",
    ["stage"],
)
STAGES = (
    "fetch",
    "decode",
    "dedup",
    "surveillance",
    "arrow",
    "store",
    "store_wait",  # the batch loop waiting for the previous batch's store (the store runs in a thread meanwhile)
    "windows",
    "publish",
    "metrics",
    "commit",
    "market",  # the market stage's read-back and rules (several workers; in the one owning partition 0)
)
DEDUP_INDEX = Gauge("dmm_dedup_index_events", "Event identities remembered for duplicate detection")
DEDUP_INDEX_BYTES = Gauge(
    "dmm_dedup_index_bytes",
    "What the duplicate index holds: in RAM (its filters and RocksDB memtables) and on disk (RocksDB tables)",
    ["medium"],
)
DEDUP_PROBES = Counter(
    "dmm_dedup_probes_total",
    "Identities looked up in the duplicate index (tier=filter), and reads its filters sent to disk (tier=disk, "
    "one per identity and span of event time a filter may hold it in)",
    ["tier"],
)
RULE_CHANGES_REFUSED = Counter(
    "dmm_rule_changes_refused_total",
    "Messages on dm.rules refused (unsigned, not signed with the operators' key, or not a valid change): ignored, "
    "recorded in rule_changes with the error",
)
ALERT_WEBHOOK_DELIVERED = Counter(
    "dmm_alert_webhook_delivered_total", "Surveillance alerts the webhook (DMM_ALERT_WEBHOOK_URL) accepted"
)
ALERT_WEBHOOK_FAILED = Counter(
    "dmm_alert_webhook_failed_total", "Surveillance alerts given up after every retry to the webhook failed"
)
ALERT_WEBHOOK_DROPPED = Counter(
    "dmm_alert_webhook_dropped_total", "Surveillance alerts dropped unsent: queue full (oldest first) or shutdown"
)


def start_at_zero(reasons: Iterable[str], severities: Mapping[str, str], tables: Iterable[str]) -> None:
    """Create every known label set at 0, so the first rejection, alert or failure shows in increase()."""
    for reason in reasons:
        REJECTED.labels(reason=reason)
    for kind, severity in severities.items():
        ALERTS.labels(kind=kind, severity=severity)
    for table in tables:
        STORE_FAILURES.labels(table=table)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage=stage)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block into `dmm_stage_seconds_total{stage=name}`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=name).inc(time.perf_counter() - started)


class PipelineSensor:
    """What the worker's pipeline and consumer report, moved into the metrics above: they call these, never a
    metric. Counting is once per label set per batch (prometheus-client label lookups are slow per event)."""

    def __init__(self) -> None:
        self._latest_s: dict[str, float] = {}  # per exchange, its latest event time counted (s)
        self._probes = (0, 0)  # the duplicate index's lookups counted so far: to the filters, to disk

    def on_stage(self, name: str, seconds: float) -> None:
        """Worker time spent in a stage (`STAGES`)."""
        STAGE_SECONDS.labels(stage=name).inc(seconds)

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time a block as stage `name`."""
        return stage(name)

    def on_first_records(self) -> None:
        """The process takes its first records, its state restored: where a benchmark's busy time starts."""
        FIRST_RECORDS.set(time.time())
        FIRST_RECORDS_CPU.set(time.process_time())

    def on_restored(self, identities: int, watermark_ms: int) -> None:
        DEDUP_INDEX.set(identities)
        WATERMARK.set(watermark_ms / 1000)

    def on_dedup_index(self, ram_bytes: int, disk_bytes: int, probed: int, read_from_disk: int) -> None:
        """The duplicate index after a batch: its bytes, and how many lookups (ever) went to the filters and to disk."""
        DEDUP_INDEX_BYTES.labels(medium="ram").set(ram_bytes)
        DEDUP_INDEX_BYTES.labels(medium="disk").set(disk_bytes)
        before_probed, before_read = self._probes
        DEDUP_PROBES.labels(tier="filter").inc(probed - before_probed)
        DEDUP_PROBES.labels(tier="disk").inc(read_from_disk - before_read)
        self._probes = (probed, read_from_disk)

    def on_mishaps(self, redelivered: int, detectors_failed: Iterable[str]) -> None:
        """A stored batch's records skipped as stored before, and the detectors that raised on its events."""
        if redelivered:
            REDELIVERED.inc(redelivered)
        for kind, times in Tally(detectors_failed).items():
            DETECTOR_ERRORS.labels(detector=kind).inc(times)

    def on_store_failed(self, table: str) -> None:
        """A store write failed; consumption waits while it is retried."""
        STORE_FAILURES.labels(table=table).inc()
        STORE_BACKPRESSURE.set(1)

    def on_store_recovered(self) -> None:
        """A store operation succeeded: consumption goes on."""
        STORE_BACKPRESSURE.set(0)

    def on_table_written(self, table: str, seconds: float) -> None:
        STORE_WRITE.labels(table=table).observe(seconds)

    def on_rule_change_refused(self) -> None:
        RULE_CHANGES_REFUSED.inc()

    def on_lag(self, partition: int, messages: int) -> None:
        CONSUMER_LAG.labels(partition=str(partition)).set(messages)

    def on_batch_stored(
        self, rows: BatchRows, tables: Mapping[str, pa.Table], watermark_ms: int, identities: int
    ) -> None:
        """A batch is stored: its events, lateness, lag, amounts, rejections, duplicates and alerts counted from
        its Arrow tables. Group-bys on this thread: a batch's tables are small, and Arrow's thread pool, on a
        machine busy with the store and the broker, made the loop wait for it."""
        now = time.time()
        occurred: list[np.ndarray] = []
        latest = self._latest_s
        for table, kind in EVENT_TYPE.items():
            batch = tables.get(table)
            if batch is None:
                continue
            late = pc.sum(batch.column("late")).as_py()
            if late:
                LATE.labels(type=kind).inc(late)
            occurred.append(_seconds(batch.column("occurred_at")))
            per_exchange = batch.group_by("exchange_id", use_threads=False).aggregate(
                [("exchange_id", "count"), ("occurred_at", "max")]
            )
            for exchange_id, n, at in zip(
                per_exchange["exchange_id"].to_pylist(),
                per_exchange["exchange_id_count"].to_pylist(),
                _seconds(per_exchange["occurred_at_max"]),
                strict=True,
            ):
                EVENTS.labels(type=kind, exchange_id=exchange_id).inc(n)
                latest[exchange_id] = max(float(at), latest.get(exchange_id, 0.0))
                LAST_EVENT.labels(exchange_id=exchange_id).set(latest[exchange_id])
        trades = tables.get("trades")
        if trades is not None:
            traded = (
                trades.group_by(["exchange_id", "sector"], use_threads=False).aggregate([("amount", "sum")]).to_pylist()
            )
            for row in traded:
                TRADED_AMOUNT.labels(exchange_id=row["exchange_id"], sector=row["sector"]).inc(float(row["amount_sum"]))
        if occurred:
            observe_many(EVENT_LAG, np.maximum(0.0, now - np.concatenate(occurred)))
            self._clock_ahead()
        for reason, n in Tally(r.reason for r in rows.rejected).items():
            REJECTED.labels(reason=reason).inc(n)
        for kind, n in Tally(d.type for d in rows.duplicates).items():
            DUPLICATES.labels(type=kind).inc(n)
        for alert in rows.alerts:
            ALERTS.labels(kind=alert.kind, severity=alert.severity).inc()
        if rows.markers:
            BATCH_SIZE.observe(sum(m.messages for m in rows.markers))
        LAST_BATCH.set(now)
        WATERMARK.set(watermark_ms / 1000)
        DEDUP_INDEX.set(identities)

    def _clock_ahead(self) -> None:
        """`dmm_exchange_clock_ahead_seconds`: how far the exchange with the latest event time leads the next one
        (the others 0). One exchange far ahead of the rest likely has its clock set wrong, short of `future_event`
        (its events are accepted, and the market's event time follows them): ops see it here and on the Feeds
        page."""
        ranked = sorted(self._latest_s.items(), key=lambda item: item[1], reverse=True)
        for place, (exchange_id, at) in enumerate(ranked):
            lead = at - ranked[1][1] if place == 0 and len(ranked) > 1 else 0.0
            EXCHANGE_CLOCK_AHEAD.labels(exchange_id=exchange_id).set(lead)


def _seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A UTC timestamp column as float seconds since the epoch."""
    unit = column.type.unit
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    return np.asarray(pc.cast(column, pa.int64()), dtype=np.float64) / scale


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Many observations with one lock round per bucket. prometheus-client has no public API for it (it observes
    one value at a time: ~1 µs each, a batch's lag would cost more than the rest of its metrics), so this reads
    the histogram's private bucket bounds, sum and bucket counters, as the pinned version lays them out;
    tests/sinks/test_prometheus.py compares it with `observe` one by one and fails if that layout changes."""
    if not len(values):
        return
    per_bucket = np.bincount(np.searchsorted(histogram._upper_bounds, values, side="left"))
    histogram._sum.inc(float(values.sum()))
    for index in np.flatnonzero(per_bucket):
        histogram._buckets[index].inc(int(per_bucket[index]))
