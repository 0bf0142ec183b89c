"""The worker's Prometheus metrics, served at /metrics on its web port.

Labels are bounded sets only (type, exchange, sector, reason, kind, table):
never a product or participant id, which would explode cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

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


def start_at_zero(reasons: list[str], severities: dict[str, str], tables: list[str]) -> None:
    """Create every known label set at 0, so the first rejection, alert or failure shows in increase()."""
    for reason in reasons:
        REJECTED.labels(reason=reason)
    for kind, severity in severities.items():
        ALERTS.labels(kind=kind, severity=severity)
    for table in tables:
        STORE_FAILURES.labels(table=table)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage=stage)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block into `dmm_stage_seconds_total{stage=name}`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=name).inc(time.perf_counter() - started)
