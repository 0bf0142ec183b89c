"""Fetches taken in bulk (`streams.bulk_fetch`) give exactly the records aiokafka's own path gives, on a real
broker: same offsets, keys, values and headers, in order, whatever `max_records` cuts, wherever a fetch begins."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.fetcher import PartitionRecords

from settings import KafkaSettings
from streams.bulk_fetch import take_in_bulk
from streams.records import Message

pytestmark = pytest.mark.integration

RECORDS = 3000


async def _produce(kafka: KafkaSettings, topic: str) -> None:
    """Many small record batches (a small batch size), with keyless records, empty values and records with headers
    (a producer's signature, a header without value, none) among them."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, max_batch_size=2048)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                value=None if n % 97 == 0 else f'{{"n":{n},"pad":"{"x" * (n % 50)}"}}'.encode(),
                key=None if n % 7 == 0 and n % 97 else f"K{n % 13}".encode(),
                partition=0,
                headers=_headers(n),
            )
            for n in range(RECORDS)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _headers(n: int) -> list[tuple[str, bytes | None]] | None:
    """Record n's headers: a signature's two, one without a value, or none."""
    if n % 3 == 0:
        return None
    if n % 3 == 1:
        return [("dm-key", b"k1"), ("dm-sig", f"{n:064x}".encode())]
    return [("trace", None)]


async def _consume(kafka: KafkaSettings, topic: str, start: int, max_records: int, bulk: bool) -> list[tuple]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=16384
    )
    await consumer.start()
    try:
        if bulk:
            take_in_bulk(consumer)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        taken: list[tuple] = []
        while len(taken) < RECORDS - start:
            fetched = await consumer.getmany(timeout_ms=2000, max_records=max_records)
            assert fetched, "the broker holds more records"
            for record in fetched[tp]:
                assert isinstance(record, Message) == bulk  # the bulk path is the one taken (or not)
                headers = tuple(record.headers)  # aiokafka's a tuple, the bulk path's the record batch's list
                taken.append((record.topic, record.partition, record.offset, record.key, record.value, headers))
            # The consumer's position follows the records handed over (what a commit or a rebalance reads).
            assert await consumer.position(tp) == taken[-1][2] + 1
        return taken
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("start", "max_records"), [(0, 100_000), (0, 333), (1234, 97), (2999, 5)])
def test_bulk_takes_give_what_aiokafka_gives(kafka: KafkaSettings, start: int, max_records: int) -> None:
    """`start` 1234: a fetch that begins inside a record batch (its first records are skipped); `max_records`
    smaller than a fetch: takes that stop inside a batch and go on from there."""
    topic = kafka.events_topic
    asyncio.run(_produce(kafka, topic))
    bulk = asyncio.run(_consume(kafka, topic, start, max_records, bulk=True))
    plain = asyncio.run(_consume(kafka, topic, start, max_records, bulk=False))
    assert bulk == plain
    assert [offset for _, _, offset, _, _, _ in bulk] == list(range(start, RECORDS))
    assert [headers for *_, headers in bulk if headers] == [tuple(_headers(n)) for n in range(start, RECORDS) if n % 3]


def test_a_fetch_taken_in_bulk_is_freed_without_the_cyclic_gc(kafka: KafkaSettings) -> None:
    """The worker's GC thresholds make full collections rare: a fetch that only the cyclic GC could free would
    keep its raw buffer, and the worker would grow by every byte it ever fetched. Once taken, a fetch's
    `PartitionRecords` must go with its last reference."""
    topic = kafka.events_topic
    asyncio.run(_produce(kafka, topic))
    gc.collect()
    gc.disable()
    try:
        asyncio.run(_consume(kafka, topic, 0, 100_000, bulk=True))  # many fetches: 16 KiB each
        left = [o for o in gc.get_objects() if isinstance(o, PartitionRecords)]
    finally:
        gc.enable()
    assert left == []
