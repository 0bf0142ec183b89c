"""SIGTERM mid-stream: a clean, bounded stop with windows flushed and offsets committed, then a gapless restart."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from dmm.producer import EventProducer
from dmm.query import wait_until_drained, worker_status
from dmm.replay import replay_file
from dmm.stack import EmbeddedStack
from sinks.clickhouse.store import ChdbStore
from tests.support.market_file import build_market
from tests.support.stack import settings_for
from tests.support.totals import StoreReader, assert_exact_totals
from tests.support.worker import log_entries, scrape, wait_for

pytestmark = pytest.mark.slow


def test_sigterm_mid_stream_flushes_commits_and_resumes_exactly(tmp_path: Path) -> None:
    path = tmp_path / "market.jsonl"
    expected = build_market(path, minutes=75, rate=4.0)
    settings = settings_for(tmp_path / "stack")
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        sender = threading.Thread(target=lambda: replay_file(path, EventProducer(settings.kafka)), daemon=True)
        sender.start()

        def progressed() -> bool:
            parts = worker_status(settings).get("partitions") or {}
            return any(p["processed"] > 3_000 for p in parts.values())

        wait_for(progressed, timeout=60, what="the worker processing the stream")
        status = worker_status(settings)
        assert any(p["processed"] < expected.lines - 1 for p in status["partitions"].values()), "not mid-stream"
        asked = time.monotonic()
        code = stack.stop_worker(timeout=45)  # SIGKILL after that: exit code 0 means it stopped on its own
        took = time.monotonic() - asked  # reported, not asserted: it depends on the machine's load
        assert code == 0, stack.worker_log_tail()
        messages = [e.get("msg", "") for e in log_entries(stack.worker_log)]
        assert "shutdown: windows flushed, offsets acknowledged and committed" in messages
        sender.join(timeout=60)

        # The worker is gone: open the store directly. Every stored trade is in its minute window.
        store = ChdbStore(settings.clickhouse.chdb_path)
        try:
            reader = StoreReader(store=store)
            windows = reader.one(
                "SELECT toString(sum(traded_amount)) AS a, sum(trades) AS n FROM datamarket.market_1m FINAL"
            )
            trades = reader.one("SELECT toString(sum(amount)) AS a, count() AS n FROM datamarket.trades WHERE late = 0")
            stored_at_stop = int(trades["n"])
            marks = reader.one("SELECT max(last_offset) AS mark FROM datamarket.processed_batches")
        finally:
            store.close()
        assert stored_at_stop > 0
        assert Decimal(windows["a"]) == Decimal(trades["a"]) and int(windows["n"]) == stored_at_stop

        stack.start_worker()
        wait_until_drained(settings, timeout=300)
        metrics = scrape(settings)
        counts = assert_exact_totals(StoreReader(settings), expected)
        # One pipeline per incarnation: a second one racing the first batch would forget that batch's windows.
        restores = [e for e in log_entries(stack.worker_log) if e.get("msg") == "state restored from ClickHouse"]
        assert len(restores) == 2, restores
        # What the stop kept on local disk was what the store held: the restart took it instead of rebuilding.
        assert [e.get("kept_state") for e in restores] == ["no state kept", "taken"], restores
        redelivered = metrics.get("dmm_redelivered_total", 0)
        # Offsets were committed at the stop: at most what was in flight while stopping comes again (the
        # batch being stored and the one prepared behind it), and the restart seeks past the store's marks.
        assert redelivered <= 2 * settings.batch_max, redelivered
        print(
            f"\ngraceful: SIGTERM at processed={status['partitions']}, exit 0 after {took:.2f}s, "
            f"mark at stop {marks['mark']}, redelivered after restart {redelivered:.0f}, counts {counts}"
        )
