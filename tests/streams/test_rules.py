"""Runtime rule changes: validated, recorded, and replayed after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from settings import RuleSettings, Settings
from sinks.clickhouse.records import record_rule_change
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore
from streams.pipeline import Pipeline
from streams.rules import RuleChangeError, apply_change, parse_change, restore_rules, rule_change_record


def record_change(store: ChdbStore, raw: bytes, rules: RuleSettings | None, error: str = "") -> None:
    record_rule_change(store, rule_change_record(raw, rules, error))


def test_a_change_updates_only_the_named_rules() -> None:
    configured = RuleSettings()
    changed = apply_change(configured, configured, {"set": {"price_outlier_ratio": "4"}})
    assert changed.price_outlier_ratio == Decimal(4)
    assert changed.volume_spike_ratio == configured.volume_spike_ratio


@pytest.mark.parametrize(
    "change, why",
    [
        ({"set": {"no_such_rule": 1}}, "unknown rule"),
        ({"set": {"price_outlier_ratio": "lots"}}, "price_outlier_ratio"),
        ({"set": {}}, "expected"),
        ({"whatever": 1}, "expected"),
    ],
)
def test_bad_changes_are_refused_with_a_reason(change: dict, why: str) -> None:
    with pytest.raises(RuleChangeError, match=why):
        apply_change(RuleSettings(), RuleSettings(), change)


def test_non_json_is_refused() -> None:
    with pytest.raises(RuleChangeError, match="not JSON"):
        parse_change(b"{nope")


def test_accepted_changes_survive_a_restart_and_reset_undoes_them(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    configured = RuleSettings()
    first = json.dumps({"set": {"price_outlier_ratio": "4", "exchange_silent_s": 300}, "actor": "ops"}).encode()
    rules = apply_change(configured, configured, parse_change(first))
    record_change(store, first, rules)
    record_change(store, b'{"set": {"bogus": 1}}', None, "unknown rule(s): bogus")
    restored = restore_rules(StateReader(store), configured)
    assert (restored.price_outlier_ratio, restored.exchange_silent_s) == (Decimal(4), 300)
    reset = b'{"reset": true, "actor": "ops"}'
    record_change(store, reset, apply_change(configured, restored, parse_change(reset)))
    assert restore_rules(StateReader(store), configured) == configured
    assert store.rows("SELECT actor, accepted FROM datamarket.rule_changes ORDER BY changed_at")[1] == {
        "actor": "",
        "accepted": 0,
    }


def test_a_change_applied_while_the_timer_reads_the_store_neither_waits_for_it_nor_is_undone(tmp_path: Path) -> None:
    """The timer reads resolutions and recorded rules outside the pipeline's lock (batches and changes go on),
    and does not follow rules it read before a change applied meanwhile."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    reading, release = threading.Event(), threading.Event()
    armed = False

    class SlowReader(StateReader):
        def accepted_rule_changes(self):  # type: ignore[no-untyped-def]
            read = super().accepted_rule_changes()
            if armed:  # the timer's read, made before the change below and held until it is applied
                reading.set()
                release.wait(10)
            return read

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        pass

    pipeline = Pipeline(Settings(), store, publish, topic_id="log", reader=SlowReader)
    pipeline.restore()
    armed = True
    change = b'{"set": {"exchange_silent_s": 300}, "actor": "ops-li"}'

    async def scenario() -> None:
        ticking = asyncio.create_task(pipeline.tick())
        assert await asyncio.to_thread(reading.wait, 10)
        await asyncio.wait_for(pipeline.change_rules(change), 5)  # not behind the timer's read
        release.set()
        await ticking

    asyncio.run(scenario())
    assert pipeline.surveillance.ctx.rules.exchange_silent_s == 300
    store.close()
