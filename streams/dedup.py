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

import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
from rocksdict import ColumnFamily, Rdict, WriteBatch

from sinks.clickhouse.state import LogProgress, StateReader, identity_digest
from streams.kept_state import DATABASE
from streams.local_state import HOUR_MS, SPAN_HOURS, LocalDB

_PARTITION_BITS = 20  # where an identity was first stored, packed in one int: offset << 20 | partition
BITS_PER_KEY = 15  # of filter per identity a span is sized for: ~0.16 % false positives per span, 1.9 bytes each
GROWTH = 16  # a span's next filter is at most this many times its last (see `EventIndex._filter`)
# What the disk holds per identity (key: its 16-byte digest): where it was first stored, its event time (ms
# since its span began) and what it said.
_VALUE = np.dtype([("place", "<i8"), ("ms", "<u4"), ("content", "<u8")])

Key = tuple[str, str]
# Where an identity was first stored, and what it said: (partition, offset, content digest; 0: not known, a row
# stored before content digests, taken as saying the same as any resend).
First = tuple[int, int, int]


def _bits(half: np.ndarray) -> np.ndarray:
    """The four bits (of 64) a digest half sets in its filter word: from its top 24 bits (its low bits pick the
    word), computed once per batch for every span's filter."""
    mask = np.zeros(len(half), np.uint64)
    for shift in (58, 52, 46, 40):
        mask |= np.uint64(1) << ((half >> np.uint64(shift)) & np.uint64(63))
    return mask


