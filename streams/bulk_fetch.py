"""aiokafka's fetched records of dm.events, taken in bulk as `Message` tuples.

`AIOKafkaConsumer.getmany` walks each fetch one record at a time through a
generator and builds a `ConsumerRecord` dataclass per record: ~0.7 µs a record,
a tenth of the worker's whole budget per event. Taken here in one loop per
record batch of the fetch, straight into `Message` tuples, a record costs
~0.3 µs. The consumer, its fetcher and everything they decide (positions,
assignment checks, when to fetch again) stay aiokafka's: only how a buffered
fetch hands its records over changes, and only for fetches this module can
take exactly as aiokafka would (no deserializers, uncommitted reads, not
started yet); any other stays with aiokafka. A record's headers (a producer's
signature) are handed over as the record batch holds them, a list, where
aiokafka makes a tuple of it: the same pairs.

It leans on internals of the pinned aiokafka (see pyproject.toml): the fetcher's
buffer `Fetcher._records`, `FetchResult.getall` and `PartitionRecords`' state.
`tests/streams/test_bulk_fetch.py` takes the same fetches both ways and
compares them record by record.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from inspect import GEN_CREATED, getgeneratorstate
from itertools import chain, islice
from types import MethodType
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import errors as kafka_errors
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, FetchResult, PartitionRecords

from streams.records import Message

_new_tuple = tuple.__new__  # `Message(...)` runs a Python-level __new__; this makes the same tuple in C


def take_in_bulk(consumer: AIOKafkaConsumer) -> None:
    """From now on, every fetch the consumer buffers hands its records over in bulk (call after `start`)."""
    fetcher = consumer._fetcher
    if not isinstance(fetcher._records, _BulkBuffer):
        fetcher._records = _BulkBuffer(fetcher._records)


class _BulkBuffer(OrderedDict[Any, Any]):
    """The fetcher's buffer of fetched records per partition: a fetch hands its records over in bulk from the
    moment it arrives (its own `getall`: the fetcher tells a fetch from an error by its exact type)."""

    def __setitem__(self, tp: object, result: Any) -> None:
        if type(result) is FetchResult and _takeable(result._partition_records):
            result.getall = MethodType(_getall, result)
        super().__setitem__(tp, result)


def _takeable(records: PartitionRecords) -> bool:
    """Whether `_take` gives exactly what aiokafka's own iteration would."""
    return (
        records._key_deserializer is None
        and records._value_deserializer is None
        and records._isolation_level == READ_UNCOMMITTED
        and records._records_iterator is not None
        and getgeneratorstate(records._records_iterator) == GEN_CREATED
    )


def _getall(self: FetchResult, max_records: int | None = None) -> list[Message]:
    """`FetchResult.getall`, the records taken by `_take`."""
    tp = self._topic_partition
    if not self.check_assignment(tp) or not self.has_more():
        return []
    taken, exhausted = _take(self._partition_records, max_records)
    self._update_position()
    if exhausted:
        self._partition_records = None
        del self.getall  # the fetch is done with: no cycle through its bound method left behind
    return taken


def _take(records: PartitionRecords, max_records: int | None) -> tuple[list[Message], bool]:
    """Up to `max_records` records from where the last take stopped, as `PartitionRecords._unpack_records`
    yields them (control batches skipped, records below the fetch offset skipped, CRCs checked); returns them
    and whether the fetch is used up. The record batch under way is kept on `records` between takes."""
    topic, partition = records._tp.topic, records._tp.partition
    taken: list[Message] = []
    append = taken.append
    batch: Any
    source: Iterator[Any]
    batch, source = getattr(records, "_bulk_batch", None) or (None, iter(()))
    while max_records is None or len(taken) < max_records:
        if batch is None:
            if not records._records.has_next():
                records._bulk_batch = None
                # aiokafka's own iterator, never started here, holds `records` in its frame: a cycle that keeps
                # the fetch's buffer alive until a full collection, which the worker's GC thresholds make rare.
                # Dropped as aiokafka drops it when its iteration ends.
                records._records_iterator = None
                return taken, True
            batch = records._records.next_batch()
            if records._check_crcs and not batch.validate_crc():
                raise kafka_errors.CorruptRecordException(f"Invalid CRC - {records._tp}")
            if batch.is_control_batch:
                records.next_fetch_offset = batch.next_offset
                batch = None
                continue
            # A batch's records are iterated once, from one iterator kept across takes (it refuses a second
            # `iter`); those before the fetch offset skipped (the fetch began inside this batch).
            if batch.base_offset < records.next_fetch_offset:
                source = _from_offset(batch, records.next_fetch_offset)
            else:
                source = chain(batch)
        wanted = None if max_records is None else max_records - len(taken)
        before = len(taken)
        for record in islice(source, wanted):
            append(_new_tuple(Message, (topic, partition, record.offset, record.key, record.value, record.headers)))
        if len(taken) > before:
            records.next_fetch_offset = taken[-1].offset + 1
        if wanted is None or len(taken) - before < wanted:  # the batch ran out before the take did
            records.next_fetch_offset = batch.next_offset
            batch, source = None, iter(())
    records._bulk_batch = (batch, source) if batch is not None else None
    return taken, False


def _from_offset(batch: Iterator[Any], offset: int) -> Iterator[Any]:
    """A record batch's records from `offset` on (those before it were asked for by an earlier fetch)."""
    return (record for record in batch if record.offset >= offset)
