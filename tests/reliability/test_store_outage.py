"""The store refuses writes for a while: the worker waits (backpressure), then everything lands once.

Fault: no ClickHouse server can run here, so the embedded store's data directory
is put on a small tmpfs which is then filled with a ballast file: every write
fails with "No space left on device". That stands for a store refusing writes
(disk full, server down, credentials revoked). Needs root to mount; skipped with
the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dmm.producer import EventProducer
from dmm.query import wait_until_drained, worker_status
from dmm.replay import line_key
from dmm.stack import EmbeddedStack
from tests.support.market_file import build_market
from tests.support.stack import settings_for
from tests.support.totals import StoreReader, assert_exact_totals
from tests.support.worker import log_entries, rss_kib, scrape, wait_for

pytestmark = pytest.mark.slow

OUTAGE_S = 20


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root/CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Write a ballast file until the filesystem is full (unbuffered, down to the last 4 KiB page)."""
    ballast = mount / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(mount).free < 64 * 1024
    return ballast


def publish(settings, lines: list[bytes]) -> None:
    with EventProducer(settings.kafka) as producer:
        for line in lines:
            producer.publish_raw(line, line_key(line))


def processed(settings) -> tuple[int, int]:
    part = next(iter(worker_status(settings)["partitions"].values()))
    return part["processed"], part["highwater"]


def test_store_refusing_writes_pauses_consumption_then_lands_everything_once(tmp_path: Path, small_disk: Path) -> None:
    path = tmp_path / "market.jsonl"
    expected = build_market(path, minutes=40, rate=4.0)
    lines = path.read_bytes().split(b"\n")[:-1]
    first, second = lines[: len(lines) // 3], lines[len(lines) // 3 :]
    settings = settings_for(small_disk)  # backoff capped at 2 s (settings_for)
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        assert stack.worker is not None
        pid = stack.worker.pid
        publish(settings, first)
        wait_until_drained(settings, timeout=120)
        before = scrape(settings)
        rss_before = rss_kib(pid)["VmRSS"]

        ballast = fill(small_disk)
        publish(settings, second)
        # The worker tries, fails, backs off, and stops consuming.
        wait_for(lambda: scrape(settings).get("dmm_store_backpressure") == 1, timeout=30, what="backpressure")
        stalled_at, _ = processed(settings)
        samples = []
        outage_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_end:
            m = scrape(settings)
            samples.append((m.get("dmm_store_write_failures_total", 0), m.get("dmm_store_backpressure"),
                            m.get("dmm_consumer_lag_messages", 0), processed(settings), rss_kib(pid)["VmRSS"]))
            assert stack.worker.poll() is None, stack.worker_log_tail()
            time.sleep(1)
        failures = [s[0] for s in samples]
        assert failures[-1] > failures[0] > before.get("dmm_store_write_failures_total", 0), failures
        assert all(s[1] == 1 for s in samples), samples
        assert {s[3][0] for s in samples} == {stalled_at}, "the processed offset must not move while writes fail"
        # Consumption paused with messages waiting: how many the worker took before it stalled depends on the
        # machine's speed, that some wait on the broker and the lag gauge shows them does not.
        assert stalled_at >= len(first) - 1, "what was stored before the outage stays processed"
        assert samples[-1][3][1] - 1 > stalled_at, "a backlog builds up on the broker"
        assert samples[-1][2] > before.get("dmm_consumer_lag_messages", 0), "the lag gauge rose with it"
        peak_rss = max(s[4] for s in samples)
        assert peak_rss < rss_before + 300 * 1024, (rss_before, peak_rss)
        # Backoff, not a hot loop: with a 2 s cap, about one retry every 2 s (a few tables per batch).
        assert failures[-1] - failures[0] < 5 * OUTAGE_S, failures

        ballast.unlink()
        wait_until_drained(settings, timeout=180)
        after = scrape(settings)
        assert after["dmm_store_backpressure"] == 0
        counts = assert_exact_totals(StoreReader(settings), expected)
        assert after["dmm_events_total"] == expected.accepted
        warnings = [e for e in log_entries(stack.worker_log) if e.get("msg", "").startswith("store write failed")]
        errors = " ".join(str(e.get("error")) for e in warnings)
        assert warnings and ("NOT_ENOUGH_SPACE" in errors or "No space left on device" in errors), errors[:500]
        assert stack.worker.poll() is None
        print(
            f"\nstore outage: {OUTAGE_S}s of ENOSPC; failures {failures[0]:.0f}->{failures[-1]:.0f}, processed stuck "
            f"at {stalled_at}, backlog {samples[-1][3][1] - 1 - stalled_at}, RSS {rss_before // 1024}->"
            f"{peak_rss // 1024} MiB; afterwards counts {counts}"
        )
