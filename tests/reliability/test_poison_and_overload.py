"""A message that breaks a detector, and a burst far above the sustainable rate.

Poison: one event makes a detector raise. It must be rejected (reason
`processing_error`, the detail naming the detector and the error) instead of
failing its batch forever, and the rest of the batch must be stored.

Overload: 100k+ messages produced as fast as the producer can while the worker
is frozen (SIGSTOP: a stall, as in a long GC pause or a stopped VM), then it is
let go. The backlog is far above what it can take at once (the producer alone is
not faster than the worker any more). It drains in bounded batches (lag visible
at /metrics), never loses or doubles anything, and its memory stays bounded
(Kafka holds the backlog).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dmm.producer import EventProducer
from dmm.query import wait_until_drained
from dmm.replay import line_key, replay_file
from dmm.stack import EmbeddedStack
from models import AnyEvent, Trade
from sinks import prometheus as metrics
from sinks.clickhouse.store import ChdbStore
from streams.detectors import build_detectors
from streams.detectors.base import EventTimeDetector, Finding, MarketContext
from streams.pipeline import Pipeline
from streams.records import Message
from streams.surveillance import Surveillance
from tests.support.market_file import build_market
from tests.support.stack import settings_for
from tests.support.totals import StoreReader, assert_exact_totals
from tests.support.worker import rss_kib, scrape, wait_for

pytestmark = pytest.mark.integration

POISON_TRADE = "POISON-1"


class ExplodingDetector(EventTimeDetector):
    """Test double: a detector with a bug that one particular trade triggers."""

    kind = "price_outlier"

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        if isinstance(event, Trade) and event.trade_id == POISON_TRADE:
            raise ZeroDivisionError("reference price is zero")
        return []


def test_a_poison_event_is_rejected_with_context_and_the_batch_is_stored(tmp_path: Path) -> None:
    """Real Pipeline and ChdbStore; only the failing detector (and the no-op Kafka publish) are doubles."""
    path = tmp_path / "market.jsonl"
    build_market(path, minutes=4, rate=2.0, anomalies=False)
    lines = path.read_bytes().split(b"\n")[:-1]
    trade = next(json.loads(line) for line in lines[50:] if b'"type":"trade"' in line)  # simulator lines are compact
    poison = json.dumps({**trade, "event_id": "POISON-EV", "trade_id": POISON_TRADE}).encode()
    lines.insert(len(lines) // 2, poison)
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        published.append((topic, value))

    settings = settings_for(tmp_path)
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.apply_schema()
        detectors = [*build_detectors(settings.rules), ExplodingDetector()]
        surveillance = Surveillance(settings.rules, settings.allowed_lateness_s * 1000, detectors)
        pipeline = Pipeline(settings, store, publish, surveillance=surveillance)
        pipeline.restore()
        errors_before = metrics.DETECTOR_ERRORS.labels(detector="price_outlier")._value.get()
        topic = settings.kafka.events_topic
        messages = [Message(topic, 0, i, line_key(v), v) for i, v in enumerate(lines)]

        async def run() -> None:
            await asyncio.wait_for(pipeline.handle(messages), timeout=60)  # one batch; it must not hang
            await pipeline.flush()

        asyncio.run(run())
        reader = StoreReader(store=store)
        rejected = reader.rows(
            "SELECT reason, detail, raw, exchange_id, event_id, src_offset FROM datamarket.rejected_events"
        )
        poison_rows = [r for r in rejected if r["event_id"] == "POISON-EV"]
        assert len(poison_rows) == 1, rejected
        row = poison_rows[0]
        assert row["reason"] == "processing_error"
        assert "price_outlier" in row["detail"] and "ZeroDivisionError" in row["detail"]
        assert "reference price is zero" in row["detail"]
        assert row["raw"] == poison.decode() and int(row["src_offset"]) == lines.index(poison)
        assert metrics.DETECTOR_ERRORS.labels(detector="price_outlier")._value.get() == errors_before + 1
        # The poison reached dm.rejected too, and everything else in the batch is stored.
        assert any(t == settings.kafka.rejected_topic and b"processing_error" in v for t, v in published)
        stored = reader.one(
            "SELECT (SELECT count() FROM datamarket.listings) + (SELECT count() FROM datamarket.trades) + "
            "(SELECT count() FROM datamarket.usage) + (SELECT count() FROM datamarket.heartbeats) AS n, "
            "(SELECT count() FROM datamarket.rejected_events) AS r, "
            "(SELECT count() FROM datamarket.duplicate_events) AS d, "
            "(SELECT max(last_offset) FROM datamarket.processed_batches) AS mark"
        )
        assert int(stored["n"]) + int(stored["r"]) + int(stored["d"]) == len(lines)
        assert int(stored["mark"]) == len(lines) - 1
        assert not reader.rows("SELECT 1 FROM datamarket.trades WHERE event_id = 'POISON-EV'")
    finally:
        store.close()


@pytest.mark.slow
def test_a_burst_far_above_capacity_slows_intake_without_loss(tmp_path: Path) -> None:
    started = time.monotonic()
    path = tmp_path / "burst.jsonl"
    expected = build_market(path, minutes=260, rate=4.0, anomalies=False)
    assert expected.lines >= 100_000
    settings = settings_for(tmp_path / "stack")
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        assert stack.worker is not None
        pid = stack.worker.pid
        samples: list[tuple[float, float, int]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    m = scrape(settings, timeout=2)
                    samples.append((time.monotonic() - started, m.get("dmm_consumer_lag_messages", 0.0),
                                    rss_kib(pid)["VmRSS"]))
                except OSError:
                    pass
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        produce_started = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            with EventProducer(settings.kafka) as producer:
                assert replay_file(path, producer) == expected.lines
        finally:
            os.kill(pid, signal.SIGCONT)
        produce_s = time.monotonic() - produce_started
        wait_until_drained(settings, timeout=600)
        drain_s = time.monotonic() - produce_started
        done.set()
        watcher.join()
        final = scrape(settings)
        memory = rss_kib(pid)
        counts = assert_exact_totals(StoreReader(settings), expected)
        peak_lag = max(lag for _, lag, _ in samples)
        print(
            f"\noverload: {expected.lines} msgs produced in {produce_s:.1f}s ({expected.lines / produce_s:.0f}/s), "
            f"drained after {drain_s:.1f}s ({expected.lines / drain_s:.0f}/s); peak lag {peak_lag:.0f}; "
            f"worker VmHWM {memory['VmHWM'] / 1024:.0f} MiB, VmRSS {memory['VmRSS'] / 1024:.0f} MiB; counts {counts}"
        )
        assert peak_lag > 10_000, "the backlog should show in dmm_consumer_lag_messages while it drains"
        batches = final["dmm_batch_size_messages_count"]
        assert batches >= expected.lines / settings.batch_max, "the backlog is taken in bounded batches"
        # The lag gauge is refreshed on the 5 s wall-clock timer.
        wait_for(lambda: scrape(settings)["dmm_consumer_lag_messages"] == 0, timeout=20, what="lag back to 0")
        assert final["dmm_events_total"] == expected.accepted
        assert memory["VmHWM"] < 1_500 * 1024, memory
        assert stack.worker.poll() is None