class _Filter:
    """A blocked Bloom filter in numpy: each identity sets four bits in one 64-bit word picked by each half of
    its digest, so a batch is added and probed with two gathers a key and no Python per key."""

    __slots__ = ("capacity", "words")

    def __init__(self, capacity: int, bits_per_key: int) -> None:
        self.capacity = capacity
        self.words = np.zeros(max(1, -(-capacity * bits_per_key // 64)), np.uint64)

    def add(self, hi: np.ndarray, lo: np.ndarray, hi_bits: np.ndarray, lo_bits: np.ndarray) -> None:
        size = np.uint64(len(self.words))
        np.bitwise_or.at(self.words, hi % size, hi_bits)
        np.bitwise_or.at(self.words, lo % size, lo_bits)

    def may_hold(self, hi: np.ndarray, lo: np.ndarray, hi_bits: np.ndarray, lo_bits: np.ndarray) -> np.ndarray:
        size = np.uint64(len(self.words))
        first = (self.words[hi % size] & hi_bits) == hi_bits
        held: np.ndarray = first & ((self.words[lo % size] & lo_bits) == lo_bits)
        return held


@dataclass(slots=True)
class _Span:
    """The identities of one span of event time: filters in RAM (another, sized for the rest of the span, each
    time the last one is full: `EventIndex._filter`), the exact entries in their own column family on disk."""

    name: str
    column: Rdict
    handle: ColumnFamily
    filters: list[_Filter]
    count: int = 0
    filled: int = 0  # identities in the last filter
    earliest_ms: int = SPAN_HOURS * HOUR_MS  # the event times seen, ms into the span: how much of it came yet
    latest_ms: int = 0

    def expected(self) -> int:
        """The identities the whole span would hold at the rate seen so far (a worker may start mid-span)."""
        seen_ms = max(self.latest_ms - self.earliest_ms, HOUR_MS // 60)
        return self.count * SPAN_HOURS * HOUR_MS // min(seen_ms, SPAN_HOURS * HOUR_MS)

    def may_hold(self, hi: np.ndarray, lo: np.ndarray, hi_bits: np.ndarray, lo_bits: np.ndarray) -> np.ndarray:
        maybe = self.filters[0].may_hold(hi, lo, hi_bits, lo_bits)
        for more in self.filters[1:]:
            maybe |= more.may_hold(hi, lo, hi_bits, lo_bits)
        return maybe


@dataclass(slots=True)
class Probes:
    """How lookups went: identities probed, and (identity, span) pairs the filters sent to disk."""

    keys: int = 0
    disk: int = 0


class EventIndex:
    """`(exchange_id, event_id)` -> where it was first stored and what it said, for `horizon_ms` of event time.

    A day of identities at market rates is hundreds of millions, so RAM holds only a Bloom filter per span of
    event time (~2 bytes an identity) and the exact entries sit in RocksDB under `state_dir` (a directory of
    this index's own, wiped when it goes: the store is the truth, rebuilt from on `restore`). A batch's
    identities are probed at once: every filter first, the disk only for those a filter may hold, so a false
    positive costs a read and never an answer. Spans whose every moment is behind the horizon are dropped
    whole (filter and column family). A batch remembers its first-seen identities through `batch`, which
    writes them as it ends.
    """

    def __init__(
        self,
        horizon_ms: int,
        state_dir: Path | None = None,
        *,
        min_keys: int = 1 << 16,
        bits_per_key: int = BITS_PER_KEY,
    ) -> None:
        """`min_keys`: the smallest filter (a span is first sized like the largest one kept, at least this)."""
        self.horizon_ms = horizon_ms
        self.probes = Probes()
        self._min_keys, self._bits_per_key = min_keys, bits_per_key
        self._spans: dict[int, _Span] = {}
        self._size = 0
        self._cutoff_ms = -(2**62)  # identities older than this are forgotten (the horizon behind the watermark)
        self._local = LocalDB(state_dir, "dedup")
        self.path = self._local.path

    def batch(self, keys: Sequence[Key]) -> IdentityBatch:
        """A batch's identities (`keys`: its events', in the order their positions refer to), looked up at once
        in what earlier batches remembered; `with` it, and what it remembers is folded in as it ends."""
        return IdentityBatch(self, keys)

    def prune(self, watermark_ms: int) -> None:
        """Forget identities whose event time is more than the horizon behind the watermark (their span's
        filter and disk entries once the whole span is behind; until then each is checked on a hit)."""
        self._cutoff_ms = max(self._cutoff_ms, watermark_ms - self.horizon_ms)
        for number in [n for n in self._spans if (n + 1) * SPAN_HOURS * HOUR_MS <= self._cutoff_ms]:
            span = self._spans.pop(number)
            self._size -= span.count
            self._local.drop(span.name)

    def __len__(self) -> int:
        return self._size

    def ram_bytes(self) -> int:
        """What the index holds in RAM: its filters, RocksDB's memtables, block cache and table files' indexes."""
        filters = sum(f.words.nbytes for span in self._spans.values() for f in span.filters)
        held = ("rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-table-readers-mem")
        rocksdb = sum(span.column.property_int_value(name) or 0 for span in self._spans.values() for name in held)
        return filters + rocksdb + self._local.cache.get_usage()

    def disk_bytes(self) -> int:
        """What the index holds on disk: its column families' table files."""
        return sum(span.column.property_int_value("rocksdb.total-sst-files-size") or 0 for span in self._spans.values())

    def close(self) -> None:
        """Close the disk tier and remove its directory (also done when the index is collected)."""
        self._local.close()

    def restore(self, state: StateReader, watermark_ms: int) -> None:
        """Rebuild from the store into fresh spans, each filter sized to its span's count, read an hour at a time
        (a day of identities in one Arrow table would be ~50 bytes each)."""
        for number in list(self._spans):
            self._local.drop(self._spans.pop(number).name)
        self._size = 0
        self._cutoff_ms = watermark_ms - self.horizon_ms
        span_ms = SPAN_HOURS * HOUR_MS
        for number, count in sorted(state.identity_counts(self._cutoff_ms, span_ms).items()):
            self._span(number, count)
            start, end = max(self._cutoff_ms, number * span_ms), (number + 1) * span_ms
            while start < end:
                until = min(start // HOUR_MS * HOUR_MS + HOUR_MS, end)
                self._fold_table(state.identity_digests(start, until))
                start = until

    def keep(self, directory: Path) -> None:
        """Leave the index in `directory` for a later start (`streams.kept_state`): its RocksDB directory, each
        filter as a `.npy` file and the spans' figures. The index is closed."""
        spans = []
        for number, span in self._spans.items():
            for i, kept in enumerate(span.filters):
                np.save(directory / f"{span.name}-{i}.npy", kept.words, allow_pickle=False)
            spans.append(
                {
                    "number": number,
                    "capacities": [kept.capacity for kept in span.filters],
                    **{name: getattr(span, name) for name in ("count", "filled", "earliest_ms", "latest_ms")},
                }
            )
        layout = {"bits_per_key": self._bits_per_key, "spans": spans}
        (directory / "spans.json").write_text(json.dumps(layout), encoding="utf-8")
        self._local.keep(directory / DATABASE, [span.column for span in self._spans.values()])
        self._spans, self._size = {}, 0

    def take(self, directory: Path, watermark_ms: int) -> None:
        """Instead of `restore`: the index a graceful stop kept in `directory` (checked by `streams.kept_state`
        as built from what the store holds now). Raises if it cannot be read whole; the caller then restores."""
        layout = json.loads((directory / "spans.json").read_text(encoding="utf-8"))
        if layout["bits_per_key"] != self._bits_per_key:
            raise ValueError("kept with another filter size")
        taken = LocalDB(self._local.path.parent, "dedup", taken=directory / DATABASE)
        spans: dict[int, _Span] = {}
        for figures in layout["spans"]:
            name = f"span-{figures['number']}"
            filters = []
            for i, capacity in enumerate(figures["capacities"]):
                kept = _Filter(capacity, self._bits_per_key)
                words = np.load(directory / f"{name}-{i}.npy", allow_pickle=False)
                if words.dtype != kept.words.dtype or words.shape != kept.words.shape:
                    raise ValueError(f"filter {name}-{i} is not of its span's size")
                kept.words = words
                filters.append(kept)
            column, handle = taken.existing(name)
            spans[figures["number"]] = _Span(
                name, column, handle, filters,
                **{key: int(figures[key]) for key in ("count", "filled", "earliest_ms", "latest_ms")},
            )
        self._local.close()
        self._local, self.path, self._spans = taken, taken.path, spans
        self._size = sum(span.count for span in spans.values())
        self._cutoff_ms = -(2**62)
        self.prune(watermark_ms)

    def _fold_table(self, table: pa.Table) -> None:
        if table.num_rows:
            digest = table.column("digest").combine_chunks()
            raw = np.frombuffer(digest.buffers()[1], np.uint8)[digest.offset * 16 : (digest.offset + len(digest)) * 16]
            partition = _numpy(table, "src_partition")
            packed = _numpy(table, "src_offset") << _PARTITION_BITS | partition
            content = table.column("content_digest").combine_chunks().to_numpy(zero_copy_only=False)
            self._fold(raw.reshape(-1, 16), packed, _numpy(table, "occurred_ms"), content.astype(np.uint64))

    def _probe(
        self, keys: Sequence[Key], digests: Sequence[bytes], hi: np.ndarray, lo: np.ndarray, places: dict[Key, First]
    ) -> np.ndarray:
        """Which of `keys` (digested as `digests`, halves `hi`, `lo`) are remembered: their first places into
        `places`. Every span's filter for the whole batch, then one batched read per span of those it may hold."""
        found = np.zeros(len(keys), np.bool_)
        if not keys or not self._size:
            return found
        self.probes.keys += len(keys)
        hi_bits, lo_bits = _bits(hi), _bits(lo)
        for number, span in self._spans.items():
            maybe = np.flatnonzero(span.may_hold(hi, lo, hi_bits, lo_bits)).tolist()
            if not maybe:
                continue
            self.probes.disk += len(maybe)
            read = cast("list[bytes | None]", span.column.get([digests[i] for i in maybe]))
            hits = [(i, value) for i, value in zip(maybe, read, strict=True) if value is not None]
            if not hits:
                continue
            values = np.frombuffer(b"".join(value for _, value in hits), _VALUE)
            began_ms = number * SPAN_HOURS * HOUR_MS
            for (i, _), (packed, ms, content) in zip(hits, values.tolist(), strict=True):
                if began_ms + ms >= self._cutoff_ms:
                    places[keys[i]] = (packed & ((1 << _PARTITION_BITS) - 1), packed >> _PARTITION_BITS, content)
                    found[i] = True
        return found

    def _fold(self, digests: np.ndarray, packed: np.ndarray, ms: np.ndarray, content: np.ndarray) -> None:
        """Remember identities (`digests`: n x 16 bytes): into their spans' filters, and written to disk."""
        span_ms = SPAN_HOURS * HOUR_MS
        numbers = ms // span_ms
        for number in np.unique(numbers).tolist():
            mine = np.flatnonzero(numbers == number)
            span = self._span(number, len(mine))
            halves = np.ascontiguousarray(digests[mine]).view(">u8").astype(np.uint64)
            order = np.argsort(halves[:, 0])  # in key order: RocksDB inserts a sorted batch twice as fast
            hi, lo = halves[order, 0], halves[order, 1]
            self._filter(span, len(mine)).add(hi, lo, _bits(hi), _bits(lo))
            values = np.empty(len(mine), _VALUE)
            values["place"], values["ms"], values["content"] = packed[mine], ms[mine] - number * span_ms, content[mine]
            span.earliest_ms = min(span.earliest_ms, int(values["ms"].min()))
            span.latest_ms = max(span.latest_ms, int(values["ms"].max()))
            writes = WriteBatch(raw_mode=True)
            writes.set_default_column_family(span.handle)
            keys = np.stack((hi, lo), axis=1).astype(">u8").view("V16").ravel().tolist()  # bytes, no Python each
            deque(map(writes.put, keys, values[order].view(f"V{_VALUE.itemsize}").tolist()), maxlen=0)
            self._local.write(writes)
            span.count += len(mine)
            self._size += len(mine)

    def _span(self, number: int, arriving: int) -> _Span:
        span = self._spans.get(number)
        if span is None:
            name = f"span-{number}"
            largest = max((s.expected() for s in self._spans.values()), default=0)  # traffic is steady
            capacity = max(self._min_keys, largest, arriving)
            column, handle = self._local.column(name)
            span = _Span(name, column, handle, [_Filter(capacity, self._bits_per_key)])
            self._spans[number] = span
        return span

    def _filter(self, span: _Span, arriving: int) -> _Filter:
        """The span's filter with room for `arriving` more: once the last is full, a new one sized for what the span
        is still expected to hold at the rate seen (`_Span.expected`), at least twice the last and at most `GROWTH`
        times it (a burst early in a span must not reserve a whole span's filter). Doubling alone left a fresh
        worker's first span with up to twice the filter it needed, added a step at a time all along the span."""
        last = span.filters[-1]
        if span.filled + arriving > last.capacity:
            still = span.expected() - span.count
            capacity = max(arriving, min(max(still, 2 * last.capacity), GROWTH * last.capacity))
            last = _Filter(capacity, self._bits_per_key)
            span.filters.append(last)
            span.filled = 0
        span.filled += arriving
        return last


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
        self._found = index._probe(keys, self._digests, self._hi, self._lo, self._places)  # per key: remembered before
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
            self._index._fold(listed[added[:, 3]], packed, added[:, 2], added[:, 4].astype(np.uint64))
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
