"""The duplicate index: exact answers from digest runs (each identity with what it said: its content digest),
forgetting by event time, and a restore from the real store whose SQL digest must equal the Python one (or every
duplicate after a restart would pass as new) and whose stored content digests must come back (or every
conflicting resend after a restart would pass as a duplicate)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from models import EVENT_ADAPTER
from settings import Settings
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore
from streams.dedup import HOUR_MS, EventIndex
from streams.pipeline import Pipeline
from streams.records import Message
from tests.support.events import TOPIC, fixture

pytestmark = pytest.mark.integration

START_MS = 1_795_000_000_000
DAY_MS = 86_400_000


def said(offset: int) -> int:
    """A content digest per offset, the top bit set on every other one (uint64 beyond int64 must round-trip)."""
    return (offset + 1) | (offset % 2) << 63


def remember(index: EventIndex, batches: list[list[tuple[tuple[str, str], int, int]]]) -> None:
    """Batches of (key, offset, occurred ms), each begun, added and settled as the pipeline does: every other
    batch names each key's position among those begun (its digest is taken from there), the others do not."""
    for number, batch in enumerate(batches):
        with index.batch([key for key, _, _ in batch]) as identities:
            for position in reversed(range(len(batch))):  # any order: the position, not the order, finds the digest
                key, offset, at = batch[position]
                identities.add(key, 0, offset, at, said(offset), position if number % 2 else -1)


def test_identities_are_found_across_batches_hours_and_merged_runs_and_never_invented() -> None:
    index = EventIndex(horizon_ms=DAY_MS)
    batches = [
        [(("SHDEX", f"E-{b}-{n}"), b * 1000 + n, START_MS + b * HOUR_MS // 3 + n) for n in range(1000)]
        for b in range(12)  # four hours, several runs per hour merged as they grow
    ]
    remember(index, batches)
    probe = [("SHDEX", "E-0-0"), ("SHDEX", "E-7-999"), ("BJDEX", "E-7-999"), ("SHDEX", "E-12-0")]
    with index.batch(probe) as identities:
        assert [identities.get(key) for key in probe] == [(0, 0, said(0)), (0, 7999, said(7999)), None, None]
    assert len(index) == 12_000


def test_a_batch_sees_its_own_earlier_events_before_they_are_settled() -> None:
    index = EventIndex(horizon_ms=DAY_MS)
    with index.batch([("SHDEX", "A"), ("SHDEX", "A")]) as identities:
        assert identities.get(("SHDEX", "A")) is None
        identities.add(("SHDEX", "A"), 3, 42, START_MS, 2**64 - 1)
        assert identities.get(("SHDEX", "A")) == (3, 42, 2**64 - 1)
    assert len(index) == 1  # folded in as the batch ended


def test_identities_older_than_the_horizon_behind_the_watermark_are_forgotten_to_the_millisecond() -> None:
    index = EventIndex(horizon_ms=DAY_MS)
    remember(index, [[(("SHDEX", "OLD"), 0, START_MS), (("SHDEX", "NEWER"), 1, START_MS + 1)]])
    index.prune(START_MS + DAY_MS + 1)  # OLD is now just outside the horizon, NEWER just inside
    with index.batch([("SHDEX", "OLD"), ("SHDEX", "NEWER")]) as identities:
        assert identities.get(("SHDEX", "OLD")) is None and identities.get(("SHDEX", "NEWER")) == (0, 1, said(1))
    index.prune(START_MS + DAY_MS + 2 * HOUR_MS)  # the whole hour is behind: its runs are dropped
    assert len(index) == 0


def test_a_restart_on_the_real_store_still_counts_a_resent_event_as_a_duplicate(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    try:
        first = Pipeline(Settings(), store, publish, topic_id="log-1")
        first.restore()
        asyncio.run(
            first.handle([Message(TOPIC, 0, 0, None, fixture("listing")), Message(TOPIC, 0, 1, None, fixture("trade"))])
        )
        again = Pipeline(Settings(), store, publish, topic_id="log-1")
        again.restore()  # identities come back as digests computed by ClickHouse, with what each said
        assert len(again.index) == 2
        trade = EVENT_ADAPTER.validate_json(fixture("trade"))
        with again.index.batch([trade.key]) as identities:
            assert identities.get(trade.key) == (0, 1, trade.content_digest)
        asyncio.run(
            again.handle([Message(TOPIC, 0, 2, None, fixture("trade")), Message(TOPIC, 0, 3, None, fixture("listing"))])
        )
        duplicates = store.rows("SELECT src_offset, first_offset FROM datamarket.duplicate_events ORDER BY src_offset")
        assert [(int(r["src_offset"]), int(r["first_offset"])) for r in duplicates] == [(2, 1), (3, 0)]
        assert StateReader(store).identity_digests(0).num_rows == 2
    finally:
        store.close()


def test_first_copies_name_each_identitys_first_place_in_the_batch_or_none_if_remembered() -> None:
    index = EventIndex(horizon_ms=DAY_MS)
    remember(index, [[(("SHDEX", "OLD"), 0, START_MS)]])
    keys = [("SHDEX", "B"), ("SHDEX", "A"), ("SHDEX", "OLD"), ("BJIDEX", "A"), ("SHDEX", "A"), ("SHDEX", "B")]
    with index.batch(keys) as identities:
        # Places in the batch, not the order given: the second key given comes first, the first one last but one.
        first = identities.first_copies(np.array([40, 10, 20, 30, 15, 35]))
    assert first.tolist() == [5, 1, -1, 3, 1, 5]
