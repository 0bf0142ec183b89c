"""The pipeline's stages on the in-memory store: decode, dedup and redelivery, book enrichment, lateness,
windows, and a restore from what was stored. Fast, no ClickHouse: the SQL is covered by the real-store tests."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from datetime import UTC, datetime

from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.scenario import SCENARIO_ALL
from models.clock import to_ms
from settings import Settings
from sinks.clickhouse.memory import MemoryState, MemoryStore
from streams.pipeline import Pipeline
from streams.records import Message
from tests.support.events import TOPIC, fixture

START = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def pipeline(store: MemoryStore, published: list[tuple[str, bytes]] | None = None) -> Pipeline:
    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        if published is not None:
            published.append((topic, value))

    running = Pipeline(Settings(), store, publish, topic_id="log-1", reader=MemoryState)
    running.restore()
    return running


def feed(running: Pipeline, values: list[bytes], first_offset: int = 0) -> dict[int, int]:
    messages = [Message(TOPIC, 0, first_offset + i, None, value) for i, value in enumerate(values)]
    return asyncio.run(running.handle(messages))


def test_every_message_lands_once_accepted_duplicate_or_rejected_with_its_reason() -> None:
    store, published = MemoryStore(), []
    running = pipeline(store, published)
    processed = feed(
        running,
        [fixture("listing"), fixture("trade"), fixture("trade"), b"{not json", fixture("trade", schema="dm.v2")],
    )
    assert processed == {0: 4}
    assert [r["event_id"] for r in store.pylist("trades")] == ["SHDEX-T-20261121-004211"]
    assert [(r["src_offset"], r["first_offset"]) for r in store.pylist("duplicate_events")] == [(2, 1)]
    assert [(r["src_offset"], r["reason"]) for r in store.pylist("rejected_events")] == [
        (3, "malformed"),
        (4, "unsupported_schema"),
    ]
    assert [t for t, _ in published] == ["dm.rejected", "dm.rejected"]
    assert store.pylist("processed_batches")[-1]["last_offset"] == 4


def test_records_fetched_again_before_their_batch_is_stored_are_neither_duplicates_nor_stored_twice() -> None:
    """After a seek (a restore, a rebalance) the consumer may deliver records whose batch is still on its way to
    the store: the worker prepares the next batch while the previous one is written."""
    store = MemoryStore()
    running = pipeline(store)
    messages = [Message(TOPIC, 0, n, None, fixture("usage", event_id=f"U-{n}")) for n in range(3)]
    first = running.prepare(messages)
    again = running.prepare(messages)  # fetched again while `first` is not stored yet
    asyncio.run(running.persist(first))
    asyncio.run(running.persist(again))
    assert sorted(r["event_id"] for r in store.pylist("usage")) == ["U-0", "U-1", "U-2"]
    assert store.pylist("duplicate_events") == []


def test_a_seek_back_into_records_taken_already_does_not_make_the_rest_of_them_new() -> None:
    """Records 0-5 are taken; the consumer seeks back and fetches 2-3, then 4-7: 4 and 5 are still taken
    already (the pipeline's mark of what it took never goes back), so only 6 and 7 are new."""
    store = MemoryStore()
    running = pipeline(store)
    messages = [Message(TOPIC, 0, n, None, fixture("usage", event_id=f"U-{n}")) for n in range(8)]
    batches = [running.prepare(messages[:6]), running.prepare(messages[2:4]), running.prepare(messages[4:])]
    for prepared in batches:
        asyncio.run(running.persist(prepared))
    assert sorted(r["event_id"] for r in store.pylist("usage")) == [f"U-{n}" for n in range(8)]
    assert store.pylist("duplicate_events") == []


def test_a_trade_carries_its_listing_classification_and_an_unlisted_one_is_unknown() -> None:
    store = MemoryStore()
    running = pipeline(store)
    feed(running, [fixture("trade", event_id="T-BEFORE"), fixture("listing"), fixture("trade", event_id="T-AFTER")])
    dims = {r["event_id"]: (r["sector"], r["category"], r["high_quality"]) for r in store.pylist("trades")}
    assert dims == {"T-BEFORE": ("unknown", "unknown", 0), "T-AFTER": ("transportation", "dataset", 1)}


def test_late_events_are_stored_flagged_and_leave_their_window_alone() -> None:
    store = MemoryStore()
    running = pipeline(store)
    feed(
        running,
        [
            fixture("trade", event_id="ON-TIME", occurred_at="2026-11-21T10:30:00.000+08:00"),
            fixture("trade", event_id="LATE", occurred_at="2026-11-21T10:20:00.000+08:00"),  # 10 min behind
        ],
    )
    assert {r["event_id"]: r["late"] for r in store.pylist("trades")} == {"ON-TIME": 0, "LATE": 1}
    minute = to_ms(datetime.fromisoformat("2026-11-21T10:30:00+08:00"))
    asyncio.run(running.flush())
    # A minute later than anything stored before this pipeline began is kept here: written whole, not recomputed.
    assert [(to_ms(r["window_start"]), r["trades"], str(r["traded_amount"])) for r in store.pylist("market_1m")] == [
        (minute, 1, "24000.00")
    ]
    assert not any("INTO datamarket.market_1m" in sql for sql in store.commands)


def test_a_minute_holding_events_stored_before_a_restart_is_recomputed_from_the_store() -> None:
    store = MemoryStore()
    feed(pipeline(store), [fixture("trade", event_id="T-1", occurred_at="2026-11-21T10:30:00.000+08:00")])
    again = pipeline(store)
    feed(again, [fixture("trade", event_id="T-2", occurred_at="2026-11-21T10:30:30.000+08:00")], first_offset=1)
    asyncio.run(again.flush())
    minute = to_ms(datetime.fromisoformat("2026-11-21T10:30:00+08:00"))
    assert store.pylist("market_1m") == []  # its totals here would leave out T-1
    (recompute,) = [sql for sql in store.commands if "INTO datamarket.market_1m" in sql]
    assert f"IN ({minute // 1000})" in recompute


def test_a_restart_restored_from_the_store_skips_redeliveries_and_counts_real_duplicates() -> None:
    store = MemoryStore()
    feed(pipeline(store), [fixture("listing"), fixture("trade")])
    again = pipeline(store)  # a new incarnation: marks, identities and the book from what was stored
    feed(again, [fixture("listing"), fixture("trade"), fixture("trade"), fixture("usage")])  # offsets 0-1 redelivered
    assert len(store.pylist("trades")) == 1
    assert [(r["src_offset"], r["first_offset"]) for r in store.pylist("duplicate_events")] == [(2, 1)]
    assert [r["sector"] for r in store.pylist("usage")] == ["transportation"]  # the book survived the restart


def test_a_retried_write_lands_once() -> None:
    store = MemoryStore()
    running = pipeline(store)
    prepared = running.prepare([Message(TOPIC, 0, 0, None, fixture("trade"))])
    asyncio.run(running.persist(prepared))
    again = running._staged(prepared.processed).staged  # the same batch staged and written again, as after a crash
    asyncio.run(running._write(prepared.processed.rows, again))
    assert len(store.pylist("trades")) == 1


def test_processing_a_market_leaves_no_garbage_for_the_cyclic_collector() -> None:
    """Reference cycles made per event pile up until a full collection, which walks every live object: a pause
    of 100 ms and more in a worker holding a day's dedup index, in the middle of the live traffic."""
    simulated = MarketSimulator(
        SimulationConfig(seed=3, start=START, duration_s=2700, rate=2.0, injections=SCENARIO_ALL)
    )
    values = [message.value for message in simulated]
    running = pipeline(MemoryStore())
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for first in range(0, len(values), 500):
            feed(running, values[first : first + 500], first_offset=first)
            asyncio.run(running.flush())
        gc.collect()
        garbage = Counter(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert garbage == Counter()
