"""The duplicate index (filters in RAM, exact entries on disk) against a plain dict on a seeded stream: repeats
within and across batches, conflicting resends, identities expiring past the horizon, late events older than it,
and filters so small that nearly every lookup is a false positive, which must cost a read and never an answer."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pytest

from sinks.clickhouse.state import StateReader, identity_digest
from streams.dedup import GROWTH, HOUR_MS, EventIndex, First, Key
from streams.local_state import SPAN_MS

START_MS = 1_795_000_000_000
HORIZON_MS = 6 * HOUR_MS  # short, so spans expire within the stream


class Oracle:
    """What the index must answer: each identity's first copy while its event time is within the horizon."""

    def __init__(self) -> None:
        self.first: dict[Key, tuple[First, int]] = {}
        self.cutoff_ms = -(2**62)
        self.watermark_ms = START_MS

    def get(self, key: Key) -> First | None:
        found = self.first.get(key)
        return found[0] if found is not None and found[1] >= self.cutoff_ms else None


POOL = [("SHDEX" if n % 3 else "BJDEX", f"E-{n}") for n in range(3000)]


def stream(index: EventIndex, seed: int, batches: int = 60, oracle: Oracle | None = None) -> int:
    """Run a seeded stream through `index` and the oracle, checking every lookup; returns the identities found."""
    rng, oracle, found, offset = random.Random(seed), oracle or Oracle(), 0, 0
    pool, watermark_ms = POOL, oracle.watermark_ms
    for number in range(batches):
        keys = rng.choices(pool, k=rng.randint(0, 400))  # repeats within a batch, and of earlier batches
        with index.batch(keys) as identities:
            for key in keys:
                assert identities.get(key) == oracle.get(key), (number, key)
            found += sum(identities.get(key) is not None for key in set(keys))
            fresh = [p for p, key in enumerate(keys) if oracle.get(key) is None and keys.index(key) == p]
            firsts: dict[Key, tuple[First, int]] = {}
            for p in fresh:  # event times within and beyond the horizon behind the watermark
                at = watermark_ms - rng.randint(-HOUR_MS, 8 * HOUR_MS)
                firsts[keys[p]] = ((p % 4, offset + p, rng.getrandbits(64)), at)  # what it says: any 64 bits
            if number % 2:
                for p in fresh:
                    (partition, at_offset, content), at = firsts[keys[p]]
                    identities.add(keys[p], partition, at_offset, at, content, p if number % 4 == 1 else -1)
            elif fresh:
                values = [firsts[keys[p]] for p in fresh]
                identities.add_many(
                    np.array(fresh, np.int64),
                    np.array([first[0] for first, _ in values], np.int64),
                    np.array([first[1] for first, _ in values], np.int64),
                    np.array([at for _, at in values], np.int64),
                    np.array([first[2] for first, _ in values], np.uint64),
                    {keys[p]: firsts[keys[p]][0] for p in fresh},
                )
            for key in keys:  # the batch's own first copies are found within it, as the oracle will
                assert identities.get(key) == (firsts[key][0] if key in firsts else oracle.get(key))
        oracle.first.update(firsts)
        offset += 1000
        watermark_ms += HOUR_MS // 3
        index.prune(watermark_ms)
        oracle.cutoff_ms = max(oracle.cutoff_ms, watermark_ms - HORIZON_MS)
    oracle.watermark_ms = watermark_ms
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_answers_as_a_dict_would(seed: int, tmp_path: Path) -> None:
    index = EventIndex(HORIZON_MS, tmp_path)
    assert stream(index, seed) > 1000
    assert index.probes.disk < index.probes.keys  # the filters kept most lookups off the disk


def test_false_positives_cost_reads_never_answers(tmp_path: Path) -> None:
    index = EventIndex(HORIZON_MS, tmp_path, min_keys=1, bits_per_key=1)  # filters full at once: all say maybe
    found = stream(index, seed=4)
    assert index.probes.disk > 2 * found  # most reads found nothing: false positives, answered as new


def test_a_span_s_filters_grow_to_what_it_is_expected_to_hold_not_by_doubling(tmp_path: Path) -> None:
    """400 identities a minute of event time for two hours of a four-hour span (96,000 at that rate): once the first
    filter (1,000) is full, the next is bounded at `GROWTH` times it, then one holds the rest of the span. Doubling
    made six filters for these 48,000 and kept adding them to the span's end."""
    index = EventIndex(HORIZON_MS, tmp_path, min_keys=1000)
    begun = (START_MS // SPAN_MS + 1) * SPAN_MS
    for minute in range(120):
        keys = [("SHDEX", f"S-{minute}-{n}") for n in range(400)]
        with index.batch(keys) as identities:
            for n, key in enumerate(keys):
                identities.add(key, 0, minute * 400 + n, begun + minute * 60_000 + n * 150, 1, n)
    [span] = index._spans.values()
    capacities = [kept.capacity for kept in span.filters]
    assert capacities[:2] == [1000, GROWTH * 1000] and len(capacities) == 3
    assert 90_000 <= sum(capacities) <= 100_000
    index.close()


def test_each_index_has_its_own_directory_removed_as_it_closes_and_a_dead_process_s_is_swept(tmp_path: Path) -> None:
    gone = tmp_path / "dedup-999999999-x"  # no such process
    gone.mkdir()
    first, second = EventIndex(HORIZON_MS, tmp_path), EventIndex(HORIZON_MS, tmp_path)
    assert not gone.exists() and first.path != second.path and first.path.parent == tmp_path
    assert first.path.name.startswith(f"dedup-{os.getpid()}-")
    first.close()
    assert not first.path.exists() and second.path.exists()
    second.close()


class Stored:
    """The store's answers to the index's restore questions, from what the oracle remembered."""

    def __init__(self, oracle: Oracle) -> None:
        self.rows = [(key, first, at) for key, (first, at) in oracle.first.items()]
        self.reads: list[tuple[int, int | None]] = []

    def identity_counts(self, since_ms: int, every_ms: int) -> dict[int, int]:
        return dict(Counter(at // every_ms for _, _, at in self.rows if at >= since_ms))

    def identity_digests(self, since_ms: int, until_ms: int | None = None) -> pa.Table:
        self.reads.append((since_ms, until_ms))
        rows = [row for row in self.rows if since_ms <= row[2] < (until_ms if until_ms is not None else 2**63)]
        return pa.table(
            {
                "digest": pa.array([identity_digest(*key) for key, _, _ in rows], pa.binary(16)),
                "src_partition": pa.array([first[0] for _, first, _ in rows], pa.int64()),
                "src_offset": pa.array([first[1] for _, first, _ in rows], pa.int64()),
                "occurred_ms": pa.array([at for _, _, at in rows], pa.int64()),
                "content_digest": pa.array([first[2] for _, first, _ in rows], pa.uint64()),
            }
        )


def test_a_restored_index_answers_as_the_one_it_replaces_and_goes_on_doing_so(tmp_path: Path) -> None:
    oracle = Oracle()
    stream(EventIndex(HORIZON_MS, tmp_path), seed=5, oracle=oracle)
    stored = Stored(oracle)
    index = EventIndex(HORIZON_MS, tmp_path)
    index.restore(cast(StateReader, stored), oracle.watermark_ms)
    assert len(stored.reads) > 6  # an hour at a time
    assert all(until is not None and until - since <= HOUR_MS for since, until in stored.reads)
    with index.batch(POOL) as identities:
        assert [identities.get(key) for key in POOL] == [oracle.get(key) for key in POOL]
    assert stream(index, seed=6, oracle=oracle) > 1000
