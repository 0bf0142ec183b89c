"""The pipeline's sensor on the real prometheus-client: `observe_many` reads the histogram's private fields, so it
is held to `observe` one value at a time (this fails if a prometheus-client upgrade lays them out differently)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Histogram

from sinks import prometheus as metrics
from sinks.clickhouse import BatchRows
from sinks.prometheus import PipelineSensor, observe_many

BUCKETS = (0.05, 0.5, 1, 10, 300)


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_observing_many_at_once_counts_exactly_what_observing_each_counts() -> None:
    registry = CollectorRegistry()
    at_once = Histogram("at_once_seconds", "test", buckets=BUCKETS, registry=registry)
    each = Histogram("each_seconds", "test", buckets=BUCKETS, registry=registry)
    values = np.array([0.0, 0.05, 0.051, 0.5, 2.0, 10.0, 299.9, 300.0, 301.0, 5000.0, 0.2, 0.2])
    observe_many(at_once, values)
    observe_many(at_once, np.array([]))
    for value in values.tolist():
        each.observe(value)
    assert {(n.replace("at_once", "each"), le): v for (n, le), v in _samples(at_once).items()} == _samples(each)


def test_the_latest_event_of_an_exchange_never_goes_back_in_the_gauge() -> None:
    sensor = PipelineSensor()
    later, earlier = 1_795_000_600.0, 1_795_000_000.0

    def heartbeats(at_s: float) -> dict[str, pa.Table]:
        occurred = pa.array([int(at_s * 1_000_000)], pa.timestamp("us", tz="UTC"))
        table = pa.table({"exchange_id": ["TESTX"], "occurred_at": occurred, "late": [False]})
        return {"heartbeats": table}

    sensor.on_batch_stored(BatchRows(), heartbeats(later), 0, 0)
    sensor.on_batch_stored(BatchRows(), heartbeats(earlier), 0, 0)
    assert metrics.LAST_EVENT.labels(exchange_id="TESTX")._value.get() == later
