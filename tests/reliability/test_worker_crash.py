"""SIGKILL the worker again and again while it consumes a replay: nothing lost, nothing counted twice.

Fault: the real `dmm worker` process is killed with SIGKILL (no handler, nothing
flushed) at seeded random moments, five times in one run: during
start-up/restore, mid-batch, between store writes and window flushes, before
offsets are committed. It is restarted each time while the producer keeps
sending. Afterwards ClickHouse must hold exactly the file's totals, and the
alerts must be those of an uninterrupted pass over the same file.

Local state: the killed worker's state directory (its dedup index and, with a RAM
bound of a few legs here, the wash-trading legs it spilled) is deleted or
overwritten with garbage before each restart, as a lost or damaged disk would
leave it. That must cost time only, never an outcome: the reference pass keeps
every leg in RAM.

Metrics: counters live in the process and die with it, so a SIGKILLed
incarnation's last counts can only be sampled (periodic scrapes). Counting
happens after the store write, so an incarnation may under-report what it
stored just before dying but never counts a row it did not store, and a
redelivered message is skipped, not counted: per incarnation, the last scrape
is <= the rows it stored (identified by their ingested_at), and the final,
surviving incarnation's counters equal its stored rows exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dmm.producer import EventProducer
from dmm.query import wait_until_drained, worker_status
from dmm.replay import line_key
from dmm.stack import EmbeddedStack
from sinks.clickhouse.store import ChdbStore, Staged, Write
from streams.pipeline import Pipeline
from streams.records import Message
from tests.support.market_file import build_market
from tests.support.stack import settings_for
from tests.support.totals import EVENT_TABLES, StoreReader, alert_keys, assert_exact_totals
from tests.support.worker import log_entries, scrape

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("DMM_CRASH_SEED", "20261120"))
KILLS = 5
DURING_START_UP = (1, 4)  # these kills land while the new incarnation restores state and joins the group


def reference_alerts(path: Path, workdir: Path) -> set[str]:
    """Alerts of one uninterrupted pass of the file through the real Pipeline and a real chdb store.

    Test double: Kafka publishing is replaced by a no-op (the alerts are read from the store).
    """
    settings = settings_for(workdir)
    store = ChdbStore(workdir / "chdb")
    store.apply_schema()

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    async def run() -> None:
        pipeline = Pipeline(settings, store, publish)
        pipeline.restore()
        lines = path.read_bytes().split(b"\n")[:-1]
        topic = settings.kafka.events_topic
        for start in range(0, len(lines), settings.batch_max):
            chunk = lines[start : start + settings.batch_max]
            await pipeline.handle([Message(topic, 0, start + i, line_key(v), v) for i, v in enumerate(chunk)])
            await pipeline.flush()

    asyncio.run(run())
    try:
        return alert_keys(StoreReader(store=store))
    finally:
        store.close()


def produce_slowly(path: Path, stack: EmbeddedStack, seconds: float, errors: list[BaseException]) -> None:
    """Publish the file in chunks spread over `seconds`, so the stream stays in flight while we kill."""
    lines = path.read_bytes().split(b"\n")[:-1]
    chunks = 30
    try:
        with EventProducer(stack.settings.kafka) as producer:
            for n in range(chunks):
                for line in lines[n * len(lines) // chunks : (n + 1) * len(lines) // chunks]:
                    producer.publish_raw(line, line_key(line))
                producer.flush()
                time.sleep(seconds / chunks)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def processed(stack: EmbeddedStack) -> int:
    try:
        parts = worker_status(stack.settings).get("partitions") or {}
    except Exception:
        return -1
    return max((p["processed"] for p in parts.values()), default=-1)


def damage_local_state(state_dir: Path, deleted: bool) -> None:
    """What a lost disk (`deleted`) or a damaged one leaves of a killed worker's local state."""
    if deleted:
        shutil.rmtree(state_dir, ignore_errors=True)
        return
    for path in state_dir.rglob("*"):
        if path.is_file():
            path.write_bytes(os.urandom(max(1, min(path.stat().st_size, 1 << 16))))


