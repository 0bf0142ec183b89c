"""Two workers sharing four partitions, the market stage in the one that owns partition 0, against one worker
on one partition: the same rows, totals to the fen and the same alerts, every kind injected.

On the real embedded store. The two workers are two pipelines in this one process sharing one store handle,
fed fetch by fetch as their consumers would be: the embedded store opens in one process only, so separate
worker processes need the ClickHouse server (what the market stage adds is tested here either way)."""

from __future__ import annotations

import asyncio
import zlib
from decimal import Decimal
from pathlib import Path

from dmm.evaluation import alert_from_row, score
from settings import Settings
from sinks.clickhouse import queries
from sinks.clickhouse.store import ChdbStore
from streams.market import MarketStage
from streams.pipeline import Message, Pipeline
from tests.end_to_end.conftest import every_kind_scenario

TOPIC = "dm.events"
FETCH = 300  # records per partition per fetch


async def _drop(topic: str, key: bytes | None, value: bytes) -> None:
    return None


def worker(store: ChdbStore, owned: set[int], scope: str) -> Pipeline:
    pipeline = Pipeline(Settings(), store, _drop, topic_id="log-1", scope=scope)  # type: ignore[arg-type]
    pipeline.restore()
    pipeline.surveillance.clock.expect(owned)
    return pipeline


async def consume(
    workers: list[tuple[Pipeline, set[int]]], log: dict[int, list[Message]], stage: MarketStage | None
) -> None:
    """Each worker fetches up to FETCH records of each of its partitions in turn, until all are processed."""
    position = dict.fromkeys(log, 0)
    ends: dict[int, int | None] = {p: len(messages) for p, messages in log.items()}
    while any(position[p] < len(log[p]) for p in log) or any(w.holding for w, _ in workers):
        for pipeline, owned in workers:
            fetched = [m for p in sorted(owned) for m in log[p][position[p] : position[p] + FETCH]]
            for p in owned:
                position[p] = min(len(log[p]), position[p] + FETCH)
            await pipeline.handle(fetched, {p: ends[p] for p in owned})
        if stage is not None:
            await workers[0][0].emit_alerts(stage.poll)
    if stage is not None:
        for _ in range(2):  # the last batches' markers say caught up: the market clock runs to the end
            await workers[0][0].emit_alerts(stage.poll)


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


def test_two_workers_with_the_market_stage_alert_exactly_as_one(tmp_path: Path) -> None:
    simulation = every_kind_scenario()
    produced = list(simulation.messages())
    one_log = {0: [Message(TOPIC, 0, offset, key, value) for offset, (key, value) in enumerate(produced)]}
    four_log: dict[int, list[Message]] = {p: [] for p in range(4)}
    for key, value in produced:
        partition = zlib.crc32(key) % 4  # by key, as the producer's partitioner: one product, one partition
        four_log[partition].append(Message(TOPIC, partition, len(four_log[partition]), key, value))
    assert all(four_log.values()), "every partition carries events"

    store = ChdbStore(tmp_path / "chdb")  # one embedded store per process: the runs take turns
    try:
        store.apply_schema()
        asyncio.run(consume([(worker(store, {0}, "all"), {0})], one_log, None))
        one = outcome(store)
        store.command("DROP DATABASE datamarket SYNC")
        store.apply_schema()
        leader, other = worker(store, {0, 1}, "local"), worker(store, {2, 3}, "local")
        stage = MarketStage(Settings(), store, "log-1")
        stage.restore()
        asyncio.run(consume([(leader, {0, 1}), (other, {2, 3})], four_log, stage))
        four = outcome(store)
    finally:
        store.close()

    assert four["events"] == one["events"] and four["amounts"] == one["amounts"]
    kinds = {alert.kind for alert in four["alerts"]}  # type: ignore[attr-defined]
    assert {"volume_spike", "exchange_silent"} <= kinds, "the market-wide rules fired, from the market stage"
    for result in (one, four):
        report = score(simulation.incidents, result["alerts"])  # type: ignore[arg-type]
        assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    assert sorted(a.dedup_key for a in four["alerts"]) == sorted(a.dedup_key for a in one["alerts"])  # type: ignore[attr-defined]


def test_a_rule_change_received_by_one_worker_reaches_the_other_through_the_store(tmp_path: Path) -> None:
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.apply_schema()
        received, other = worker(store, {0, 1}, "local"), worker(store, {2, 3}, "local")
        stage = MarketStage(Settings(), store, "log-1")
        stage.restore()
        change = b'{"set": {"exchange_silent_s": 300, "price_outlier_ratio": "4"}, "actor": "ops-li"}'
        asyncio.run(received.change_rules(change))  # dm.rules reaches one member of the group
        assert other.surveillance.ctx.rules.exchange_silent_s == Settings().rules.exchange_silent_s
        asyncio.run(other.tick())
        stage.tick(0)
        for rules in (other.surveillance.ctx.rules, stage.surveillance.ctx.rules):
            assert (rules.exchange_silent_s, str(rules.price_outlier_ratio)) == (300, "4")
    finally:
        store.close()
