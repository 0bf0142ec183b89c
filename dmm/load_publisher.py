"""Live load for the benchmark: messages paced to their event time, handed to the broker as whole record batches.

`dmm bench --live-rate 10000` must *offer* 10,000 events a second to measure the worker's lag at that rate.
Sent one `send()` at a time through kafka-python, the bench's own publisher reached only 6,000–7,300 of them
on a 2-core VM (about 150 µs of Python a message, on the cores the worker and the broker need). Here every
message due by now goes into one aiokafka record batch per partition, so a message costs an append, not a
request of its own; the partition is the one the exchanges' producer (`dmm.producer`) would choose for its
key (murmur2, as kafka-python and the Java client), so the order per key is the same. What is due is sent
every `linger_ms` at most (5 ms: the Java producer's default `linger.ms` since Kafka 4.0), not every 0.1 ms
as each message falls due: ~10,000 produce requests a second of a few messages cost the broker and this
process a core between them on the 2-core VM, beside the worker being measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from dmm.simulator.wire import Message
from settings import KafkaSettings
from streams.kafka_client import aiokafka_options

_PARTITIONER = DefaultPartitioner()
_BATCH_BYTES = 1024 * 1024  # what is due at once, in batches of up to this (a late start makes a backlog)


async def publish_paced(
    kafka: KafkaSettings, messages: Sequence[Message], linger_ms: float = 5.0
) -> tuple[list[float], list[float]]:
    """Publish `messages` (in event-time order) to the events topic, each no earlier than its event time (the
    wall clock: live traffic is stamped with its due send time) and what is due every `linger_ms` at most, and
    wait until the broker has them all. The producer connects first, so its start-up delays no message. Returns,
    per message, when it was handed to the producer (epoch ms) and how many seconds after its event time that
    was."""
    producer = AIOKafkaProducer(**aiokafka_options(kafka), acks="all", max_batch_size=_BATCH_BYTES, linger_ms=0)
    await producer.start()
    published_ms: list[float] = []
    behind: list[float] = []
    try:
        topic = kafka.events_topic
        partitions = sorted(await producer.partitions_for(topic))
        sent: list[asyncio.Future[object]] = []
        start, handed_ms = 0, 0.0
        while start < len(messages):
            now_ms = time.time() * 1000
            if now_ms < handed_ms + linger_ms:  # sent a moment ago: let more fall due
                await asyncio.sleep((handed_ms + linger_ms - now_ms) / 1000)
                continue
            end = start
            while end < len(messages) and messages[end].occurred_ms <= now_ms:
                end += 1
            if end == start:  # nothing due yet: sleep until the next message is
                await asyncio.sleep((messages[start].occurred_ms - now_ms) / 1000)
                continue
            batches: dict[int, BatchBuilder] = {}
            for message in messages[start:end]:
                partition = _PARTITIONER(message.key, partitions, partitions)
                batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
                if batch.append(key=message.key, value=message.value, timestamp=None) is None:  # full: send it
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = batches[partition] = producer.create_batch()
                    batch.append(key=message.key, value=message.value, timestamp=None)
            handed_ms = time.time() * 1000
            for partition, batch in batches.items():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            published_ms.extend([handed_ms] * (end - start))
            behind.extend((handed_ms - message.occurred_ms) / 1000 for message in messages[start:end])
            start = end
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return published_ms, behind
