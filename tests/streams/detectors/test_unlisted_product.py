from __future__ import annotations

import pytest

from sinks.clickhouse.store import ChdbStore
from streams.alerts import AlertLedger
from streams.detectors.unlisted_product import UnlistedProduct
from tests.support.detector_market import LATENESS_S, Market, heartbeat, listing, restored, store_events, trade


def test_a_trade_of_a_product_active_on_the_exchange_is_fine() -> None:
    market = Market(UnlistedProduct())
    market.feed(listing(0))
    assert market.feed(trade(10), heartbeat(10 + LATENESS_S)) == []
    assert market.detector.held == 0  # type: ignore[attr-defined]


def test_an_unlisted_trade_is_alerted_once_the_allowed_lateness_has_passed() -> None:
    market = Market(UnlistedProduct())
    t = trade(10, product="DP-1", seller="S", buyer="B", price="2500.00")
    assert market.feed(t) == []
    assert market.feed(heartbeat(10 + LATENESS_S - 0.001)) == []  # just below: a listing may still come
    [finding] = market.feed(heartbeat(10 + LATENESS_S))
    assert finding.kind == "unlisted_product"
    assert finding.dedup_key == "unlisted_product:SHDEX:DP-1:2026-11-21"
    assert finding.event_ids == [t.event_id] and finding.parties == ["S", "B"]
    assert "2,500.00 CNY" in finding.message and "neither listed" in finding.message
    assert "未在该机构挂牌" in finding.message_zh


def test_a_listing_arriving_within_the_lateness_after_the_trade_counts() -> None:
    market = Market(UnlistedProduct())
    market.feed(trade(10))
    market.feed(listing(20))  # listed after the trade, within the allowed lateness
    assert market.feed(heartbeat(10 + LATENESS_S)) == []


def test_a_listing_after_the_lateness_is_too_late() -> None:
    market = Market(UnlistedProduct())
    market.feed(trade(10))
    assert len(market.feed(heartbeat(10 + LATENESS_S))) == 1
    assert market.feed(listing(10 + LATENESS_S + 1)) == []


def test_recognition_through_an_active_listing_elsewhere() -> None:
    market = Market(UnlistedProduct())
    market.feed(listing(0, exchange="BJIDEX", recognized_by=["SHDEX"]))
    assert market.feed(trade(10, exchange="SHDEX"), heartbeat(10 + LATENESS_S)) == []
    assert len(market.feed(trade(400, exchange="SZDEX"), heartbeat(400 + LATENESS_S))) == 1  # not recognised by SZDEX


def test_delisted_before_the_trade_is_unlisted_but_delisted_after_it_is_not() -> None:
    market = Market(UnlistedProduct())
    market.feed(listing(0), listing(100, action="delist"))
    assert market.feed(trade(50)) == []  # happened before the delisting, arrived after it
    assert market.feed(heartbeat(50 + LATENESS_S)) == []
    assert len(market.feed(trade(150), heartbeat(150 + LATENESS_S))) == 1


def test_one_alert_per_exchange_product_and_china_standard_time_day() -> None:
    market = Market(UnlistedProduct())
    # 10:00 CST; 15:59 and 16:01 CST straddle 08:00 UTC (same day in CST); 23:59 and 00:01 CST do not.
    times = [0, 6 * 3600 - 60, 6 * 3600 + 60, 14 * 3600 - 60, 14 * 3600 + 60]
    findings = [f for t in times for f in market.feed(trade(t), heartbeat(t + LATENESS_S))]
    assert [f.dedup_key.rsplit(":", 1)[1] for f in findings] == ["2026-11-21"] * 4 + ["2026-11-22"]
    ledger = AlertLedger()
    alerts = [a for f in findings if (a := ledger.admit(f)) is not None]
    assert len(alerts) == 2


def test_held_trades_are_bounded_by_the_lateness() -> None:
    market = Market(UnlistedProduct())
    market.each(trade(t, product=f"P{t}") for t in range(0, 600, 10))
    assert market.detector.held <= (LATENESS_S // 10) + 1  # type: ignore[attr-defined]


@pytest.mark.integration
def test_restore_from_clickhouse_keeps_detecting(store: ChdbStore) -> None:
    before = [listing(0, product="OK"), trade(10, product="OK"), trade(20, product="NOPE"), heartbeat(60)]
    store_events(store, before)
    market = restored(UnlistedProduct(), store, before)
    assert market.detector.held == 1  # type: ignore[attr-defined]
    [finding] = market.feed(heartbeat(20 + LATENESS_S))
    assert finding.product_id == "NOPE"
    assert len(market.feed(trade(400, product="NEW"), heartbeat(400 + LATENESS_S))) == 1