def test_repeated_sigkill_loses_and_doubles_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    path = tmp_path / "market.jsonl"
    expected = build_market(path, minutes=75, rate=4.0)
    reference = reference_alerts(path, tmp_path / "reference")
    assert reference, "the file should raise alerts (anomalies are injected)"

    settings = settings_for(tmp_path / "stack", wash_trading_ram_legs=20)
    workdir = tmp_path / "stack"
    incarnations: list[dict] = []
    spilled: list[int] = []  # per kill, the wash-trading directories the killed worker had on disk
    with EmbeddedStack(settings, workdir) as stack:
        errors: list[BaseException] = []
        producer = threading.Thread(target=produce_slowly, args=(path, stack, 50.0, errors), daemon=True)
        producer.start()
        begun = datetime.now(UTC)
        kills = []
        for n in range(KILLS):
            if n > 0:
                begun = datetime.now(UTC)
                stack.start_worker(wait=n not in DURING_START_UP)
            delay = rng.uniform(0.3, 2.5) if n in DURING_START_UP else rng.uniform(0.5, 4.0)
            last: dict[str, float] = {}
            before = processed(stack)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    last = scrape(settings, timeout=1)
                time.sleep(0.05)
            at = processed(stack)
            stack.kill_worker()
            killed = datetime.now(UTC)
            assert stack.worker is not None and stack.worker.returncode == -9
            kills.append({"delay_s": round(delay, 2), "processed_before": before, "processed_at_kill": at})
            spilled.append(len(list(settings.state_path.glob("legs-*"))))
            damage_local_state(settings.state_path, deleted=n % 2 == 1)
            incarnations.append({"begun": begun, "ended": killed, "metrics": last})
        final_begun = datetime.now(UTC)
        stack.start_worker()
        producer.join(timeout=120)
        assert not errors, errors
        wait_until_drained(settings, timeout=300)
        final = scrape(settings)
        reader = StoreReader(settings)

        counts = assert_exact_totals(reader, expected)
        assert alert_keys(reader) == reference

        def stored_between(begin: datetime, end: datetime | None) -> dict[str, int]:
            lo = begin.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            hi = f" AND {{c}} <= '{end.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}'" if end else ""
            events = " + ".join(
                f"(SELECT count() FROM datamarket.{t} WHERE ingested_at >= '{lo}'{hi.format(c='ingested_at')})"
                for t in EVENT_TABLES
            )
            row = reader.one(
                f"SELECT {events} AS events, "
                f"(SELECT count() FROM datamarket.rejected_events WHERE received_at >= '{lo}'"
                f"{hi.format(c='received_at')}) AS rejected, "
                f"(SELECT count() FROM datamarket.duplicate_events WHERE received_at >= '{lo}'"
                f"{hi.format(c='received_at')}) AS duplicates"
            )
            return {k: int(v) for k, v in row.items()}

        for life in incarnations:
            rows = stored_between(life["begun"], life["ended"])
            m = life["metrics"]
            assert m.get("dmm_events_total", 0) <= rows["events"], (life, rows)
            assert m.get("dmm_rejected_total", 0) <= rows["rejected"], (life, rows)
            assert m.get("dmm_duplicates_total", 0) <= rows["duplicates"], (life, rows)
        last_life = stored_between(final_begun, None)
        assert final["dmm_events_total"] == last_life["events"]
        assert final.get("dmm_rejected_total", 0) == last_life["rejected"]
        assert final.get("dmm_duplicates_total", 0) == last_life["duplicates"]
        assert final.get("dmm_detector_errors_total", 0) == 0

        # The kills really hit a stream in flight: progress moved between kills and work remained.
        in_flight = [k for k in kills if 0 <= k["processed_at_kill"] < expected.lines - 1]
        assert len(in_flight) >= 3, kills
        assert any(spilled), spilled  # some killed worker held legs on disk, damaged before the next one began
        entries = log_entries(stack.worker_log)
        assert not [e for e in entries if e.get("level") == "critical"], "a worker exited on an unexpected error"
        assert stack.worker.poll() is None
        print(
            f"\ncrash test seed={SEED}: kills={kills}\n  lines={expected.lines} counts={counts} "
            f"alerts={len(reference)} final redelivered={final.get('dmm_redelivered_total', 0):.0f} "
            f"metrics per incarnation={[int(i['metrics'].get('dmm_events_total', 0)) for i in incarnations]} "
            f"took {time.monotonic() - started:.1f}s"
        )


