from __future__ import annotations

import pytest

from settings import RuleSettings
from sinks.clickhouse.store import ChdbStore
from streams.alerts import AlertLedger
from streams.detectors.wash_trading import WashTrading
from tests.support.detector_market import Market, heartbeat, restored, store_alerts, store_events, trade

DAY = 24 * 3600


def test_a_to_b_to_a_is_one_cycle() -> None:
    market = Market(WashTrading())
    first, back = trade(0, seller="A", buyer="B", price="1000.00"), trade(600, seller="B", buyer="A", price="1000.00")
    assert market.feed(first) == []
    [finding] = market.feed(back)
    assert finding.kind == "wash_trading" and finding.score == 1.0
    assert finding.parties == ["A", "B"]
    assert finding.event_ids == [first.event_id, back.event_id]
    assert finding.dedup_key.startswith("wash_trading:SHDEX:P1:")
    assert "A → B → A" in finding.message and "10 minutes" in finding.message and "2,000.00 CNY" in finding.message
    assert "闭环交易 A → B → A" in finding.message_zh


def test_a_to_b_to_c_to_a_is_one_cycle() -> None:
    market = Market(WashTrading())
    findings = market.each(
        [trade(0, seller="A", buyer="B"), trade(60, seller="B", buyer="C"), trade(120, seller="C", buyer="A")]
    )
    [finding] = findings
    assert finding.parties == ["A", "B", "C"]


def test_four_parties_exceed_the_limit_unless_configured() -> None:
    legs = [trade(0, seller="A", buyer="B"), trade(1, seller="B", buyer="C"), trade(2, seller="C", buyer="D"),
            trade(3, seller="D", buyer="A")]
    assert Market(WashTrading()).each(legs) == []
    assert len(Market(WashTrading(), RuleSettings(wash_trading_max_parties=4)).each(legs)) == 1


def test_the_cycle_must_close_within_24_hours() -> None:
    at_limit = Market(WashTrading()).each([trade(0, seller="A", buyer="B"), trade(DAY, seller="B", buyer="A")])
    assert len(at_limit) == 1
    beyond = Market(WashTrading()).each([trade(0, seller="A", buyer="B"), trade(DAY + 0.001, seller="B", buyer="A")])
    assert beyond == []


def test_out_of_order_arrival_finds_the_first_seller() -> None:
    market = Market(WashTrading())
    back, first = trade(600, seller="B", buyer="A"), trade(0, seller="A", buyer="B")
    [finding] = market.each([back, first])
    assert finding.parties == ["A", "B"] and finding.event_ids == [first.event_id, back.event_id]


def test_legs_out_of_event_time_order_are_not_a_cycle() -> None:
    # A→B at 0, C→A at 10, B→C at 20: no reading of the loop follows time.
    market = Market(WashTrading())
    legs = [trade(0, seller="A", buyer="B"), trade(10, seller="C", buyer="A"), trade(20, seller="B", buyer="C")]
    assert market.each(legs) == []


def test_self_trades_are_not_legs() -> None:
    market = Market(WashTrading())
    assert market.each([trade(0, seller="A", buyer="A"), trade(1, seller="A", buyer="A")]) == []


def test_each_leg_closes_at_most_one_cycle_and_one_cycle_is_one_alert() -> None:
    market = Market(WashTrading())
    legs = [trade(t, seller=s, buyer=b) for t, (s, b) in enumerate([("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")])]
    findings = market.each(legs)
    pairs = [[legs[0].event_id, legs[1].event_id], [legs[2].event_id, legs[3].event_id]]
    assert [f.event_ids for f in findings] == pairs
    assert len({f.dedup_key for f in findings}) == 2
    assert market.detector.legs == 0  # type: ignore[attr-defined]
    ledger = AlertLedger()
    assert [ledger.admit(f) is not None for f in findings + findings] == [True, True, False, False]


def test_other_products_and_exchanges_do_not_mix() -> None:
    products = [trade(0, seller="A", buyer="B", product="P1"), trade(1, seller="B", buyer="A", product="P2")]
    assert Market(WashTrading()).each(products) == []
    exchanges = [trade(2, seller="A", buyer="B", exchange="BJIDEX"), trade(3, seller="B", buyer="A", exchange="SHDEX")]
    assert Market(WashTrading()).each(exchanges) == []


def test_state_is_pruned_after_24_hours_of_event_time() -> None:
    market = Market(WashTrading())
    market.each(trade(t, seller="A", buyer=f"B{t}") for t in range(100))
    assert market.detector.legs == 100  # type: ignore[attr-defined]
    market.feed(heartbeat(DAY + 99.5))
    assert market.detector.legs == 0  # type: ignore[attr-defined]
    assert market.feed(trade(DAY + 100, seller="B5", buyer="A")) == []


@pytest.mark.integration
def test_restore_rebuilds_legs_but_not_the_ones_already_alerted(store: ChdbStore) -> None:
    """Legs come back from the store as Arrow columns straight to disk: each as it was (the cycle it closes after
    the restore names the same trades and amounts as one closed live), a self-trade never a leg."""
    old = [
        trade(0, seller="A", buyer="B"),
        trade(10, seller="B", buyer="A"),
        trade(20, seller="C", buyer="D", price="12.50", quantity=3),
        trade(25, seller="D", buyer="D"),
    ]
    live = Market(WashTrading())
    [finding] = live.each(old)
    alert = AlertLedger().admit(finding)
    assert alert is not None
    store_events(store, old)
    store_alerts(store, [alert])
    market = restored(WashTrading(), store, old)
    assert market.detector.legs == 1  # type: ignore[attr-defined]  (C→D; A→B and B→A are used up)
    assert market.feed(trade(30, seller="A", buyer="B")) == []
    back = trade(40, seller="D", buyer="C")
    [again] = market.feed(back)
    assert again.parties == ["C", "D"]
    assert again == Market(WashTrading()).each([old[2], back])[0]  # event ids, window, 37.50 + 100.00 CNY
