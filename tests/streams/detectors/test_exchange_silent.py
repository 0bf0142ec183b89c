from __future__ import annotations

from random import Random

import numpy as np
import pytest

from settings import RuleSettings
from sinks.clickhouse.store import ChdbStore
from streams.alerts import AlertLedger
from streams.book import ProductBook
from streams.detectors.base import Finding, MarketContext
from streams.detectors.exchange_silent import ExchangeSilent
from tests.support.detector_market import Market, heartbeat, ms, restored, store_events, trade

SILENT_S = 120


def test_falling_more_than_120_seconds_behind_the_watermark() -> None:
    market = Market(ExchangeSilent())
    last = heartbeat(0, "BJIDEX")
    market.feed(last, heartbeat(0, "SHDEX"))
    assert market.feed(heartbeat(SILENT_S, "SHDEX")) == []  # exactly 120 s behind: not yet
    [finding] = market.feed(heartbeat(SILENT_S + 0.001, "SHDEX"))
    assert finding.kind == "exchange_silent" and finding.exchange_id == "BJIDEX"
    assert finding.dedup_key == f"exchange_silent:BJIDEX:{ms(0)}"
    assert finding.score == pytest.approx((SILENT_S + 0.001) / SILENT_S)
    assert finding.event_ids == [last.event_id]
    assert finding.window_start_ms == ms(0) and finding.window_end_ms == ms(SILENT_S + 0.001)
    assert "120.0 seconds" in finding.message and "Beijing International Big Data Exchange" in finding.message
    assert "120.0 秒" in finding.message_zh


def test_one_alert_per_silence_and_a_new_silence_after_it_sends_again() -> None:
    market = Market(ExchangeSilent())
    market.feed(heartbeat(0, "BJIDEX"), heartbeat(0, "SHDEX"))
    findings = market.each(heartbeat(t, "SHDEX") for t in range(10, 600, 10))
    assert [f.exchange_id for f in findings] == ["BJIDEX"]
    assert market.feed(heartbeat(600, "BJIDEX")) == []  # back: the silence is over
    later = market.each(heartbeat(t, "SHDEX") for t in range(610, 800, 10))
    assert [f.dedup_key for f in later] == [f"exchange_silent:BJIDEX:{ms(600)}"]


def test_a_silence_that_starts_and_ends_within_one_batch_is_alerted() -> None:
    market = Market(ExchangeSilent())
    batch = [heartbeat(0, "BJIDEX"), *(heartbeat(t, "SHDEX") for t in range(0, 200, 10)), heartbeat(200, "BJIDEX")]
    [finding] = market.feed(*batch)
    assert finding.exchange_id == "BJIDEX" and finding.window_end_ms == ms(130)


def test_a_lagging_exchange_that_still_sends_is_one_silence_until_it_catches_up() -> None:
    market = Market(ExchangeSilent())
    market.feed(heartbeat(0, "BJIDEX"), heartbeat(0, "SHDEX"))
    findings = []
    for t in range(10, 1000, 10):
        findings += market.feed(heartbeat(t, "SHDEX"), heartbeat(t - 200, "BJIDEX"))  # 200 s behind, still sending
    assert len(findings) == 1


def test_out_of_order_within_the_threshold_is_not_silence() -> None:
    market = Market(ExchangeSilent())
    assert market.feed(heartbeat(0, "BJIDEX"), heartbeat(100, "SHDEX"), heartbeat(90, "BJIDEX")) == []
    assert market.feed(heartbeat(200, "SHDEX")) == []  # BJIDEX is 110 s behind


@pytest.mark.integration
def test_restore_keeps_the_same_incident_and_keeps_watching(store: ChdbStore) -> None:
    events = [heartbeat(0, "BJIDEX"), trade(5, exchange="BJIDEX"), heartbeat(0, "SHDEX"), heartbeat(200, "SHDEX")]
    live = Market(ExchangeSilent())
    [finding] = live.feed(*events)
    ledger = AlertLedger()
    assert ledger.admit(finding) is not None
    store_events(store, events)
    market = restored(ExchangeSilent(), store, events)
    [again] = market.feed()
    assert again.dedup_key == finding.dedup_key == f"exchange_silent:BJIDEX:{ms(5)}"
    assert ledger.admit(again) is None
    assert market.feed(heartbeat(300, "BJIDEX")) == []  # back, and SHDEX is only 100 s behind
    assert [f.exchange_id for f in market.feed(heartbeat(330, "BJIDEX"))] == ["SHDEX"]


