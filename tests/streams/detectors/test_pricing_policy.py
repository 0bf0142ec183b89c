from __future__ import annotations

import pytest

from sinks.clickhouse.store import ChdbStore
from streams.detectors.pricing_policy import PricingPolicy
from tests.support.detector_market import LATENESS_S, Market, heartbeat, listing, restored, store_events, trade


def public_free(t: float = 0, pricing: str = "free", **kw: object) -> object:
    return listing(t, source="public", pricing=pricing, price="0.00", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("pricing", ["free", "conditional_free"])
def test_charging_public_governance_for_free_public_data_is_a_violation(pricing: str) -> None:
    market = Market(PricingPolicy())
    market.feed(public_free(pricing=pricing))
    t = trade(10, price="0.01", purpose="public_governance", seller="GOV-DATA", buyer="CITY")
    [finding] = market.feed(t)
    assert finding.kind == "pricing_policy_violation"
    assert finding.dedup_key == f"pricing_policy_violation:SHDEX:{t.event_id}"
    assert finding.score == 1.0
    assert finding.parties == ["GOV-DATA", "CITY"]
    assert "0.01 CNY" in finding.message and "0.01 元" in finding.message_zh


@pytest.mark.parametrize(
    ("source", "pricing", "purpose", "price"),
    [
        ("public", "free", "public_governance", "0.00"),  # amount 0: allowed
        ("public", "free", "commercial", "50.00"),  # commercial use may be charged
        ("public", "paid", "public_governance", "50.00"),  # listed as paid
        ("enterprise", "free", "public_governance", "50.00"),  # not public data
    ],
)
def test_no_violation_outside_the_rule(source: str, pricing: str, purpose: str, price: str) -> None:
    market = Market(PricingPolicy())
    market.feed(listing(0, source=source, pricing=pricing, price="0.00"))
    assert market.feed(trade(10, price=price, purpose=purpose)) == []


def test_terms_recognised_from_another_exchange_apply() -> None:
    market = Market(PricingPolicy())
    market.feed(public_free(exchange="BJIDEX", recognized_by=["SHDEX"]))
    assert len(market.feed(trade(10, exchange="SHDEX", price="5.00", purpose="public_governance"))) == 1


def test_a_listing_arriving_within_the_allowed_lateness_after_the_trade_counts() -> None:
    market = Market(PricingPolicy())
    assert market.feed(trade(0, price="5.00", purpose="public_governance")) == []
    assert market.feed(public_free(t=-60)) == []  # out of order: listed before, arrived after
    assert market.feed(heartbeat(LATENESS_S - 0.001)) == []
    [finding] = market.feed(heartbeat(LATENESS_S))
    assert finding.kind == "pricing_policy_violation"


def test_without_any_listing_the_trade_is_dropped_once_lateness_passed() -> None:
    market = Market(PricingPolicy())
    market.feed(trade(0, price="5.00", purpose="public_governance"))
    assert market.feed(heartbeat(LATENESS_S)) == []
    assert market.detector.held == 0  # type: ignore[attr-defined]


@pytest.mark.integration
def test_restore_holds_trades_still_waiting_for_their_listing(store: ChdbStore) -> None:
    t = trade(0, price="5.00", purpose="public_governance")
    hb = heartbeat(30)
    store_events(store, [t, hb])
    market = restored(PricingPolicy(), store, [t, hb])
    assert market.detector.held == 1  # type: ignore[attr-defined]
    market.feed(public_free(t=-10))
    [finding] = market.feed(heartbeat(LATENESS_S))
    assert finding.event_ids == [t.event_id]
