from __future__ import annotations

from streams.detectors.self_dealing import SelfDealing
from tests.support.detector_market import Market, ms, trade


def test_a_trade_with_buyer_equal_to_seller_is_self_dealing() -> None:
    market = Market(SelfDealing())
    t = trade(10, seller="91310000MA1FL0XX0K", buyer="91310000MA1FL0XX0K", price="12000.00", quantity=2)
    [finding] = market.feed(t)
    assert finding.kind == "self_dealing"
    assert finding.dedup_key == f"self_dealing:SHDEX:{t.event_id}"
    assert finding.score == 1.0
    assert finding.parties == ["91310000MA1FL0XX0K"]
    assert finding.event_ids == [t.event_id]
    assert finding.window_start_ms == finding.window_end_ms == ms(10)
    assert "24,000.00 CNY" in finding.message and t.trade_id in finding.message
    assert "24,000.00 元" in finding.message_zh and "同一主体" in finding.message_zh


def test_different_parties_are_not_self_dealing() -> None:
    assert Market(SelfDealing()).feed(trade(0, seller="A", buyer="B")) == []


def test_a_late_self_trade_is_still_alerted() -> None:
    market = Market(SelfDealing())
    market.feed(trade(3600, seller="A", buyer="B"))
    [finding] = market.feed(trade(0, seller="A", buyer="A"))
    assert market.last_late
    assert finding.window_start_ms == ms(0)