class TestWallClock:
    """The live rule: nothing for 120 s of wall-clock time while other exchanges keep sending live events."""

    def live_market(self, rules: RuleSettings | None = None) -> Market:
        market = Market(ExchangeSilent(), rules)
        # BJIDEX's clock runs 10 minutes ahead, so event time alone never sees it fall behind.
        market.feed(heartbeat(600, "BJIDEX"), heartbeat(0, "SHDEX"))
        return market

    def test_silent_while_others_keep_sending(self) -> None:
        market = self.live_market()
        assert market.detector.tick(market.ctx, ms(0)) == []
        for t in range(10, 130, 10):
            market.feed(heartbeat(t, "SHDEX"))
            assert market.detector.tick(market.ctx, ms(t)) == []
        market.feed(heartbeat(130, "SHDEX"))
        [finding] = market.detector.tick(market.ctx, ms(130))
        assert finding.exchange_id == "BJIDEX" and finding.dedup_key == f"exchange_silent:BJIDEX:{ms(600)}"
        assert finding.score == pytest.approx(130 / 120)
        assert "while other exchanges kept sending" in finding.message and "130 seconds" in finding.message
        market.feed(heartbeat(140, "SHDEX"))
        assert market.detector.tick(market.ctx, ms(140)) == []  # one alert per silence

    def test_not_when_everyone_is_quiet(self) -> None:
        market = self.live_market()
        market.detector.tick(market.ctx, ms(0))
        assert market.detector.tick(market.ctx, ms(500)) == []

    def test_not_for_a_replay_whose_event_times_are_far_from_the_clock(self) -> None:
        market = self.live_market()
        far = ms(0) + 30 * 24 * 3600 * 1000  # replaying last month's file, slowly
        market.detector.tick(market.ctx, far)
        for t in range(10, 300, 10):
            market.feed(heartbeat(t, "SHDEX"))
            assert market.detector.tick(market.ctx, far + t * 1000) == []

    def test_not_when_disabled(self) -> None:
        market = self.live_market(RuleSettings(exchange_silent_wallclock=False))
        market.detector.tick(market.ctx, ms(0))
        for t in range(10, 300, 10):
            market.feed(heartbeat(t, "SHDEX"))
            assert market.detector.tick(market.ctx, ms(t)) == []


def _one_by_one(
    rule: ExchangeSilent, batch: list[tuple[str | None, str, int]], start_ms: int, ctx: MarketContext
) -> list[Finding]:
    """The reference: each event sighted in its place, against the watermark it makes."""
    findings: list[Finding] = []
    watermark = start_ms
    for exchange_id, event_id, at in batch:
        ctx.watermark_ms = watermark = max(watermark, at)
        if exchange_id is not None:
            findings.extend(rule.sighted(exchange_id, event_id, at, ctx))
    return findings


def test_a_batch_taken_whole_finds_exactly_what_its_events_one_by_one_find() -> None:
    """Random batches over a few exchanges, some falling quiet, some late, some only event time passing (a
    redelivered message): `sighted_batch` must leave the same state and find the same silences, alike."""
    codes = ["SHDEX", "BJIDEX", "SZDEX", "GZDEX"]
    paths = {"quiet": 0, "replayed": 0}
    for seed in range(300):
        random = Random(seed)
        rules = RuleSettings()
        one, whole = ExchangeSilent(), ExchangeSilent()
        ctxs = [MarketContext(rules=rules, book=ProductBook(), allowed_lateness_ms=60_000) for _ in range(2)]
        clock, number = 1_795_000_000_000, 0
        for _ in range(6):
            batch: list[tuple[str | None, str, int]] = []
            quiet_ones = random.sample(codes, random.randint(0, 2))
            for _ in range(random.randint(1, 60)):
                clock += random.choice([0, 50, 1_000, 20_000, 90_000])
                sender = random.choice([c for c in codes if c not in quiet_ones] or codes)
                late = random.random() < 0.1
                number += 1
                at = clock - (random.randint(1, 300_000) if late else 0)
                batch.append((None if random.random() < 0.05 else sender, f"E-{number}", at))
            start = ctxs[0].watermark_ms
            expected = _one_by_one(one, batch, start, ctxs[0])
            at = np.array([a for _, _, a in batch], np.int64)
            watermarks = np.maximum.accumulate(np.maximum(at, start))
            quiet_before = whole._quiet  # which path the batch took, to know both were tried
            taken = []
            whole._quiet = (  # type: ignore[method-assign]
                lambda *args, taken=taken, quiet_before=quiet_before: taken.append(quiet_before(*args)) or taken[-1]
            )
            found = whole.sighted_batch([c for c, _, _ in batch], [e for _, e, _ in batch], at, watermarks, ctxs[1])
            del whole._quiet
            paths["quiet" if all(taken) else "replayed"] += 1
            ctxs[1].watermark_ms = int(watermarks[-1])
            assert [(f.dedup_key, f.message) for f in found] == [(f.dedup_key, f.message) for f in expected], seed
            assert whole._senders == one._senders, seed
            assert [f.dedup_key for f in whole.advance(ctxs[1])] == [f.dedup_key for f in one.advance(ctxs[0])]
    assert paths["quiet"] > 100 and paths["replayed"] > 100, paths
