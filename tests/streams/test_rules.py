"""Runtime rule changes: signed with the operators' key, validated, recorded, and replayed after a restart."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from settings import RuleSettings, Settings
from sinks import prometheus as metrics
from sinks.clickhouse.memory import MemoryState, MemoryStore
from sinks.clickhouse.records import record_rule_change
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore
from streams.pipeline import Pipeline
from streams.rules import (
    OPS_KEY_FILE,
    OpsKey,
    RuleChangeError,
    apply_change,
    parse_change,
    provision_ops_key,
    restore_rules,
    rule_change_record,
    signing_key,
)

OPS_KEY = SecretStr("5e" * 32)
OTHER_KEY = SecretStr("a7" * 32)


def record_change(store: ChdbStore, raw: bytes, rules: RuleSettings | None, error: str = "") -> None:
    record_rule_change(store, rule_change_record(raw, rules, error, key_id="" if error else "ops"))


def signed(raw: bytes, key: SecretStr = OPS_KEY) -> list[tuple[str, bytes]]:
    return OpsKey.configured(key).sign(raw)


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


@pytest.mark.integration
def test_accepted_changes_survive_a_restart_and_reset_undoes_them(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    configured = RuleSettings()
    first = json.dumps({"set": {"price_outlier_ratio": "4", "exchange_silent_s": 300}, "actor": "ops"}).encode()
    rules = apply_change(configured, configured, parse_change(first))
    record_change(store, first, rules)
    record_change(store, b'{"set": {"bogus": 1}}', None, "unknown rule(s): bogus")
    unsigned = b'{"set": {"exchange_silent_s": 31536000}}'  # accepted before changes were signed: not replayed
    record_rule_change(store, rule_change_record(unsigned, RuleSettings(exchange_silent_s=31536000)))
    restored = restore_rules(StateReader(store), configured)
    assert (restored.price_outlier_ratio, restored.exchange_silent_s) == (Decimal(4), 300)
    reset = b'{"reset": true, "actor": "ops"}'
    record_change(store, reset, apply_change(configured, restored, parse_change(reset)))
    assert restore_rules(StateReader(store), configured) == configured
    assert store.rows("SELECT actor, accepted FROM datamarket.rule_changes ORDER BY changed_at")[1] == {
        "actor": "",
        "accepted": 0,
    }


@pytest.mark.integration
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

    pipeline = Pipeline(Settings(ops_key=OPS_KEY), store, publish, topic_id="log", reader=SlowReader)
    pipeline.restore()
    armed = True
    change = b'{"set": {"exchange_silent_s": 300}, "actor": "ops-li"}'

    async def scenario() -> None:
        ticking = asyncio.create_task(pipeline.tick())
        assert await asyncio.to_thread(reading.wait, 10)
        await asyncio.wait_for(pipeline.change_rules(change, signed(change)), 5)  # not behind the timer's read
        release.set()
        await ticking

    asyncio.run(scenario())
    assert pipeline.surveillance.ctx.rules.exchange_silent_s == 300
    store.close()


SILENCE_OFF = json.dumps({"set": {"exchange_silent_s": 31536000}, "actor": "mallory"}).encode()
# What an attacker with write access to dm.rules can send, and why each is refused.
FORGED: dict[str, tuple[list[tuple[str, bytes]], str]] = {
    "unsigned": ([], "unsigned"),
    "an exchange's key id": ([("dm-key", b"SHDEX"), ("dm-sig", signed(SILENCE_OFF)[1][1])], "only the operators' key"),
    "garbage signature": ([("dm-key", b"ops"), ("dm-sig", b"not-a-signature")], "does not verify"),
    "signed with another key": (signed(SILENCE_OFF, OTHER_KEY), "does not verify"),
    "signature of other bytes": (signed(SILENCE_OFF + b" "), "does not verify"),
    "key id only": ([("dm-key", b"ops")], "unsigned"),
}


def rules_pipeline(store: MemoryStore, ops_key: SecretStr | None = OPS_KEY) -> Pipeline:
    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    running = Pipeline(Settings(ops_key=ops_key), store, publish, topic_id="log", reader=MemoryState)
    running.restore()
    return running


@pytest.mark.parametrize("forged", FORGED, ids=list(FORGED))
def test_a_change_not_signed_with_the_operators_key_is_refused_counted_recorded_and_never_replayed(
    forged: str,
) -> None:
    store = MemoryStore()
    running = rules_pipeline(store)
    refused = metrics.RULE_CHANGES_REFUSED._value.get()
    headers, why = FORGED[forged]
    asyncio.run(running.change_rules(SILENCE_OFF, headers))
    assert running.surveillance.ctx.rules.exchange_silent_s == 120  # silence is still detected after 120 s
    assert metrics.RULE_CHANGES_REFUSED._value.get() == refused + 1
    [row] = store.pylist("rule_changes")
    assert (row["actor"], row["accepted"], row["key_id"], row["change"]) == ("mallory", 0, "", SILENCE_OFF.decode())
    assert why in row["error"]
    assert rules_pipeline(store).surveillance.ctx.rules.exchange_silent_s == 120  # restored: not replayed


def test_a_worker_without_an_operators_key_refuses_every_change_saying_how_to_configure_one() -> None:
    store = MemoryStore()
    asyncio.run(rules_pipeline(store, ops_key=None).change_rules(SILENCE_OFF, signed(SILENCE_OFF)))
    [row] = store.pylist("rule_changes")
    assert not row["accepted"] and "DMM_OPS_KEY" in row["error"] and "openssl rand -hex 32" in row["error"]
    for bad in ("not hex", "ab" * 8):  # not hex; 8 bytes, too short to sign with
        with pytest.raises(RuleChangeError, match="DMM_OPS_KEY"):
            OpsKey.configured(SecretStr(bad)).verify(SILENCE_OFF, signed(SILENCE_OFF))


def test_a_change_signed_with_the_operators_key_is_applied_recorded_with_its_key_and_replayed_on_restore() -> None:
    store = MemoryStore()
    running = rules_pipeline(store)
    change = json.dumps({"set": {"exchange_silent_s": 300}, "actor": "ops-li"}).encode()
    asyncio.run(running.change_rules(change, dict(signed(change))))  # Faust hands the headers over as a dict
    assert running.surveillance.ctx.rules.exchange_silent_s == 300
    [row] = store.pylist("rule_changes")
    assert (row["actor"], row["accepted"], row["key_id"], row["error"]) == ("ops-li", 1, "ops", "")
    assert rules_pipeline(store).surveillance.ctx.rules.exchange_silent_s == 300


def test_a_change_accepted_unsigned_before_changes_were_signed_is_not_replayed() -> None:
    store = MemoryStore()
    record_rule_change(store, rule_change_record(SILENCE_OFF, RuleSettings(exchange_silent_s=31536000)))
    assert rules_pipeline(store).surveillance.ctx.rules.exchange_silent_s == 120


def test_the_embedded_stack_generates_its_operators_key_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    with pytest.raises(RuleChangeError, match="dmm up"):
        signing_key(Settings(), tmp_path)  # `dmm rules` before any `dmm up`: says where a key comes from
    first = provision_ops_key(Settings(), tmp_path)
    assert (tmp_path / OPS_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert provision_ops_key(Settings(), tmp_path).ops_key == first.ops_key  # the next `dmm up` keeps it
    assert provision_ops_key(Settings(ops_key=OPS_KEY), tmp_path).ops_key == OPS_KEY  # DMM_OPS_KEY wins
    # `dmm rules` signs with the work directory's key, and the worker started by `dmm up` verifies it.
    assert first.ops_key is not None
    headers = signing_key(Settings(), tmp_path).sign(SILENCE_OFF)
    assert OpsKey.configured(first.ops_key).verify(SILENCE_OFF, headers) == "ops"
