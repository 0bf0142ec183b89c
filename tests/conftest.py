"""Shared fixtures: a real embedded Tansu broker per test module, and isolated topics per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from dmm.broker import EmbeddedBroker, free_port
from settings import KafkaSettings
from streams.kafka_client import ensure_topics

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One broker per module: starting Tansu takes ~50 ms, but its memory store is shared by the module."""
    with EmbeddedBroker(port=free_port(), log_dir=tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    """Settings for the module's broker with a topic prefix of this test's own, topics created."""
    settings = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"t{next(_prefixes)}.")
    ensure_topics(settings)
    return settings
