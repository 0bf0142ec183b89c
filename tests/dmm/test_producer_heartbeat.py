"""HeartbeatSender against a real broker: the contract's heartbeat, keyed by exchange, accepted by the worker's
decoder."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from dmm.producer import EventProducer, HeartbeatSender
from models import AnyEvent, Heartbeat
from settings import KafkaSettings
from streams.decode import decode
from tests.support.readback import read_topic

pytestmark = pytest.mark.integration


def _wait_for(condition: threading.Condition, predicate: Callable[[], bool], what: str) -> None:
    with condition:
        assert condition.wait_for(predicate, timeout=60), what


def test_heartbeats_every_interval_keyed_by_exchange_with_rising_seq(kafka: KafkaSettings) -> None:
    progress = threading.Condition()

    class Counting(EventProducer):
        def publish(self, event: AnyEvent) -> None:  # lets the test wait for heartbeats without sleeping
            super().publish(event)
            with progress:
                progress.notify_all()

    with Counting(kafka) as producer:
        with HeartbeatSender(producer, "SHDEX", interval_s=0.05, start_seq=7) as sender:
            _wait_for(progress, lambda: sender.sent >= 4, "four heartbeats")
        sent = sender.sent
    assert (sender.failed, producer.failed) == (0, 0)

    stored = read_topic(kafka, kafka.events_topic)
    assert len(stored) == sent
    assert {record.key for record in stored} == {b"SHDEX"}
    beats = [decode(record.value) for record in stored]
    assert all(isinstance(beat, Heartbeat) for beat in beats), beats
    assert [beat.seq for beat in beats] == list(range(7, 7 + sent))
    assert len({beat.event_id for beat in beats}) == sent
    assert all(beat.event_id.startswith("SHDEX-H-") and beat.exchange_id == "SHDEX" for beat in beats)
    times = [beat.occurred_at for beat in beats]
    assert times == sorted(times)
    assert all(time.utcoffset() is not None for time in times)


def test_unknown_exchange_fails_at_construction(kafka: KafkaSettings) -> None:
    with EventProducer(kafka) as producer:
        with pytest.raises(ValidationError, match="exchange_id"):
            HeartbeatSender(producer, "NOPE")
        with pytest.raises(ValueError, match="interval_s"):
            HeartbeatSender(producer, "SHDEX", interval_s=0)
