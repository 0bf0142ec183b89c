"""A rule changed through dm.rules takes effect in the running worker, without a restart."""

from __future__ import annotations

import json
import time

import pytest

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_status
from dmm.stack import EmbeddedStack

pytestmark = pytest.mark.slow

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


def test_a_tightened_price_outlier_ratio_applies_at_once(stack: EmbeddedStack) -> None:
    kafka = stack.settings.kafka
    with EventProducer(kafka, topic=kafka.rules_topic) as producer:
        producer.publish_raw(json.dumps({"set": {"price_outlier_ratio": "1.2"}, "actor": "ops-li"}).encode(), None)
        producer.flush()
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
    changes = query_rows(stack.settings, "SELECT actor, accepted FROM datamarket.rule_changes")
    assert changes == [{"actor": "ops-li", "accepted": 1}]
