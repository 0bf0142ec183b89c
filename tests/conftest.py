"""Shared fixtures: a real embedded Tansu broker per test module, and isolated topics per test.

Two tiers: `pytest --fast` (`scripts/test --fast`) runs every test that needs no broker, no store and no
other program, for a loop under a minute; the rest is marked `integration` (module-wide `pytestmark`, or per
test), and what takes seconds to minutes on its own (end-to-end runs, long simulations) `slow`.
In the fast tier, starting a broker, opening an embedded store (chdb, however it is reached) or a process fails
the test with what to do, so a test that needs one cannot hide in the fast tier.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from typing import Any

import chdb
import chdb.session
import pytest

from dmm.broker import EmbeddedBroker, free_port
from settings import KafkaSettings
from sinks.clickhouse.store import ChdbStore
from streams.kafka_client import ensure_topics

_prefixes = itertools.count()
INTEGRATION = ("integration", "slow")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true", help="only tests that need no broker, store or process")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    keep = [item for item in items if not any(item.get_closest_marker(name) for name in INTEGRATION)]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the fast tier, the real parts refuse to start: a test that starts one belongs to the integration
    tier. Session-wide, so that module fixtures (a broker per module) meet it too."""
    if not request.config.getoption("--fast"):
        yield
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "this test starts a broker, a store or a process: mark it (or its module, `pytestmark = "
            "pytest.mark.integration`) as an integration test; it then runs in the full suite, not in --fast"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EmbeddedBroker, "__enter__", refuse)
        patch.setattr(ChdbStore, "__init__", refuse)
        patch.setattr(chdb.session.Session, "__init__", refuse)
        patch.setattr(chdb, "query", refuse)
        patch.setattr(chdb, "connect", refuse)
        patch.setattr(subprocess.Popen, "__init__", refuse)
        yield


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
