"""A new in-memory broker (or a recreated topic) restarts offsets at 0: the store must not skip them.

`dmm up` twice on the same `.dmm/chdb` is exactly this: progress marks belong to the old
log (its topic id), so the new log's messages are processed, their writes are not taken for
retries of the old log's at the same offsets, and events already stored are counted as
duplicates, not silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmm.broker import free_port
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.replay import replay_file
from dmm.stack import EmbeddedStack
from settings import Settings
from tests.support.readback import read_topic
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _file(path: Path, suffix: str) -> Path:
    lines = []
    for name in ("listing", "trade", "usage", "heartbeat"):
        event = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        event["event_id"] += suffix
        lines.append(json.dumps(event, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _counts(settings: Settings) -> dict[str, int]:
    row = query_rows(
        settings,
        "SELECT (SELECT count() FROM datamarket.trades) AS trades, "
        "(SELECT count() FROM datamarket.heartbeats) AS heartbeats, "
        "(SELECT count() FROM datamarket.duplicate_events) AS duplicates",
    )[0]
    return {k: int(v) for k, v in row.items()}


def test_a_fresh_broker_on_the_same_store_loses_nothing(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    first, second = _file(tmp_path / "a.jsonl", "-a"), _file(tmp_path / "b.jsonl", "-b")
    with EmbeddedStack(settings, tmp_path / "one") as stack:
        with EventProducer(stack.settings.kafka) as producer:
            replay_file(first, producer)
        wait_until_drained(stack.settings, timeout=60)
        assert _counts(stack.settings) == {"trades": 1, "heartbeats": 1, "duplicates": 0}

    settings.kafka.bootstrap = f"127.0.0.1:{free_port()}"  # a new broker: offsets start at 0 again
    with EmbeddedStack(settings, tmp_path / "two") as stack:
        with EventProducer(stack.settings.kafka) as producer:
            # New events at offsets 0..3, already marked in the old log, and stored in a batch of the same offsets
            # as the old log's first (drained before the next file): the same range must not make the same write.
            replay_file(second, producer)
            wait_until_drained(stack.settings, timeout=60)
            replay_file(first, producer)  # the first file again: duplicates
        wait_until_drained(stack.settings, timeout=60)
        logged = read_topic(stack.settings.kafka, stack.settings.kafka.events_topic)  # what the worker was given
        assert [json.loads(record.value)["event_id"][-2:] for record in logged] == ["-b"] * 4 + ["-a"] * 4
        restored = [line for line in stack.worker_log.read_text().splitlines() if "state restored" in line]
        assert _counts(stack.settings) == {"trades": 2, "heartbeats": 2, "duplicates": 4}, restored
