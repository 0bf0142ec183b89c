"""EventProducer against a real broker: contract keys, exact bytes, and failures that surface."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmm.broker import EmbeddedBroker, free_port
from dmm.producer import DeliveryError, EventProducer
from models import EVENT_ADAPTER, AnyEvent
from models.keys import KeyRing, SigningKey
from settings import KafkaSettings
from streams.authenticate import Authenticator
from streams.decode import decode
from streams.kafka_client import ensure_topics
from tests.support.readback import read_topic

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _examples() -> list[AnyEvent]:
    return [
        EVENT_ADAPTER.validate_json((EXAMPLES / f"{name}.json").read_bytes())
        for name in ("listing", "trade", "usage", "heartbeat")
    ]


def test_publish_keys_events_as_the_contract_says(kafka: KafkaSettings) -> None:
    events = _examples()
    with EventProducer(kafka) as producer:
        for event in events:
            producer.publish(event)
        producer.publish_raw(b"not json at all")
    assert (producer.sent, producer.failed) == (5, 0)

    stored = read_topic(kafka, kafka.events_topic)
    assert [(r.key, r.value) for r in stored] == [
        *[
            (
                (event.exchange_id if event.type == "heartbeat" else event.product_id).encode(),
                event.model_dump_json(by_alias=True, exclude_none=True).encode(),
            )
            for event in events
        ],
        (None, b"not json at all"),
    ]
    assert EVENT_ADAPTER.validate_json(stored[1].value) == events[1]


def test_flush_raises_every_failure_when_the_broker_is_gone(tmp_path: Path) -> None:
    with EmbeddedBroker(port=free_port(), log_dir=tmp_path) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        ensure_topics(kafka)
        producer = EventProducer(kafka, request_timeout_ms=1000, delivery_timeout_ms=2000, linger_ms=0)
        producer.publish_raw(b"before", b"k0")
        producer.flush(timeout=10)
        broker.stop()

        producer.publish_raw(b"lost-1", b"k1")
        producer.publish_raw(b"lost-2")
        with pytest.raises(DeliveryError) as raised:
            producer.flush(timeout=10)
        producer.close(timeout=1)

    failures = raised.value.failures
    assert [(f.seq, f.key, f.value) for f in failures] == [(2, b"k1", b"lost-1"), (3, None, b"lost-2")]
    assert "2 message(s) not delivered" in str(raised.value)
    assert (producer.sent, producer.failed) == (1, 2)


def test_flush_timeout_reports_unacknowledged_messages(tmp_path: Path) -> None:
    with EmbeddedBroker(port=free_port(), log_dir=tmp_path) as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        ensure_topics(kafka)
        producer = EventProducer(kafka, linger_ms=0)
        producer.publish_raw(b"warm-up")
        producer.flush(timeout=10)
        broker.stop()

        producer.publish_raw(b"pending", b"k")
        with pytest.raises(DeliveryError, match="not acknowledged within"):
            producer.flush(timeout=0.5)
        producer.flush(timeout=0.5)  # each failure is reported once
        producer.close(timeout=0.5)
    assert (producer.sent, producer.failed) == (1, 1)


SHDEX_KEY = SigningKey("SHDEX", "SHDEX-sdk-1", bytes(range(32)))


def test_a_producer_given_its_exchange_s_key_signs_every_message_as_the_monitor_verifies_it(
    kafka: KafkaSettings,
) -> None:
    events = _examples()  # SHDEX's, heartbeat included
    other = SigningKey("SZDEX", "SZDEX-sdk-1", bytes(range(40)))
    with EventProducer(kafka, signing_key=SHDEX_KEY) as producer:
        for event in events:
            producer.publish(event)
        producer.publish_raw(b"not json at all")  # signed too: the key signs bytes, whatever they hold
        producer.publish_raw(b'{"exchange_id":"SZDEX"}', signing_key=other)  # a key given for one message
    stored = read_topic(kafka, kafka.events_topic)
    assert [r.headers for r in stored] == [
        *[(("dm-key", b"SHDEX-sdk-1"), ("dm-sig", SHDEX_KEY.signature(r.value))) for r in stored[:-1]],
        (("dm-key", b"SZDEX-sdk-1"), ("dm-sig", other.signature(stored[-1].value))),
    ]
    authenticator = Authenticator(KeyRing((SHDEX_KEY, other)))
    assert [authenticator.verified(decode(r.value), r.headers, r.value) for r in stored[:4]] == events


def test_a_producer_refuses_to_sign_another_exchange_s_event_before_queueing_it(kafka: KafkaSettings) -> None:
    szdex = _examples()[1].model_copy(update={"exchange_id": "SZDEX"})
    refused = "names exchange SZDEX but this producer signs with SHDEX's key"
    with EventProducer(kafka, signing_key=SHDEX_KEY) as producer, pytest.raises(ValueError, match=refused):
        producer.publish(szdex)
    assert producer.sent == 0 and read_topic(kafka, kafka.events_topic) == []
