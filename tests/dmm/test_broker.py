"""The embedded Tansu broker and topic creation, against a real broker process."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from dmm.broker import BrokerError, EmbeddedBroker, answers_metadata, free_port
from settings import KafkaSettings
from streams.kafka_client import aiokafka_options, client_options, ensure_topics, monitor_topics

pytestmark = pytest.mark.integration


def _partition_counts(kafka: KafkaSettings) -> dict[str, int]:
    admin = KafkaAdminClient(**client_options(kafka))
    try:
        return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics()}
    finally:
        admin.close()


def test_restart_on_same_port_loses_topics(tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap="", topic_prefix="r.")
    with EmbeddedBroker(port=free_port(), log_dir=tmp_path) as broker:
        kafka = kafka.model_copy(update={"bootstrap": broker.bootstrap})
        ensure_topics(kafka)
        assert set(monitor_topics(kafka)) <= set(_partition_counts(kafka))

        broker.stop()
        assert not broker.running
        assert not answers_metadata(broker.host, broker.port)

        broker.start()
        assert answers_metadata(broker.host, broker.port)
        assert not set(monitor_topics(kafka)) & set(_partition_counts(kafka)), "memory storage should be empty"
        ensure_topics(kafka)
        assert set(monitor_topics(kafka)) <= set(_partition_counts(kafka))
    assert "listening on" in broker.log_tail()


def test_second_broker_on_a_taken_port_is_refused(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        EmbeddedBroker(port=broker.port, log_dir=tmp_path).start()


def test_ensure_topics_creates_partitions_and_is_idempotent(broker: EmbeddedBroker) -> None:
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="idem.", events_partitions=3)
    ensure_topics(kafka)
    ensure_topics(kafka)
    counts = _partition_counts(kafka)
    assert {name: counts[name] for name in monitor_topics(kafka)} == {
        "idem.dm.events": 3,
        "idem.dm.alerts": 1,
        "idem.dm.rejected": 1,
        "idem.dm.rules": 1,
    }


def test_client_options_pass_security_through() -> None:
    kafka = KafkaSettings(
        bootstrap="a:9093, b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="monitor",
        sasl_password="s3cret",
        ssl_cafile=Path("/etc/ca.pem"),
    )
    assert client_options(kafka) == {
        "bootstrap_servers": ["a:9093", "b:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "monitor",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ca.pem",
    }
    assert "s3cret" not in repr(kafka)


def test_aiokafka_options_build_an_ssl_context_only_for_tls() -> None:
    plain = aiokafka_options(KafkaSettings(bootstrap="h:1"))
    assert plain == {"bootstrap_servers": ["h:1"], "security_protocol": "PLAINTEXT"}
    tls = aiokafka_options(KafkaSettings(bootstrap="h:1", security_protocol="SSL"))
    assert tls["ssl_context"] is not None
    assert not {"ssl_cafile", "ssl_certfile", "ssl_keyfile"} & set(tls)
