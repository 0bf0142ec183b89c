"""The log identity the worker's progress marks are tied to, asked of a real (Tansu) broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.errors import UnknownTopicOrPartitionError

from dmm.broker import EmbeddedBroker, free_port
from settings import KafkaSettings
from streams.kafka_client import ensure_topics, topic_id

pytestmark = pytest.mark.integration


def test_a_topic_keeps_its_id_and_a_new_broker_gives_its_log_another(kafka: KafkaSettings, tmp_path: Path) -> None:
    first = topic_id(kafka, kafka.events_topic)
    assert first and first.strip("0-")
    assert topic_id(kafka, kafka.events_topic) == first
    with EmbeddedBroker(port=free_port(), log_dir=tmp_path) as fresh:
        again = KafkaSettings(bootstrap=fresh.bootstrap, topic_prefix=kafka.topic_prefix)
        ensure_topics(again)
        assert topic_id(again, again.events_topic) not in ("", first)


def test_a_topic_the_broker_does_not_know_is_an_error_not_an_empty_id(kafka: KafkaSettings) -> None:
    # An empty id would share the marks of every log without one: a new log's first offsets would be skipped.
    with pytest.raises(UnknownTopicOrPartitionError, match=r"no\.such\.topic"):
        topic_id(kafka, "no.such.topic", timeout_s=1.0)
