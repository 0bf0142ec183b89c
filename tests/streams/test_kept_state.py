"""State a graceful stop keeps on local disk: taken by the next start only when it is what the store holds.

Each test runs a simulated market with every alert kind through the pipeline in two halves, stopped gracefully
between them (`keep_state`), and compares the alerts and the duplicates counted with those of a run that never
stopped. Kept, lost, damaged, or made stale by another worker's progress: the outcome is the same every time;
only whether the kept state was taken differs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.anomalies import KINDS
from settings import Settings
from sinks.clickhouse.memory import MemoryState, MemoryStore
from streams import kept_state
from streams.pipeline import Pipeline
from streams.records import Message

BATCH = 50


def market() -> list[bytes]:
    """A market with every alert kind, plus resends of some of its first events near its end (duplicates the
    index must remember across the stop)."""
    simulator = MarketSimulator(
        SimulationConfig(
            seed=11, start=datetime(2026, 11, 20, 1, tzinfo=UTC), rate=8.0, duration_s=2_400.0,
            injections={kind: 2 for kind in KINDS},
        )
    )
    values = [value for _, value in simulator.messages()]
    return values + values[10:400:13]


class Worker:
    """One worker incarnation: a pipeline restored from `store`, with its local state under `state_dir`."""

    def __init__(self, store: MemoryStore, state_dir: Path, alerts: list[dict[str, Any]]) -> None:
        async def publish(topic: str, key: bytes | None, value: bytes) -> None:
            if topic == "dm.alerts":
                alerts.append(json.loads(value))

        settings = Settings(state_dir=state_dir, wash_trading_ram_legs=5)
        self.pipeline = Pipeline(settings, store, publish, topic_id="log", reader=MemoryState)
        self.pipeline.restore()

    def handle(self, values: list[bytes], start: int, end: int, total: int) -> None:
        for first in range(start, end, BATCH):
            chunk = values[first : min(first + BATCH, end)]
            messages = [Message("dm.events", 0, first + i, None, value) for i, value in enumerate(chunk)]
            asyncio.run(self.pipeline.handle(messages, {0: total}))


def outcome(store: MemoryStore, alerts: list[dict[str, Any]]) -> tuple[list[str], int]:
    """The alerts raised (kind and dedup key) and the duplicates counted."""
    return sorted(f"{alert['kind']} {alert['dedup_key']}" for alert in alerts), len(store.pylist("duplicate_events"))


@pytest.fixture(scope="module")
def values() -> list[bytes]:
    return market()


@pytest.fixture(scope="module")
def uninterrupted(values: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> tuple[MemoryStore, list[Any]]:
    """The market through one worker that never stops: its store and the alerts it raised."""
    store: MemoryStore = MemoryStore()
    alerts: list[dict[str, Any]] = []
    Worker(store, tmp_path_factory.mktemp("reference"), alerts).handle(values, 0, len(values), len(values))
    return store, alerts


@pytest.fixture(scope="module")
def reference(uninterrupted: tuple[MemoryStore, list[dict[str, Any]]]) -> tuple[list[str], int]:
    found = outcome(*uninterrupted)
    assert {alert.split()[0] for alert in found[0]} == set(KINDS) and found[1] > 0
    return found


@pytest.fixture(scope="module")
def halfway(values: list[bytes], uninterrupted: tuple[MemoryStore, list[dict[str, Any]]]) -> int:
    """Where to stop: between batches, within a wash-trading cycle (its first legs are kept, on disk, and the
    one closing it comes after the start), and before the resends of the first events."""
    position = {json.loads(value)["event_id"]: i for i, value in enumerate(values)}
    for alert in uninterrupted[1]:
        if alert["kind"] == "wash_trading":
            legs = sorted(position[event_id] for event_id in alert["event_ids"])
            cut = (legs[-1] // BATCH) * BATCH
            if cut > legs[0]:
                return cut
    raise AssertionError("no wash-trading cycle spans two batches")


def taken_as(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What each restore said of the kept state."""
    return [r.kept_state for r in caplog.records if r.getMessage() == "state restored from ClickHouse"]


def stopped_halfway(values: list[bytes], half: int, state_dir: Path, between: object = None) -> tuple[list[str], int]:
    """The market in two incarnations on one store, the first stopped gracefully at `half` (`between`: what
    happens to the local state while no worker runs)."""
    store: MemoryStore = MemoryStore()
    alerts: list[dict[str, Any]] = []
    first = Worker(store, state_dir, alerts)
    first.handle(values, 0, half, len(values))
    assert first.pipeline.keep_state()
    if callable(between):
        between()
    Worker(store, state_dir, alerts).handle(values, half, len(values), len(values))
    return outcome(store, alerts)


