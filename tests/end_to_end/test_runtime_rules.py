"""A rule changed through dm.rules takes effect in the running worker, without a restart, only when signed with
the operators' key (contract, Amendment 1): anyone else's change is refused, recorded and counted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer
from pydantic import SecretStr

from dmm.cli.rules import publish_change
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_metrics, worker_status
from dmm.stack import EmbeddedStack
from streams.kafka_client import client_options
from streams.rules import OpsKey
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

OPS_KEY = SecretStr("3c" * 32)
LISTING = {
    "schema": "dm.v1", "type": "listing", "event_id": "R-L-1", "exchange_id": "SHDEX",
    "occurred_at": "2026-11-21T09:30:00.000+08:00", "action": "list", "product_id": "P-RULES",
    "seller_id": "S1", "title": "t", "category": "dataset", "source": "enterprise",
    "sector": "transportation", "pricing": "paid", "list_price": "100.00", "unit": "license",
}
TRADE = {
    "schema": "dm.v1", "type": "trade", "event_id": "R-T-1", "exchange_id": "SHDEX",
    "occurred_at": "2026-11-21T09:31:00.000+08:00", "trade_id": "T1", "product_id": "P-RULES",
    "buyer_id": "B1", "seller_id": "S1", "price": "130.00", "quantity": 1, "amount": "130.00",
    "currency": "CNY", "venue": "on_exchange", "purpose": "commercial",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The embedded stack, its worker holding the operators' key (`dmm up` generates one: `provision_ops_key`)."""
    workdir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(stack_settings(workdir).model_copy(update={"ops_key": OPS_KEY}), workdir) as running:
        yield running


def recorded(stack: EmbeddedStack, actor: str, count: int) -> list[dict[str, object]]:
    """The rule changes `actor` made, once the worker recorded `count` of them."""
    deadline = time.monotonic() + 30
    while True:
        rows = query_rows(
            stack.settings,
            f"SELECT accepted, key_id, error FROM datamarket.rule_changes WHERE actor = '{actor}' ORDER BY changed_at",
        )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_a_tightened_price_outlier_ratio_applies_at_once(stack: EmbeddedStack) -> None:
    kafka = stack.settings.kafka
    change = {"set": {"price_outlier_ratio": "1.2"}, "actor": "ops-li"}
    publish_change(stack.settings, change, OpsKey.configured(OPS_KEY))
    deadline = time.monotonic() + 30
    while worker_status(stack.settings)["rules"]["price_outlier_ratio"] != "1.2":
        assert time.monotonic() < deadline, worker_status(stack.settings)["rules"]
        time.sleep(0.2)
    with EventProducer(kafka) as producer:
        producer.publish_raw(json.dumps(LISTING).encode(), b"P-RULES")
        producer.publish_raw(json.dumps(TRADE).encode(), b"P-RULES")
        producer.flush()
    wait_until_drained(stack.settings, timeout=60)
    alerts = query_rows(stack.settings, "SELECT kind, event_ids FROM datamarket.alerts WHERE product_id = 'P-RULES'")
    assert alerts == [{"kind": "price_outlier", "event_ids": ["R-T-1"]}]
    assert recorded(stack, "ops-li", 1) == [{"accepted": 1, "key_id": "ops", "error": ""}]


def test_a_change_without_the_operators_signature_is_refused_and_silence_is_still_detected(
    stack: EmbeddedStack,
) -> None:
    """Whoever can write to dm.rules tries to switch `exchange_silent` off (a year of silence allowed)."""
    value = json.dumps({"set": {"exchange_silent_s": 31536000}, "actor": "mallory"}).encode()
    forged = [
        [],  # unsigned
        [("dm-key", b"ops"), ("dm-sig", b"0" * 64)],  # a made-up signature
        OpsKey.configured(SecretStr("77" * 32)).sign(value),  # signed with a key of its own
    ]
    producer = KafkaProducer(**client_options(stack.settings.kafka), acks="all")
    try:
        for headers in forged:
            producer.send(stack.settings.kafka.rules_topic, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()
    rows = recorded(stack, "mallory", 3)
    assert [(row["accepted"], row["key_id"]) for row in rows] == [(0, "")] * 3, rows
    assert "unsigned" in str(rows[0]["error"]) and "does not verify" in str(rows[1]["error"])
    assert worker_status(stack.settings)["rules"]["exchange_silent_s"] == 120
    assert worker_metrics(stack.settings)["dmm_rule_changes_refused_total"] == 3
    # SZDEX falls silent while BJIDEX goes on for 200 s of event time: alerted after 120 s, as configured.
    beat = {"schema": "dm.v1", "type": "heartbeat", "exchange_id": "SZDEX", "event_id": "R-H-1", "seq": 1,
            "occurred_at": "2026-11-21T12:00:00+08:00"}
    usage = {"schema": "dm.v1", "type": "usage", "exchange_id": "BJIDEX", "product_id": "P-RULES", "buyer_id": "B1",
             "calls": 1, "bytes": 1}
    with EventProducer(stack.settings.kafka) as producer:
        producer.publish_raw(json.dumps(beat).encode(), b"SZDEX")
        for n, at in enumerate(("12:00:00", "12:03:20")):
            event = {**usage, "event_id": f"R-U-{n}", "occurred_at": f"2026-11-21T{at}+08:00"}
            producer.publish_raw(json.dumps(event).encode(), b"P-RULES")
        producer.flush()
    wait_until_drained(stack.settings, timeout=60)
    silent = query_rows(stack.settings, "SELECT kind FROM datamarket.alerts WHERE exchange_id = 'SZDEX'")
    assert {"kind": "exchange_silent"} in silent
