from __future__ import annotations

from collections.abc import Sequence

import pytest

from models import AnyEvent
from settings import RuleSettings
from sinks.clickhouse.store import ChdbStore
from streams.detectors.volume_spike import VolumeSpike
from tests.support.detector_market import LATENESS_S, T0_MS, Market, heartbeat, ms, restored, store_events, trade


def minutes(amounts: Sequence[str | None], exchange: str = "SHDEX") -> list[AnyEvent]:
    """One heartbeat at the start (first seen), then one trade per minute of the given amount (None: no trade)."""
    events: list[AnyEvent] = [heartbeat(0, exchange)]
    for minute, amount in enumerate(amounts):
        if amount is not None:
            events.append(trade(minute * 60 + 30, exchange=exchange, price=amount, seller="S", buyer=f"B{minute}"))
    return events


def close(minute: int, exchange: str = "SHDEX") -> AnyEvent:
    """An event that moves the watermark to exactly the moment window `minute` closes."""
    return heartbeat((minute + 1) * 60 + LATENESS_S, exchange)


@pytest.mark.parametrize(
    ("spike", "fires", "score"),
    [("100000.00", True, 1.0), ("99999.99", False, None), ("150000.00", True, 1.5)],
)
def test_spike_at_just_below_and_above_five_times_the_median(spike: str, fires: bool, score: float | None) -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 10 + [spike]))
    findings = market.feed(close(10))
    assert bool(findings) is fires
    if fires:
        [finding] = findings
        assert finding.kind == "volume_spike" and finding.score == pytest.approx(score)
        assert finding.window_start_ms == ms(600) and finding.window_end_ms == ms(660)
        assert finding.dedup_key == f"volume_spike:SHDEX:{ms(600)}"
        assert "20,000.00 CNY" in finding.message and f"{float(spike):,.2f} CNY" in finding.message
        assert "previous 10 one-minute windows" in finding.message
        assert "此前 10 个一分钟窗口中位数" in finding.message_zh


def test_the_window_closes_only_after_its_end_plus_the_allowed_lateness() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 10 + ["200000.00"]))
    assert market.feed(heartbeat(11 * 60 + LATENESS_S - 0.001)) == []
    assert len(market.feed(heartbeat(11 * 60 + LATENESS_S))) == 1


def test_needs_ten_previous_windows() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 9 + ["500000.00"]))
    assert market.feed(close(9)) == []


def test_needs_the_minimum_amount() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["10000.00"] * 10 + ["99999.99"]))  # 10x the median, but below 100,000 CNY
    assert market.feed(close(10)) == []


def test_empty_windows_count_as_zero() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 4 + [None] * 6 + ["100000.00"]))  # median of the 10 windows is 0
    [finding] = market.feed(close(10))
    assert finding.score == pytest.approx(1.0)  # amount / minimum amount when the median is 0
    assert "median of its previous 10 was 0.00 CNY" in finding.message


def test_windows_before_the_exchange_was_first_seen_do_not_count() -> None:
    market = Market(VolumeSpike())
    market.feed(heartbeat(0, "BJIDEX"), heartbeat(20 * 60, "BJIDEX"))  # the market runs for 20 minutes
    events = [trade(20 * 60 + 30 + m * 60, price="10.00") for m in range(5)]
    market.feed(heartbeat(20 * 60), *events, trade(25 * 60 + 30, price="500000.00"))
    assert market.feed(close(25)) == []  # SHDEX has only 5 windows of history


def test_only_the_last_30_windows_make_the_median() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["1.00"] * 20 + ["100000.00"] * 30 + ["500000.00"]))
    [finding] = market.feed(close(50))
    assert finding.score == pytest.approx(1.0)  # median 100,000 over the last 30, not the older 1.00s


def test_late_trades_are_ignored_out_of_order_within_lateness_counts() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 10))
    market.feed(heartbeat(12 * 60))  # the watermark is past minute 10, within the lateness
    market.feed(trade(10 * 60 + 5, price="100000.00"))  # out of order, on time
    [finding] = market.feed(close(10))
    assert finding.window_start_ms == ms(600)
    market.feed(trade(10 * 60 + 6, price="900000.00"))  # late: its window is closed
    assert market.last_late
    assert market.feed(close(11)) == []


def test_one_alert_per_window_and_bounded_state() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 10 + ["100000.00"]))
    assert len(market.feed(close(10))) == 1
    assert market.feed(close(10)) == []
    market.feed(heartbeat(10 * 24 * 3600))  # ten days later: a long run of empty windows
    state = market.detector._exchanges["SHDEX"]  # type: ignore[attr-defined]
    assert len(state.history) == 30 and not state.open and set(state.history) == {0}


def test_configurable_thresholds() -> None:
    rules = RuleSettings(volume_spike_ratio=2, volume_spike_min_amount=1000, volume_spike_min_windows=3)
    market = Market(VolumeSpike(), rules)
    market.feed(*minutes(["1000.00"] * 3 + ["2000.00"]))
    assert len(market.feed(close(3))) == 1


@pytest.mark.integration
def test_restore_from_clickhouse_keeps_detecting(store: ChdbStore) -> None:
    before = minutes(["20000.00"] * 12)
    before.append(heartbeat(12 * 60 + 30))
    store_events(store, before)
    market = restored(VolumeSpike(), store, before)
    state = market.detector._exchanges["SHDEX"]  # type: ignore[attr-defined]
    assert len(state.history) == 7  # minutes 0..6 closed at the restored watermark (12:30 - 5:00)
    assert sorted(state.open) == [T0_MS // 60_000 + m for m in range(7, 12)]
    market.feed(trade(12 * 60 + 40, price="100000.00"))
    [finding] = market.feed(close(12))
    assert finding.window_start_ms == ms(720) and finding.score == pytest.approx(1.0)


@pytest.mark.integration
def test_restore_skips_trades_that_were_late(store: ChdbStore) -> None:
    before = minutes(["20000.00"] * 12)
    spike = trade(5 * 60, price="9000000.00")
    store_events(store, [*before, spike], late=[spike.event_id])
    market = restored(VolumeSpike(), store, before)
    assert max(market.detector._exchanges["SHDEX"].history) == 20000  # type: ignore[attr-defined]



def test_a_busy_window_names_its_fifty_largest_trades_and_counts_them_all() -> None:
    market = Market(VolumeSpike())
    market.feed(*minutes(["20000.00"] * 10))
    # 437 trades in minute 10, amounts with many ties (ties go to the smaller event id), in no particular order.
    busy = [
        trade(600 + n % 60, price=f"{1000 + (n * 7919) % 97 * 50}.00", seller=f"S{n}", buyer=f"B{n}",
              event_id=f"E{(n * 389) % 437:03d}")
        for n in range(437)
    ]
    market.feed(*busy)
    [finding] = market.feed(close(10))
    expected = sorted(busy, key=lambda t: (-t.amount, t.event_id))[:50]
    assert finding.event_ids == [t.event_id for t in expected]
    assert "in 437 trade(s)" in finding.message and "（437 笔）" in finding.message_zh
    assert finding.parties == list(dict.fromkeys(p for t in expected for p in (t.seller_id, t.buyer_id)))[:10]