@pytest.mark.slow  # each of these runs the market twice through the pipeline: ~10 s
def test_a_graceful_stop_keeps_the_state_and_the_next_start_takes_it(
    values: list[bytes],
    reference: tuple[list[str], int],
    halfway: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dmm.pipeline")
    assert stopped_halfway(values, halfway, tmp_path) == reference
    assert taken_as(caplog) == ["no state kept", "taken"]
    assert not (tmp_path / kept_state.KEPT).exists()  # taken once: a crash after it rebuilds from the store


def _damage_filter(state_dir: Path) -> None:
    [filter_file, *_] = sorted((state_dir / kept_state.KEPT).rglob("*.npy"))
    data = bytearray(filter_file.read_bytes())
    data[-1] ^= 0xFF
    filter_file.write_bytes(bytes(data))


def _cut_the_manifest(state_dir: Path) -> None:
    (state_dir / kept_state.KEPT / kept_state.MANIFEST).write_text("{")


def _truncate_a_table_file(state_dir: Path) -> None:
    [table, *_] = sorted((state_dir / kept_state.KEPT).rglob("*.sst"))
    table.write_bytes(table.read_bytes()[:100])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda d: shutil.rmtree(d / kept_state.KEPT), "no state kept"),
        (_damage_filter, "its files are not as they were written"),
        (_truncate_a_table_file, "its files are not as they were written"),
        (_cut_the_manifest, "no readable manifest (JSONDecodeError)"),
    ],
    ids=["lost", "a-filter-changed", "a-table-file-cut", "manifest-unreadable"],
)
def test_lost_or_damaged_kept_state_is_rebuilt_from_the_store_with_the_same_outcome(
    values: list[bytes],
    reference: tuple[list[str], int],
    halfway: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: object,
    said: str,
) -> None:
    caplog.set_level(logging.INFO, "dmm.pipeline")
    assert stopped_halfway(values, halfway, tmp_path, lambda: damage(tmp_path)) == reference  # type: ignore[operator]
    assert taken_as(caplog) == ["no state kept", said]


@pytest.mark.slow
def test_kept_state_the_store_has_moved_past_is_not_taken(
    values: list[bytes], reference: tuple[list[str], int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another worker (its own state directory) stores more of the log while this one is stopped: what this one
    kept no longer covers the store, and the start rebuilds."""
    caplog.set_level(logging.INFO, "dmm.pipeline")
    store: MemoryStore = MemoryStore()
    alerts: list[dict[str, Any]] = []
    third = len(values) // 3 // BATCH * BATCH
    first = Worker(store, tmp_path / "mine", alerts)
    first.handle(values, 0, third, len(values))
    assert first.pipeline.keep_state()
    Worker(store, tmp_path / "other", alerts).handle(values, third, 2 * third, len(values))
    Worker(store, tmp_path / "mine", alerts).handle(values, 2 * third, len(values), len(values))
    assert outcome(store, alerts) == reference
    said = taken_as(caplog)
    assert said == ["no state kept", "no state kept", said[2]]
    assert said[2] == "built from other marks than the store holds now"


def test_a_batch_processed_but_not_stored_keeps_nothing(values: list[bytes], tmp_path: Path) -> None:
    """Processed and not stored (the stop came between the two halves of a batch): the state is ahead of the
    store, so it is not kept."""
    worker = Worker(MemoryStore(), tmp_path, [])
    worker.pipeline.prepare([Message("dm.events", 0, i, None, value) for i, value in enumerate(values[:BATCH])])
    assert not worker.pipeline.keep_state()
    assert not (tmp_path / kept_state.KEPT).exists()


def test_what_a_process_that_died_while_keeping_or_taking_left_is_swept(tmp_path: Path) -> None:
    dead = 2**22 + 1  # above the kernel's largest pid: never running
    for name in (f"keeping-{dead}", f"taking-{dead}", "keeping-1"):
        (tmp_path / name / "dedup").mkdir(parents=True)
    assert kept_state.take(tmp_path, {}) == (None, "no state kept")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keeping-1"]  # pid 1 runs: not ours to remove


def test_state_kept_from_another_log_marks_or_rules_is_not_taken_and_says_which(tmp_path: Path) -> None:
    origin = {"log_id": "a", "marks": {"0": 5}, "rules": {"window_s": 86400}}

    def written(directory: Path) -> None:
        (directory / "filter.npy").write_bytes(b"bits")

    for changed, said in [
        ({"log_id": "b"}, "built from other log_id than the store holds now"),
        ({"marks": {"0": 6}, "rules": {"window_s": 3600}}, "built from other marks, rules than the store holds now"),
    ]:
        kept_state.keep(tmp_path, origin, {"part": written})
        assert kept_state.take(tmp_path, {**origin, **changed}) == (None, said)
        assert list(tmp_path.iterdir()) == []  # discarded: the start rebuilds
    kept_state.keep(tmp_path, origin, {"part": written})
    taken, said = kept_state.take(tmp_path, origin)
    assert said == "taken" and taken is not None and (taken / "part" / "filter.npy").read_bytes() == b"bits"
