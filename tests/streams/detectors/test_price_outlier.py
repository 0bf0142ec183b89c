from __future__ import annotations

import pytest

from settings import RuleSettings
from sinks.clickhouse.store import ChdbStore
from streams.detectors.price_outlier import PriceOutlier
from tests.support.detector_market import LATENESS_S, Market, heartbeat, listing, restored, store_events, trade


def listed(price: str, **kw: object) -> Market:
    market = Market(PriceOutlier())
    market.feed(listing(0, price=price, **kw))  # type: ignore[arg-type]
    return market


@pytest.mark.parametrize(
    ("price", "fires", "score"),
    [("300.00", True, 1.0), ("299.99", False, None), ("300.01", True, 300.01 / 300), ("900.00", True, 3.0)],
)
def test_high_prices_at_just_below_and_above_three_times_the_list_price(
    price: str, fires: bool, score: float | None
) -> None:
    findings = listed("100.00").feed(trade(10, price=price))
    assert bool(findings) is fires
    if fires:
        assert findings[0].score == pytest.approx(score)
        assert findings[0].kind == "price_outlier"


@pytest.mark.parametrize(
    ("price", "fires", "score"),
    [("100.00", True, 1.0), ("100.01", False, None), ("99.99", True, 100 / 99.99), ("10.00", True, 10.0)],
)
def test_low_prices_at_just_below_and_above_a_third_of_the_list_price(
    price: str, fires: bool, score: float | None
) -> None:
    findings = listed("300.00").feed(trade(10, price=price))
    assert bool(findings) is fires
    if fires:
        assert findings[0].score == pytest.approx(score)


def test_message_states_price_reference_and_ratio() -> None:
    [finding] = listed("12000.00").feed(trade(10, price="36000.00"))
    assert "36,000.00 CNY" in finding.message and "12,000.00 CNY" in finding.message and "3.00×" in finding.message
    assert "36,000.00 元" in finding.message_zh and "3.00 倍" in finding.message_zh


def test_reference_is_the_median_of_active_list_prices_elsewhere() -> None:
    market = Market(PriceOutlier())
    market.feed(
        listing(0, exchange="BJIDEX", price="100.00"),
        listing(0, exchange="SZDEX", price="200.00"),
        listing(0, exchange="GZDEX", price="900.00"),
        listing(1, exchange="WDEC", price="1.00"),
        listing(2, exchange="WDEC", action="delist"),
    )
    [finding] = market.feed(trade(10, exchange="SHDEX", price="600.00"))
    assert finding.score == pytest.approx(1.0)
    assert "median" in finding.message
    assert market.feed(trade(11, exchange="SHDEX", price="599.99")) == []


def test_the_list_price_on_the_exchange_wins_over_others() -> None:
    market = Market(PriceOutlier())
    market.feed(listing(0, exchange="BJIDEX", price="1000.00"), listing(0, exchange="SHDEX", price="100.00"))
    assert len(market.feed(trade(10, exchange="SHDEX", price="300.00"))) == 1


def test_a_reprice_changes_the_reference() -> None:
    market = listed("100.00")
    market.feed(listing(5, action="reprice", price="200.00"))
    assert market.feed(trade(10, price="300.00")) == []


def test_out_of_scope_reference_zero_and_free_public_governance() -> None:
    assert listed("0.00").feed(trade(10, price="500.00")) == []
    free = listed("10.00", source="public", pricing="free")
    assert free.feed(trade(10, price="0.00", purpose="public_governance")) == []
    [finding] = free.feed(trade(11, price="0.00", purpose="commercial"))
    assert finding.score == pytest.approx(10 / (0.01 * 3))  # a price of 0 counts as one fen


def test_configurable_ratio() -> None:
    market = Market(PriceOutlier(), RuleSettings(price_outlier_ratio=4))
    market.feed(listing(0, price="100.00"))
    assert market.feed(trade(10, price="399.99")) == []
    assert len(market.feed(trade(11, price="400.00"))) == 1


def test_out_of_order_listing_within_lateness_gives_the_reference() -> None:
    market = Market(PriceOutlier())
    t = trade(0, price="500.00")
    assert market.feed(t) == []
    market.feed(listing(-30, price="100.00"))
    assert market.feed(heartbeat(LATENESS_S - 1)) == []
    [finding] = market.feed(heartbeat(LATENESS_S))
    assert finding.event_ids == [t.event_id]


@pytest.mark.integration
def test_restore_keeps_judging_waiting_trades(store: ChdbStore) -> None:
    waiting = trade(0, price="500.00")
    store_events(store, [waiting])
    market = restored(PriceOutlier(), store, [waiting])
    market.feed(listing(-30, price="100.00"))
    [finding] = market.feed(heartbeat(LATENESS_S))
    assert finding.event_ids == [waiting.event_id]
