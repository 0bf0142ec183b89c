"""Which messages were already accounted for: duplicates and redeliveries.

Two different things look alike. A *duplicate* is a second message carrying an
`(exchange_id, event_id)` already stored (an exchange resent it): it is counted as
a duplicate if it says the same once parsed, and rejected as `conflicting_duplicate`
if it says something else (the first stays as stored: a squatter's copy sent first
must not make the real event vanish as a "duplicate"), so the index remembers what
each identity said, as a content digest. A *redelivery* is the same Kafka message
seen again after a crash or rebalance (same partition and offset): it was already
counted, so it is skipped silently. Both indexes are rebuilt from ClickHouse on start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pyarrow as pa

from sinks.clickhouse.state import LogProgress, StateReader, identity_digest

_PARTITION_BITS = 20  # where an identity was first stored, packed in one int: offset << 20 | partition
HOUR_MS = 3_600_000

Key = tuple[str, str]
# Where an identity was first stored, and what it said: (partition, offset, content digest; 0: not known, a row
# stored before content digests, taken as saying the same as any resend).
First = tuple[int, int, int]


@dataclass(slots=True)
class _Run:
    """Identities sorted by digest, as parallel arrays: 36 bytes per identity, no Python object each."""

    hi: np.ndarray  # uint64: the digest's first half (the sort key; equal halves are told apart by `lo`)
    lo: np.ndarray  # uint64: its second half
    place: np.ndarray  # int64: offset << 20 | partition
    ms: np.ndarray  # uint32: event time, ms since the start of the run's hour
    content: np.ndarray  # uint64: what the event said (`models.content_digest`; 0: not known)

    @classmethod
    def sorted(cls, digests: np.ndarray, place: np.ndarray, ms: np.ndarray, content: np.ndarray) -> _Run:
        """`digests`: n x 16 bytes."""
        halves = digests.view(">u8").reshape(-1, 2).astype(np.uint64)
        order = np.argsort(halves[:, 0])
        return cls(halves[order, 0], halves[order, 1], place[order], ms[order], content[order])

    def merged(self, other: _Run) -> _Run:
        hi = np.concatenate((self.hi, other.hi))
        order = np.argsort(hi, kind="stable")  # timsort: two sorted runs merge in linear time
        return _Run(
            hi[order],
            np.concatenate((self.lo, other.lo))[order],
            np.concatenate((self.place, other.place))[order],
            np.concatenate((self.ms, other.ms))[order],
            np.concatenate((self.content, other.content))[order],
        )

    def find(self, hi: np.ndarray, lo: np.ndarray) -> dict[int, int]:
        """Positions of the probed digests found here -> their index in this run."""
        at = np.searchsorted(self.hi, hi)
        inside = np.minimum(at, len(self.hi) - 1)
        same_hi = self.hi[inside] == hi
        found: dict[int, int] = {}
        for i in np.flatnonzero(same_hi):
            j = int(at[i])
            while j < len(self.hi) and self.hi[j] == hi[i]:  # two digests may share a first half
                if self.lo[j] == lo[i]:
                    found[int(i)] = j
                    break
                j += 1
        return found

    def __len__(self) -> int:
        return len(self.hi)


@dataclass
class EventIndex:
    """`(exchange_id, event_id)` -> where it was first stored and what it said, for `horizon_ms` of event time.

    It holds every identity of the horizon (a day: hundreds of millions at market rates), so it
    keeps no Python object per identity: a 128-bit digest, the packed place, the event time and a
    64-bit content digest sit in sorted numpy runs per hour of event time (36 bytes each), merged
    as they grow and dropped by the hour once the horizon passes. A batch looks its identities up at
    once and remembers its first-seen ones through `batch`, which folds them in when it ends.
    """

    horizon_ms: int
    _hours: dict[int, list[_Run]] = field(default_factory=dict)
    _size: int = 0
    _cutoff_ms: int = -(2**62)  # identities older than this are forgotten (the horizon behind the watermark)

    def batch(self, keys: Sequence[Key]) -> IdentityBatch:
        """A batch's identities (`keys`: its events', in the order their positions refer to), looked up at once
        in what earlier batches remembered; `with` it, and what it remembers is folded in as it ends."""
        return IdentityBatch(self, keys)

    def prune(self, watermark_ms: int) -> None:
        """Forget identities whose event time is more than the horizon behind the watermark."""
        self._cutoff_ms = max(self._cutoff_ms, watermark_ms - self.horizon_ms)
        for hour in [h for h in self._hours if (h + 1) * HOUR_MS <= self._cutoff_ms]:
            self._size -= sum(len(run) for run in self._hours.pop(hour))

    def __len__(self) -> int:
        return self._size

    def restore(self, state: StateReader, watermark_ms: int) -> None:
        self._cutoff_ms = watermark_ms - self.horizon_ms
        table = state.identity_digests(self._cutoff_ms)
        if table.num_rows:
            digest = table.column("digest").combine_chunks()
            raw = np.frombuffer(digest.buffers()[1], np.uint8)[digest.offset * 16 : (digest.offset + len(digest)) * 16]
            partition = _numpy(table, "src_partition")
            packed = _numpy(table, "src_offset") << _PARTITION_BITS | partition
            content = table.column("content_digest").combine_chunks().to_numpy(zero_copy_only=False)
            self._fold(raw, packed, _numpy(table, "occurred_ms"), content.astype(np.uint64))

    def _probe(self, keys: Sequence[Key], hi: np.ndarray, lo: np.ndarray, places: dict[Key, First]) -> np.ndarray:
        """Which of `keys` (digested as `hi`, `lo`) are remembered: their first places into `places`."""
        found = np.zeros(len(keys), np.bool_)
        if not keys or not self._size:
            return found
        order = np.argsort(hi)  # probed in sorted order: three times faster into a large run
        hi, lo = hi[order], lo[order]
        for hour, runs in self._hours.items():
            for run in runs:
                for i, j in run.find(hi, lo).items():
                    if hour * HOUR_MS + int(run.ms[j]) >= self._cutoff_ms:
                        packed = int(run.place[j])
                        partition, offset = packed & ((1 << _PARTITION_BITS) - 1), packed >> _PARTITION_BITS
                        places[keys[order[i]]] = (partition, offset, int(run.content[j]))
                        found[order[i]] = True
        return found

    def _fold(self, digests: np.ndarray, packed: np.ndarray, ms: np.ndarray, content: np.ndarray) -> None:
        hours = ms // HOUR_MS
        for hour in np.unique(hours):
            mine = np.flatnonzero(hours == hour)
            rows = (mine[:, None] * 16 + np.arange(16)).ravel()
            offset_ms = (ms[mine] - hour * HOUR_MS).astype(np.uint32)
            run = _Run.sorted(digests[rows], packed[mine], offset_ms, content[mine])
            runs = self._hours.setdefault(int(hour), [])
            runs.append(run)
            while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):  # log-many runs per hour
                last = runs.pop()
                runs[-1] = runs[-1].merged(last)
            self._size += len(mine)


class IdentityBatch:
    """One batch's identities against the index (`EventIndex.batch`): which were remembered before it
    (`get`, `first_copies`), and which it remembers (`add`, `add_many`), folded into the index when the
    `with` block ends (dropped if it raises: the batch is not stored either)."""

    __slots__ = ("_added", "_blocks", "_digests", "_found", "_hi", "_index", "_lo", "_places", "get")

    def __init__(self, index: EventIndex, keys: Sequence[Key]) -> None:
        self._index = index
        self._digests = [identity_digest(*key) for key in keys]
        halves = np.frombuffer(b"".join(self._digests), ">u8").reshape(-1, 2).astype(np.uint64)
        self._hi, self._lo = halves[:, 0], halves[:, 1]
        self._places: dict[Key, First] = {}  # the batch's keys remembered before it, and those it added
        self._found = index._probe(keys, self._hi, self._lo, self._places)  # per key: remembered before
        # Added: (partition, offset, ms, position of its digest in `_digests`, content digest); one by one (`add`)
        # or as blocks of those five columns (`add_many`, the content as int64 bits).
        self._added: list[tuple[int, int, int, int, int]] = []
        self._blocks: list[np.ndarray] = []
        # `(partition, offset, content)` of an identity's first copy, if remembered: the dict's own `get`, so a
        # lookup per event runs no Python frame.
        self.get: Callable[[Key], First | None] = self._places.get

    def __enter__(self) -> IdentityBatch:
        return self

    def __exit__(self, failed: type[BaseException] | None, *_: object) -> None:
        if failed is None:
            self._settle()

    def first_copies(self, order: np.ndarray) -> np.ndarray:
        """Per key of the batch (`order`: where each comes in the batch), the position among the keys of the
        batch's first copy of its identity (its own: first seen), or -1 if remembered from an earlier batch."""
        hi, lo = self._hi, self._lo
        ranked = np.lexsort((order, lo, hi))  # copies of one identity together, the batch's first one first
        starts = np.ones(len(ranked), np.bool_)
        starts[1:] = (hi[ranked][1:] != hi[ranked][:-1]) | (lo[ranked][1:] != lo[ranked][:-1])
        first = np.empty(len(ranked), np.int64)
        first[ranked] = ranked[np.flatnonzero(starts)[np.cumsum(starts) - 1]]
        first[self._found[first]] = -1
        return first

    def add(self, key: Key, partition: int, offset: int, occurred_ms: int, content: int, position: int = -1) -> None:
        """Remember a first-seen identity and what it said (`content`: its content digest). `position`: its place
        among the batch's keys (its digest is taken from there), or -1 for a key the batch was not given."""
        if position < 0:
            position = len(self._digests)
            self._digests.append(identity_digest(*key))
        self._places[key] = (partition, offset, content)
        self._added.append((partition, offset, occurred_ms, position, content))

    def add_many(
        self,
        positions: np.ndarray,
        partitions: np.ndarray,
        offsets: np.ndarray,
        ms: np.ndarray,
        contents: np.ndarray,
        findable: dict[Key, First],
    ) -> None:
        """`add` for many first-seen identities at once (`positions`: among the batch's keys; `contents`: uint64).
        `findable`: those `get` must find in this batch (those with a later copy in it), with their places."""
        self._places.update(findable)
        columns = (partitions, offsets, ms, positions, contents.astype(np.uint64).view(np.int64))
        self._blocks.append(np.stack(columns, axis=1).astype(np.int64))

    def _settle(self) -> None:
        """Fold the batch's identities into the index's runs (as arrays: no Python per identity)."""
        if self._added:
            added = np.fromiter(chain.from_iterable(self._added), np.uint64, 5 * len(self._added)).reshape(-1, 5)
            self._blocks.append(added.view(np.int64))
        if self._blocks:
            added = np.concatenate(self._blocks)
            listed = np.frombuffer(b"".join(self._digests), np.uint8).reshape(-1, 16)
            packed = added[:, 1] << _PARTITION_BITS | added[:, 0]
            self._index._fold(listed[added[:, 3]].ravel(), packed, added[:, 2], added[:, 4].astype(np.uint64))
        self._added, self._blocks = [], []


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).combine_chunks().to_numpy(zero_copy_only=False), np.int64)


@dataclass
class Progress:
    """Per partition: the highest offset whose batch was completely stored, plus stray offsets above it.

    Offsets are delivered in order within a partition, so anything at or below the
    mark is a redelivery. A batch cut short by a crash leaves some rows above the
    mark; those offsets are remembered individually so they are not stored twice,
    with the event time of a stored event (0 for a rejection or duplicate): the
    watermark must only pass it when the replay reaches it, as it did first time.
    """

    topic: str
    topic_id: str = ""
    marks: dict[int, int] = field(default_factory=dict)
    stray: dict[tuple[int, int], int] = field(default_factory=dict)

    def advance(self, partition: int, last_offset: int) -> None:
        if last_offset > self.marks.get(partition, -1):
            self.marks[partition] = last_offset
        if self.stray:
            self.stray = {(p, o): ms for (p, o), ms in self.stray.items() if not (p == partition and o <= last_offset)}

    def restore(self, state: StateReader) -> LogProgress:
        """Marks of the current log only; strays are rows stored since this log was first seen."""
        restored = state.progress(self.topic, self.topic_id)
        self.marks, self.stray = restored.marks, restored.stray
        return restored
