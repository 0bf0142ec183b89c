"""Wash-trading legs beyond the RAM bound go to local disk: the same cycles must be found either way."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.anomalies import KINDS
from settings import Settings
from sinks.clickhouse.memory import MemoryState, MemoryStore
from streams.detectors import wash_trading
from streams.detectors.base import Finding
from streams.detectors.legs import SpilledLegs
from streams.detectors.wash_trading import WashTrading
from streams.pipeline import Pipeline
from streams.records import Message
from tests.support.detector_market import Market, trade

HOUR = 3600


def random_trades(seed: int, count: int) -> list[list[Any]]:
    """Batches of trades among a few parties on two products and two exchanges, over ~40 hours of event time,
    arriving up to an hour out of order: many cycles, legs expiring, spans of disk dropped."""
    rng = random.Random(seed)
    parties = ["A", "B", "C", "D", "E"]
    batches: list[list[Any]] = []
    t = 0.0
    for n in range(count):
        if not batches or rng.random() < 0.2:
            batches.append([])
        t += rng.expovariate(1 / 90)
        seller, buyer = rng.sample(parties, 2) if rng.random() < 0.95 else ("A", "A")
        batches[-1].append(
            trade(
                max(0.0, t - rng.uniform(0, HOUR)),
                seller=seller,
                buyer=buyer,
                product=rng.choice(["P1", "P2"]),
                exchange=rng.choice(["SHDEX", "BJIDEX"]),
                event_id=f"E{n}",
            )
        )
    return batches


def findings_of(rule: WashTrading, batches: list[list[Any]]) -> list[Finding]:
    market = Market(rule)
    return [finding for batch in batches for finding in market.feed(*batch)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_legs_on_disk_give_the_same_cycles_as_legs_in_ram(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = random_trades(seed, 1_500)
    in_ram = findings_of(WashTrading(), batches)
    reads: list[str] = []
    sold_by = SpilledLegs.sold_by

    def counted(self: SpilledLegs, exchange_id: str, product_id: str, seller_id: str, horizon_ms: int) -> Any:
        reads.append(seller_id)
        return sold_by(self, exchange_id, product_id, seller_id, horizon_ms)

    monkeypatch.setattr(SpilledLegs, "sold_by", counted)
    for bound in (0, 7):
        reads.clear()
        rule = WashTrading(tmp_path, ram_legs=bound)
        on_disk = findings_of(rule, batches)
        assert [f.dedup_key for f in on_disk] == [f.dedup_key for f in in_ram]
        assert [(f.parties, f.event_ids, f.message) for f in on_disk] == [
            (f.parties, f.event_ids, f.message) for f in in_ram
        ]
        assert reads  # the disk was read for candidates ...
        assert rule.legs_in_ram <= bound + max(len(b) for b in batches)  # ... and RAM held no more than the bound
    assert len(in_ram) > 20


def test_a_used_leg_on_disk_is_not_used_twice(tmp_path: Path) -> None:
    market = Market(WashTrading(tmp_path, ram_legs=0))
    assert market.feed(trade(0, seller="A", buyer="B")) == []  # spilled as the batch ends
    [cycle] = market.feed(trade(60, seller="B", buyer="A"))
    assert cycle.parties == ["A", "B"]
    assert market.feed(trade(120, seller="B", buyer="A")) == []  # A→B is used up, on disk as in RAM
    assert market.detector.legs == 1  # type: ignore[attr-defined]  (the second B→A)


def test_ram_keeps_the_newest_legs_at_the_bound_and_the_oldest_go_to_disk(tmp_path: Path) -> None:
    """Once full, RAM stays at the bound (no filling and emptying): each batch's overflow, oldest first."""
    rule = WashTrading(tmp_path, ram_legs=3)
    market = Market(rule)
    for n in range(8):  # out of order within a batch: the oldest by event time go, not the first to arrive
        market.feed(trade(n * 60 + 30, seller="A", buyer=f"B{n}b"), trade(n * 60, seller="A", buyer=f"B{n}a"))
        assert rule.legs_in_ram == min(3, 2 * (n + 1))
        assert rule.legs == 2 * (n + 1)  # nothing lost: the rest are on disk
    in_ram = {buyer for graph in rule._legs.values() for to in graph.values() for buyer in to}
    assert in_ram == {"B7b", "B7a", "B6b"}
    # A cycle through a leg on disk is still found: B0a (the oldest, on disk) sells back to A.
    [cycle] = market.feed(trade(8 * 60, seller="B0a", buyer="A"))
    assert cycle.parties == ["A", "B0a"]


def test_disk_spans_behind_the_horizon_are_dropped(tmp_path: Path) -> None:
    rule = WashTrading(tmp_path, ram_legs=0)
    market = Market(rule)
    market.each([trade(h * HOUR, seller="A", buyer=f"B{h}") for h in range(30)])
    assert rule.legs == 25  # hours 5..29 are within 24 h of hour 29
    assert rule.legs_in_ram == 0
    assert rule._spilled.path is not None and rule._spilled.path.parent == tmp_path
    assert len(rule._spilled._spans) <= 7  # 24 h in 4 h spans, plus the one the horizon is in


async def _ignore(topic: str, key: bytes | None, value: bytes) -> None:
    return None


def run(
    values: list[bytes], settings: Settings, store: MemoryStore, batch: int = 50, start: int = 0
) -> list[str]:
    """The pipeline over `values[start:]` (earlier ones already stored), restoring first: its alerts' kinds and
    dedup keys."""
    alerts: list[str] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        if topic == "dm.alerts":
            alert = json.loads(value)
            alerts.append(f"{alert['kind']} {alert['dedup_key']}")

    running = Pipeline(settings, store, publish, topic_id="log", reader=MemoryState)
    running.restore()
    for first in range(start, len(values), batch):
        messages = [Message("dm.events", 0, first + i, None, v) for i, v in enumerate(values[first : first + batch])]
        asyncio.run(running.handle(messages, {0: len(values)}))
    return sorted(alerts)


@pytest.mark.slow  # four pipeline runs over a 40-minute market: ~40 s
def test_a_market_with_every_alert_kind_raises_the_same_alerts_with_legs_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator = MarketSimulator(
        SimulationConfig(
            seed=11, start=datetime(2026, 11, 20, 1, tzinfo=UTC), rate=8.0, duration_s=2_400.0,
            injections={kind: 2 for kind in KINDS},
        )
    )
    values = [value for _, value in simulator.messages()]
    in_ram = run(values, Settings(state_dir=tmp_path), MemoryStore())
    assert {alert.split()[0] for alert in in_ram} == set(KINDS)
    on_disk = run(values, Settings(state_dir=tmp_path, wash_trading_ram_legs=0), MemoryStore())
    assert on_disk == in_ram
    # Stopped halfway and restored (in parts of a few trades, spilling as it goes): the same alerts again.
    monkeypatch.setattr(wash_trading, "RESTORE_PART", 5)
    store = MemoryStore()
    settings = Settings(state_dir=tmp_path, wash_trading_ram_legs=3)
    half = len(values) // 2 // 50 * 50
    first = run(values[:half], settings, store)
    assert sorted(first + run(values, settings, store, start=half)) == in_ram
