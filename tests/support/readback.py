"""Read a whole topic back without a consumer group, to assert exactly what the broker stored."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from settings import KafkaSettings
from streams.kafka_client import client_options


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()


def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> list[Stored]:
    """Every record of `topic` up to its current end offsets, in (partition, offset) order."""
    consumer = KafkaConsumer(
        **client_options(kafka), enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=500
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        records: list[Stored] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end offsets {end}"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(Stored(r.partition, r.offset, r.key, r.value, tuple(r.headers)) for r in batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()