class Crash(BaseException):
    """Stands for SIGKILL inside the pipeline: not an Exception, so nothing catches it."""


class CrashingStore:
    """Test double around a real ChdbStore: a batch staged while armed dies (raises Crash) right after its
    statements through `after_table` ran (the embedded store writes a batch as one multi-statement query)."""

    def __init__(self, store: ChdbStore, after_table: str) -> None:
        self.inner = store
        self.database = store.database
        self.after_table = after_table
        self.armed = False

    def stage(self, writes: Sequence[Write]) -> Staged:
        tables = [write.table for write in writes]
        if not self.armed or self.after_table not in tables:
            return self.inner.stage(writes)
        return CutShort(self.inner.stage(writes[: tables.index(self.after_table) + 1]), self.after_table)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class CutShort:
    """The first statements of a batch's write, then the crash."""

    def __init__(self, staged: Staged, table: str) -> None:
        self.staged, self.table = staged, table
        self.pending = staged.pending

    def write(self) -> list[tuple[str, float]]:
        self.staged.write()
        raise Crash(self.table)

    def close(self) -> None:
        self.staged.close()


@pytest.mark.slow
@pytest.mark.parametrize("after_table", ["alerts", "listings", "usage", "heartbeats"])
def test_crash_between_table_writes_replays_like_an_uninterrupted_run(tmp_path: Path, after_table: str) -> None:
    """A batch cut short between two table writes, then replayed by a fresh pipeline from the store.

    The partly written rows must be recognised (not stored or counted again) and must not move
    the restored watermark past messages still to be replayed (which would flag them late and
    drop them from market_1m). Compared with one clean pass: same rows, late flags and windows.
    """
    path = tmp_path / "market.jsonl"
    build_market(path, minutes=36, rate=2.0)
    lines = path.read_bytes().split(b"\n")[:-1]
    settings = settings_for(tmp_path)
    topic = settings.kafka.events_topic
    messages = [Message(topic, 0, i, line_key(v), v) for i, v in enumerate(lines)]

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    def snapshot(store: ChdbStore) -> list[dict]:
        parts = [
            f"SELECT 'e' AS t, toInt64(src_offset) AS n, toUInt64(late) AS v FROM datamarket.{t}" for t in EVENT_TABLES
        ]
        parts += [
            "SELECT 'w', toInt64(toUnixTimestamp(window_start)), sum(trades) FROM datamarket.market_1m FINAL "
            "GROUP BY window_start",
            "SELECT 'r', src_offset, 0 FROM datamarket.rejected_events",
            "SELECT 'd', src_offset, 0 FROM datamarket.duplicate_events",
        ]
        return store.rows("SELECT * FROM (" + " UNION ALL ".join(parts) + ") ORDER BY t, n")

    async def run(store: ChdbStore, crash: str | None) -> None:
        crashing = CrashingStore(store, crash or "")
        pipeline = Pipeline(settings, crashing, publish)
        pipeline.restore()
        batch, crashed = 2500, False  # a batch spans more than the allowed lateness of event time
        for start in range(0, len(messages), batch):
            crashing.armed = bool(crash) and start >= 2 * batch and not crashed
            try:
                await pipeline.handle(messages[start : start + batch])
            except Crash:
                crashed = True
                # A new incarnation: state from the store, redelivery from the last acknowledged batch.
                pipeline = Pipeline(settings, crashing, publish)
                pipeline.restore()
                assert pipeline.progress.stray or crash == "alerts", "the cut-short batch left rows above the mark"
                await pipeline.handle(messages[start - batch : start + batch])
            await pipeline.flush()
        assert crashed or not crash, f"no batch wrote {crash}"

    snapshots = []
    for name, crash in (("clean", None), ("cut", after_table)):
        store = ChdbStore(tmp_path / name)  # one embedded store per process at a time
        try:
            store.apply_schema()
            asyncio.run(run(store, crash))
            snapshots.append(snapshot(store))
        finally:
            store.close()
    assert snapshots[1] == snapshots[0]
