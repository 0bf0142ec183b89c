"""Clean traffic trips none of the eight alert rules at the contract's default thresholds."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from tests.support import reference
from tests.support.reference import Event
from tests.support.simulated_runs import Run, simulate


@pytest.fixture(scope="module", params=["default", "busy"])
def events(request: pytest.FixtureRequest, clean_run: Run) -> list[Event]:
    """The default run, and a busier one (4 events/s) that leans on the per-minute volume cap."""
    run = clean_run if request.param == "default" else simulate(seed=3, rate=4.0, duration_s=2_400.0)
    return reference.parse(run.lines)


def test_no_self_dealing(events: list[Event]) -> None:
    assert reference.self_dealing(events) == []


def test_no_wash_cycles(events: list[Event]) -> None:
    assert reference.wash_cycles(events) == []


def test_no_unlisted_trades(events: list[Event]) -> None:
    assert reference.unlisted(events) == {}


def test_no_pricing_policy_violations(events: list[Event]) -> None:
    assert reference.pricing_policy(events) == []


def test_no_price_outliers(events: list[Event]) -> None:
    assert reference.price_outliers(events) == []


def test_no_cross_exchange_gaps(events: list[Event]) -> None:
    assert reference.price_gaps(events) == []


def test_no_volume_spikes(events: list[Event]) -> None:
    assert reference.volume_spikes(events) == []


def test_no_silent_exchange(events: list[Event]) -> None:
    assert reference.silences(events) == []


def test_same_product_priced_consistently_across_exchanges(events: list[Event]) -> None:
    prices: dict[str, dict[str, Decimal]] = defaultdict(dict)
    multi_listed = set()
    for event in events:
        if event["type"] != "listing":
            continue
        listed = prices[event["product_id"]]
        if event["action"] == "delist":
            listed.pop(event["exchange_id"])
            continue
        listed[event["exchange_id"]] = Decimal(event["list_price"])
        if len(listed) >= 2:
            multi_listed.add(event["product_id"])
            assert max(listed.values()) < Decimal("1.5") * min(listed.values())
    assert len(multi_listed) >= 20


def test_trades_near_list_price_and_public_data_free_for_governance(events: list[Event]) -> None:
    listed: dict[tuple[str, str], Decimal] = {}
    pricing: dict[str, tuple[str, str]] = {}
    governance_free = 0
    for event in events:
        key = (event["exchange_id"], event.get("product_id", ""))
        if event["type"] == "listing" and event["action"] != "delist":
            listed[key] = Decimal(event["list_price"])
            if event["action"] == "list":
                pricing[event["product_id"]] = (event["source"], event["pricing"])
        elif event["type"] == "trade":
            assert Decimal(event["amount"]) == Decimal(event["price"]) * event["quantity"]
            price = Decimal(event["price"])
            source, policy = pricing[event["product_id"]]
            if event["purpose"] == "public_governance" and policy in ("free", "conditional_free"):
                assert source == "public" and price == 0
                governance_free += 1
            elif policy != "free":
                assert abs(price - listed[key]) <= Decimal("0.15") * listed[key] + Decimal("0.01")
    assert governance_free > 0


def test_usage_follows_a_purchase(events: list[Event]) -> None:
    bought: set[tuple[str, str, str]] = set()
    usage = 0
    for event in events:
        key = (event["exchange_id"], event.get("product_id", ""), event.get("buyer_id", ""))
        if event["type"] == "trade":
            bought.add(key)
        elif event["type"] == "usage":
            assert key in bought
            usage += 1
    assert usage > 0


def test_market_shape(events: list[Event]) -> None:
    """Listings span sources, pricing and high-quality datasets; trades span venues and purposes."""
    listings = [event for event in events if event["type"] == "listing" and event["action"] == "list"]
    trades = reference.trades(events)
    assert {event["source"] for event in listings} == {"public", "enterprise", "personal"}
    assert {event["pricing"] for event in listings} == {"free", "conditional_free", "paid"}
    assert any(event["high_quality"] for event in listings)
    assert any(event["action"] == "delist" for event in events if event["type"] == "listing")
    assert any(event["action"] == "reprice" for event in events if event["type"] == "listing")
    assert {event["venue"] for event in trades} == {"on_exchange", "off_exchange_registered"}
    assert {event["purpose"] for event in trades} == {"public_governance", "commercial", "research"}
    on_exchange = sum(event["venue"] == "on_exchange" for event in trades)
    assert on_exchange > len(trades) / 2
