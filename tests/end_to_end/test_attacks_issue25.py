"""Issue 25's attacks, sent as an attacker sends them: through the broker to the running worker (contract,
Amendment 1: a bounded clock, identifiers without control characters, conflicting resends).

Event times run forward through the module (the stack, and its market event time, is shared): each test's
events come after the previous test's."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained, worker_metrics, worker_status
from dmm.stack import EmbeddedStack

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    return {**json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")), **changes}


def send(stack: EmbeddedStack, *events: dict[str, Any] | bytes) -> None:
    with EventProducer(stack.settings.kafka) as producer:
        for event in events:
            value = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
            producer.publish_raw(value, b"attack")
    wait_until_drained(stack.settings, timeout=90)


def ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def rejected(stack: EmbeddedStack, event_id_like: str) -> list[dict[str, Any]]:
    return query_rows(
        stack.settings,
        "SELECT event_id, reason, detail, raw FROM datamarket.rejected_events "
        f"WHERE event_id LIKE '{event_id_like}' ORDER BY src_offset",
    )


def test_a_2099_event_leaves_the_traffic_after_it_on_time_counted_in_its_minute_and_survives_a_restart(
    stack: EmbeddedStack,
) -> None:
    forged = fixture("trade", event_id="CLOCK-FORGED", trade_id="CLOCK-FORGED", occurred_at="2099-01-01T00:00:00Z")
    trades = [
        fixture(
            "trade", event_id=f"CLOCK-T-{n}", trade_id=f"CLOCK-T-{n}", occurred_at=f"2026-11-21T11:00:{n:02d}+08:00"
        )
        for n in range(3)
    ]
    send(stack, forged, *trades)
    [row] = rejected(stack, "CLOCK-FORGED")
    assert row["reason"] == "future_event" and "fix the producer's clock" in row["detail"]
    assert json.loads(row["raw"]) == forged  # the message as sent, kept
    stored = query_rows(stack.settings, "SELECT event_id, late FROM datamarket.trades WHERE event_id LIKE 'CLOCK-%'")
    assert sorted((r["event_id"], r["late"]) for r in stored) == [(f"CLOCK-T-{n}", 0) for n in range(3)]
    minute = query_rows(
        stack.settings,
        "SELECT sum(trades) AS trades FROM datamarket.market_1m FINAL "
        "WHERE window_start = toDateTime('2026-11-21 03:00:00', 'UTC')",
    )
    assert int(minute[0]["trades"]) == 3
    assert worker_status(stack.settings)["watermark_ms"] == ms("2026-11-21T11:00:02+08:00")

    stack.stop_worker()
    stack.start_worker()
    assert worker_status(stack.settings)["watermark_ms"] == ms("2026-11-21T11:00:02+08:00")
    after = fixture("usage", event_id="CLOCK-U-AFTER", occurred_at="2026-11-21T11:00:30+08:00")
    send(stack, after)
    late = query_rows(stack.settings, "SELECT late FROM datamarket.usage WHERE event_id = 'CLOCK-U-AFTER'")
    assert late == [{"late": 0}]


def test_identifiers_holding_control_characters_are_invalid_naming_the_field(stack: EmbeddedStack) -> None:
    at = "2026-11-21T11:01:00+08:00"
    clear = "\x1b[2J"  # clears an operator's terminal
    sent = {
        "CC-USAGE-PRODUCT": fixture("usage", event_id="CC-USAGE-PRODUCT", product_id=f"P{clear}", occurred_at=at),
        "CC-TRADE-BUYER": fixture("trade", event_id="CC-TRADE-BUYER", buyer_id=f"B{clear}", occurred_at=at),
        "CC-LISTING-SELLER": fixture("listing", event_id="CC-LISTING-SELLER", seller_id="S\x07", occurred_at=at),
        f"CC-ID{clear}": fixture("heartbeat", event_id=f"CC-ID{clear}", occurred_at=at),
        "CC-TRADE-ID": fixture("trade", event_id="CC-TRADE-ID", trade_id="T\u009b31m", occurred_at=at),  # C1 CSI
    }
    send(stack, *sent.values())
    found = {row["event_id"]: row for row in rejected(stack, "CC-%")}
    assert set(found) == set(sent)
    fields = {
        "CC-USAGE-PRODUCT": "product_id",
        "CC-TRADE-BUYER": "buyer_id",
        "CC-LISTING-SELLER": "seller_id",
        f"CC-ID{clear}": "event_id",
        "CC-TRADE-ID": "trade_id",
    }
    for event_id, field in fields.items():
        assert found[event_id]["reason"] == "invalid", found[event_id]
        assert found[event_id]["detail"].startswith(f"{field}: holds a control character"), found[event_id]
    for table in ("usage", "trades", "listings", "heartbeats"):
        assert query_rows(stack.settings, f"SELECT event_id FROM datamarket.{table} WHERE event_id LIKE 'CC-%'") == []


def test_a_squatted_event_id_makes_the_real_trade_a_conflicting_resend_not_a_duplicate(stack: EmbeddedStack) -> None:
    at = "2026-11-21T11:02:00+08:00"
    listing = fixture("listing", event_id="SQUAT-L", product_id="P-SQUAT", occurred_at=at)
    base = fixture("trade", event_id="SQUAT-T", trade_id="T-SQUAT", product_id="P-SQUAT", occurred_at=at)
    squat = {**base, "price": "0.01", "quantity": 1, "amount": "0.01"}
    real = {**base, "price": "25000.00", "quantity": 2, "amount": "50000.00", "buyer_id": base["seller_id"]}
    resend = json.dumps(dict(reversed(list(squat.items()))), indent=1).encode()  # the squat again, other bytes
    send(stack, listing, squat, real, resend)
    [conflict] = rejected(stack, "SQUAT-T")
    assert conflict["reason"] == "conflicting_duplicate" and json.loads(conflict["raw"]) == real
    stored = query_rows(
        stack.settings, "SELECT toString(amount) AS amount FROM datamarket.trades WHERE event_id = 'SQUAT-T'"
    )
    assert stored == [{"amount": "0.01"}]  # the first stays as stored
    duplicates = query_rows(
        stack.settings, "SELECT event_id FROM datamarket.duplicate_events WHERE event_id = 'SQUAT-T'"
    )
    assert duplicates == [{"event_id": "SQUAT-T"}]  # the exact resend
    assert worker_metrics(stack.settings)['dmm_rejected_total{reason="conflicting_duplicate"}'] == 1
