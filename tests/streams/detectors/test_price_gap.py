from __future__ import annotations

import random
from decimal import Decimal

import pytest

from models import Dims
from sinks.clickhouse.store import ChdbStore
from streams.alerts import AlertLedger
from streams.book import ProductListing
from streams.detectors.price_gap import CrossExchangePriceGap, price_gap
from tests.support.detector_market import Market, listing, ms, restored, store_alerts, store_events


def test_a_gap_at_just_below_and_at_twice_the_lowest_price() -> None:
    market = Market(CrossExchangePriceGap())
    assert market.feed(listing(0, exchange="SHDEX", price="100.00")) == []
    assert market.feed(listing(10, exchange="BJIDEX", price="199.99")) == []
    [finding] = market.feed(listing(20, exchange="BJIDEX", action="reprice", price="200.00"))
    assert finding.kind == "cross_exchange_price_gap"
    assert finding.score == pytest.approx(1.0)
    assert finding.exchange_id == "BJIDEX"  # where the change that opened the gap happened
    assert finding.dedup_key == f"cross_exchange_price_gap:P1:{ms(20)}"
    assert finding.window_start_ms == ms(20)
    assert "200.00 CNY" in finding.message and "100.00 CNY" in finding.message and "2.00×" in finding.message
    assert "2.00 倍" in finding.message_zh


def test_one_alert_per_episode_and_a_new_gap_is_a_new_incident() -> None:
    market = Market(CrossExchangePriceGap())
    ledger = AlertLedger()
    steps = [
        listing(0, exchange="SHDEX", price="100.00"),
        listing(10, exchange="BJIDEX", price="300.00"),  # gap opens
        listing(20, exchange="BJIDEX", action="reprice", price="350.00"),  # still open: same incident
        listing(30, exchange="SZDEX", price="120.00"),  # still open
        listing(40, exchange="BJIDEX", action="reprice", price="150.00"),  # closes
        listing(50, exchange="BJIDEX", action="reprice", price="400.00"),  # a new gap
    ]
    findings = market.each(steps)
    assert {f.dedup_key for f in findings} == {
        f"cross_exchange_price_gap:P1:{ms(10)}",
        f"cross_exchange_price_gap:P1:{ms(50)}",
    }
    alerts = [a for f in findings if (a := ledger.admit(f)) is not None]
    assert len(alerts) == 2 and alerts[0].dedup_key != alerts[1].dedup_key


def test_delisting_closes_the_gap_and_one_exchange_is_no_gap() -> None:
    market = Market(CrossExchangePriceGap())
    assert market.feed(listing(0, exchange="SHDEX", price="100.00")) == []
    assert len(market.feed(listing(1, exchange="BJIDEX", price="500.00"))) == 1
    assert market.feed(listing(2, exchange="BJIDEX", action="delist")) == []
    assert len(market.feed(listing(3, exchange="BJIDEX", price="500.00"))) == 1  # relisted: a new episode


def test_free_on_one_exchange_and_paid_on_another_is_a_gap_with_finite_score() -> None:
    market = Market(CrossExchangePriceGap())
    market.feed(listing(0, exchange="SHDEX", price="0.00"))
    [finding] = market.feed(listing(1, exchange="BJIDEX", price="1.00"))
    assert finding.score == pytest.approx(1.0 / (0.01 * 2))
    assert market.feed(listing(2, exchange="BJIDEX", action="reprice", price="0.00")) == []  # both free: no gap


@pytest.mark.integration
def test_restore_continues_an_alerted_episode(store: ChdbStore) -> None:
    events = [listing(0, exchange="SHDEX", price="100.00"), listing(10, exchange="BJIDEX", price="300.00")]
    live = Market(CrossExchangePriceGap())
    [finding] = live.each(events)
    ledger = AlertLedger()
    alert = ledger.admit(finding)
    assert alert is not None
    store_events(store, events)
    store_alerts(store, [alert])
    market = restored(CrossExchangePriceGap(), store, events)
    assert market.feed() == []  # nothing new to announce
    [again] = market.feed(listing(20, exchange="BJIDEX", action="reprice", price="320.00"))
    assert again.dedup_key == finding.dedup_key
    assert ledger.admit(again) is None


@pytest.mark.integration
def test_restore_announces_a_gap_that_was_never_alerted(store: ChdbStore) -> None:
    events = [listing(0, exchange="SHDEX", price="100.00"), listing(10, exchange="BJIDEX", price="300.00")]
    store_events(store, events)
    market = restored(CrossExchangePriceGap(), store, events)
    [finding] = market.feed()
    assert finding.window_start_ms == ms(10)
    assert market.feed() == []


def test_the_gap_is_between_the_highest_and_lowest_price_ties_broken_by_exchange_code() -> None:
    """`price_gap` picks in one pass what sorting by (price, exchange code) picks, on random books."""
    rng = random.Random(7)
    exchanges = ["BJIDEX", "GYBDX", "SHDEX", "SZDEX"]
    for _ in range(2_000):
        book = [
            ProductListing(
                code, "P1", None, None, None, None, None, price, False, frozenset(), True, 0, f"E-{code}", Dims()
            )
            for code in rng.sample(exchanges, rng.randint(0, 4))
            for price in [rng.choice([None, Decimal(0), Decimal(100), Decimal(100), Decimal("250.50")])]
        ]
        priced = sorted((s for s in book if s.list_price is not None), key=lambda s: (s.list_price, s.exchange_id))
        gap = price_gap(book, Decimal(2))
        if len(priced) < 2 or priced[-1].list_price == 0 or priced[-1].list_price < 2 * priced[0].list_price:
            assert gap is None
        else:
            assert gap is not None and (gap.highest, gap.lowest) == (priced[-1], priced[0])
