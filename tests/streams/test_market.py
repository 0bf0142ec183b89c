"""Two workers sharing four partitions, the market stage in the one that owns partition 0, against one worker
on one partition: the same rows, totals to the fen and the same alerts, every kind injected; also when the
stage stops midway and another takes over, and when a rule change reaches one worker only.

On the real embedded store. The two workers are two pipelines in this one process sharing one store handle,
fed fetch by fetch as their consumers would be (worker processes on `dmm store-serve`:
tests/end_to_end/test_workers.py). The runs take turns on one store (one chdb session at a time)."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from pydantic import SecretStr

from dmm.evaluation import alert_from_row, score
from dmm.simulator import MarketSimulator
from settings import Settings
from sinks.clickhouse import queries
from sinks.clickhouse.store import ChdbStore
from streams.market import MarketStage
from streams.pipeline import Pipeline
from streams.records import Message
from streams.rules import OpsKey
from tests.support.stack import every_kind_scenario

pytestmark = pytest.mark.integration

TOPIC = "dm.events"
FETCH = 300  # records per partition per fetch

Workers = list[tuple[Pipeline, set[int]]]


@dataclass
class Scenario:
    simulation: MarketSimulator
    one: dict[int, list[Message]]  # the log on one partition
    four: dict[int, list[Message]]  # the same messages on four, by key as the producer's partitioner would


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    simulation = every_kind_scenario()
    produced = list(simulation.messages())
    four: dict[int, list[Message]] = {p: [] for p in range(4)}
    for key, value in produced:
        partition = zlib.crc32(key) % 4  # one product, one partition
        four[partition].append(Message(TOPIC, partition, len(four[partition]), key, value))
    assert all(four.values()), "every partition carries events"
    one = {0: [Message(TOPIC, 0, offset, key, value) for offset, (key, value) in enumerate(produced)]}
    return Scenario(simulation, one, four)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    opened = ChdbStore(tmp_path_factory.mktemp("market") / "chdb")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def one_worker(scenario: Scenario, store: ChdbStore) -> dict[str, object]:
    fresh(store)
    asyncio.run(consume([(worker(store, {0}, "all"), {0})], scenario.one, lambda _: None))
    return outcome(store)


async def _drop(topic: str, key: bytes | None, value: bytes) -> None:
    return None


def fresh(store: ChdbStore) -> None:
    store.command("DROP DATABASE IF EXISTS datamarket SYNC")
    store.apply_schema()


def worker(store: ChdbStore, owned: set[int], scope: str) -> Pipeline:
    pipeline = Pipeline(Settings(), store, _drop, topic_id="log-1", scope=scope)  # type: ignore[arg-type]
    pipeline.restore()
    pipeline.surveillance.clock.expect(owned)
    return pipeline


def two_workers(store: ChdbStore) -> Workers:
    return [(worker(store, {0, 1}, "local"), {0, 1}), (worker(store, {2, 3}, "local"), {2, 3})]


class Wall:
    """The stage's wall clock: real time, until the feed is over and the test lets the partitions go quiet
    (the stage releases a partition only once nothing was stored for it for `partition_idle_s`)."""

    def __init__(self) -> None:
        self.ahead_ms = 0.0

    def __call__(self) -> float:
        return time.time() * 1000 + self.ahead_ms

    def pass_idle(self) -> None:
        self.ahead_ms += 2 * Settings().partition_idle_s * 1000


def a_stage(store: ChdbStore, wall: Wall) -> MarketStage:
    stage = MarketStage(Settings(), store, "log-1", partitions=4, wall_ms=wall)
    stage.restore()
    return stage


async def consume(
    workers: Workers, log: dict[int, list[Message]], stage_at: Callable[[int], MarketStage | None]
) -> None:
    """Each worker fetches up to FETCH records of each of its partitions in turn, until all are processed;
    after round n, `stage_at(n)` (if any) polls in the first worker and records its progress; once all is
    stored, `stage_at(-1)` twice (its stage is then expected to let the partitions go quiet)."""
    position = dict.fromkeys(log, 0)
    ends: dict[int, int | None] = {p: len(messages) for p, messages in log.items()}
    rounds = 0
    while any(position[p] < len(log[p]) for p in log) or any(w.holding for w, _ in workers):
        for pipeline, owned in workers:
            fetched = [m for p in sorted(owned) for m in log[p][position[p] : position[p] + FETCH]]
            for p in owned:
                position[p] = min(len(log[p]), position[p] + FETCH)
            await pipeline.handle(fetched, {p: ends[p] for p in owned})
        stage = stage_at(rounds)
        if stage is not None:
            await workers[0][0].emit_alerts(stage.poll, then=stage.record)
        rounds += 1
    for _ in range(2):  # all partitions quiet: what was held is released and the market clock runs to the end
        stage = stage_at(-1)
        if stage is not None:
            await workers[0][0].emit_alerts(stage.poll, then=stage.record)


def outcome(store: ChdbStore) -> dict[str, object]:
    rows = store.rows(
        "SELECT toString(exchange_id) AS exchange_id, toString(sum(amount)) AS amount FROM datamarket.trades FINAL "
        "GROUP BY exchange_id"
    )
    counts = store.rows(
        "SELECT (SELECT count() FROM datamarket.listings FINAL) + (SELECT count() FROM datamarket.trades FINAL) "
        "+ (SELECT count() FROM datamarket.usage FINAL) + (SELECT count() FROM datamarket.heartbeats FINAL) AS n"
    )[0]
    return {
        "alerts": [alert_from_row(r) for r in store.rows(queries.alerts_in_detection_order("datamarket"))],
        "amounts": {row["exchange_id"]: Decimal(row["amount"]) for row in rows},
        "events": int(counts["n"]),
    }


def assert_alike(simulation: MarketSimulator, one: dict[str, object], two: dict[str, object]) -> None:
    assert two["events"] == one["events"] and two["amounts"] == one["amounts"]
    kinds = {alert.kind for alert in two["alerts"]}  # type: ignore[attr-defined]
    assert {"volume_spike", "exchange_silent"} <= kinds, "the market-wide rules fired, from the market stage"
    for result in (one, two):
        report = score(simulation.incidents, result["alerts"])  # type: ignore[arg-type]
        assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    keys = sorted(a.dedup_key for a in two["alerts"])  # type: ignore[attr-defined]
    assert keys == sorted(a.dedup_key for a in one["alerts"])  # type: ignore[attr-defined]


def test_two_workers_with_the_market_stage_alert_exactly_as_one(
    scenario: Scenario, store: ChdbStore, one_worker: dict[str, object]
) -> None:
    fresh(store)
    workers = two_workers(store)
    wall = Wall()
    stage = a_stage(store, wall)

    def stage_at(round_: int) -> MarketStage:
        if round_ < 0:
            wall.pass_idle()
        return stage

    asyncio.run(consume(workers, scenario.four, stage_at))
    assert_alike(scenario.simulation, one_worker, outcome(store))


def test_a_stage_that_stops_midway_is_replaced_without_losing_or_repeating_an_alert(
    scenario: Scenario, store: ChdbStore, one_worker: dict[str, object]
) -> None:
    fresh(store)
    workers = two_workers(store)
    wall = Wall()
    stages = {"first": a_stage(store, wall)}

    def stage_at(round_: int) -> MarketStage | None:
        if 0 <= round_ < 2:
            return stages["first"]
        if round_ >= 0:  # the leader is gone: the workers store on, nobody reads the market
            return None
        if "second" not in stages:  # partition 0's new owner, at the end: restored from what the first recorded
            stages["second"] = a_stage(store, wall)
        wall.pass_idle()
        return stages["second"]

    asyncio.run(consume(workers, scenario.four, stage_at))
    assert "second" in stages
    assert_alike(scenario.simulation, one_worker, outcome(store))


def test_a_rule_change_received_by_one_worker_reaches_the_other_through_the_store(store: ChdbStore) -> None:
    fresh(store)
    (received, _), (other, _) = two_workers(store)
    stage = a_stage(store, Wall())
    change = b'{"set": {"exchange_silent_s": 300, "price_outlier_ratio": "4"}, "actor": "ops-li"}'
    received.ops_key = key = OpsKey.configured(SecretStr("5e" * 32))  # as DMM_OPS_KEY would
    asyncio.run(received.change_rules(change, key.sign(change)))  # dm.rules reaches one member of the group
    assert other.surveillance.ctx.rules.exchange_silent_s == Settings().rules.exchange_silent_s
    asyncio.run(other.tick())
    stage.tick(0)
    for rules in (other.surveillance.ctx.rules, stage.surveillance.ctx.rules):
        assert (rules.exchange_silent_s, str(rules.price_outlier_ratio)) == (300, "4")
