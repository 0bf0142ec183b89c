"""The benchmark's paced publisher against a real broker: every message, each in the partition the exchanges'
producer would choose for its key and in order, none handed over before its event time."""

from __future__ import annotations

import asyncio
import time

import pytest

from dmm.broker import EmbeddedBroker
from dmm.load_publisher import publish_paced
from dmm.producer import EventProducer
from dmm.simulator.wire import Message
from settings import KafkaSettings
from streams.kafka_client import ensure_topics
from tests.support.readback import read_topic

pytestmark = pytest.mark.integration


def _topics(broker: EmbeddedBroker, prefix: str) -> KafkaSettings:
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=prefix, events_partitions=3)
    ensure_topics(kafka)
    return kafka


def test_messages_land_paced_in_the_partition_of_their_key_in_order(broker: EmbeddedBroker) -> None:
    due = int(time.time() * 1000) + 300  # the first due a little later: the publisher must wait for it
    messages = [
        Message(f"product-{n % 7}".encode(), f'{{"n": {n}}}'.encode(), due + n * 3 + (500 if n >= 40 else 0))
        for n in range(60)
    ]
    paced, reference = _topics(broker, "paced."), _topics(broker, "reference.")

    published_ms, behind = asyncio.run(publish_paced(paced, messages))
    with EventProducer(reference) as producer:
        for message in messages:
            producer.publish_raw(message.value, message.key)

    assert len(published_ms) == len(behind) == len(messages)
    assert min(behind) >= 0  # none handed over before its event time
    assert all(at >= message.occurred_ms for at, message in zip(published_ms, messages, strict=True))
    stored = [(r.partition, r.key, r.value) for r in read_topic(paced, paced.events_topic)]
    assert stored == [(r.partition, r.key, r.value) for r in read_topic(reference, reference.events_topic)]
    assert len({partition for partition, _, _ in stored}) > 1
