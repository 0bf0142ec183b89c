"""Fetches taken in bulk (`streams.bulk_fetch`) give exactly the records aiokafka's own path gives, on a real
broker: same offsets, keys and values, in order, whatever `max_records` cuts, wherever a fetch begins."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from settings import KafkaSettings
from streams.bulk_fetch import send_next_fetch, take_in_bulk
from streams.pipeline import Message

RECORDS = 3000


async def _produce(kafka: KafkaSettings, topic: str) -> None:
    """Many small record batches (a small batch size), with keyless records and empty values among them."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, max_batch_size=2048)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                value=None if n % 97 == 0 else f'{{"n":{n},"pad":"{"x" * (n % 50)}"}}'.encode(),
                key=None if n % 7 == 0 and n % 97 else f"K{n % 13}".encode(),
                partition=0,
            )
            for n in range(RECORDS)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


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
                taken.append((record.topic, record.partition, record.offset, record.key, record.value))
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
    assert [offset for _, _, offset, _, _ in bulk] == list(range(start, RECORDS))


def _fetches_sent(consumer: AIOKafkaConsumer) -> int:
    """Fetch requests written to the broker and not yet answered."""
    connections = consumer._client._conns.values()
    return sum(type(request).__name__.startswith("FetchRequest") for c in connections for _, request, _ in c._requests)


async def _next_fetch_sent(kafka: KafkaSettings, topic: str, before_processing: bool) -> int:
    """Fetch requests on their way when the processing of a drained fetch's batch would begin."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        take_in_bulk(consumer)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        assert len((await consumer.getmany(timeout_ms=5000))[tp]) == RECORDS  # the whole topic, one fetch
        if before_processing:
            await send_next_fetch(consumer)
        return _fetches_sent(consumer)
    finally:
        await consumer.stop()


def test_the_next_fetch_is_requested_before_a_batch_is_processed(kafka: KafkaSettings) -> None:
    """While a batch is processed the loop runs nothing else: without `send_next_fetch`, the next fetch would
    only be asked for at the next `getmany`, the broker idle meanwhile."""
    topic = kafka.events_topic
    asyncio.run(_produce(kafka, topic))
    assert asyncio.run(_next_fetch_sent(kafka, topic, before_processing=False)) == 0
    assert asyncio.run(_next_fetch_sent(kafka, topic, before_processing=True)) == 1
