"""The market windows the worker keeps itself (minutes, hours, China days) sum exactly to the stored events, in a
real embedded store: the same rows a recompute from the events gives, cell by cell (a minute's distinct buyers and
sellers too), through duplicates, late events, a restart without a flush and redeliveries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dmm.simulator import MarketSimulator, SimulationConfig
from models.clock import DAY_MS, china_day_start_ms, to_ms
from settings import Settings
from sinks.clickhouse.store import ChdbStore
from streams.pipeline import Pipeline
from streams.records import Message
from tests.support.totals import (
    assert_public_days_are_the_events,
    assert_public_months_are_the_days,
    assert_windows_are_the_events,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 15, 20, tzinfo=UTC)  # 23:20 in China: the run crosses an hour and a China day
TOPIC = "dm.events"
BATCH = 400


async def _publish(topic: str, key: bytes | None, value: bytes) -> None:
    return None


@pytest.fixture(scope="module")
def values() -> list[bytes]:
    """Seventy simulated minutes, with copies of some events (duplicates) and some minute-one events held back to
    the end (late by then)."""
    simulated = [m.value for m in MarketSimulator(SimulationConfig(seed=7, start=START, duration_s=4200, rate=5.0))]
    held = simulated[100:160]
    stream = simulated[:100] + simulated[160:]
    copies = stream[::97]
    return stream[: len(stream) // 2] + copies + stream[len(stream) // 2 :] + held


def test_kept_and_recomputed_minutes_equal_a_recompute_from_the_stored_events(
    tmp_path: Path, values: list[bytes]
) -> None:
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    messages = [Message(TOPIC, 0, offset, None, value) for offset, value in enumerate(values)]
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    middle = len(batches) // 3  # before 16:00, when a new hour and a new China day begin

    async def run(pipeline: Pipeline, part: list[list[Message]], every: int, flush_last: bool) -> None:
        for n, batch in enumerate(part, 1):
            await pipeline.handle(batch)
            if n % every == 0 or (flush_last and n == len(part)):
                await pipeline.flush()

    first = Pipeline(Settings(), store, _publish, topic_id="log-1")
    first.restore()
    asyncio.run(run(first, batches[:middle], 3, flush_last=False))  # its last batches stored, not flushed: a crash
    assert first.windows.grains[0].kept, "the first pipeline kept no minute"
    again = Pipeline(Settings(), store, _publish, topic_id="log-1")
    again.restore()
    assert all(grain.dirty for grain in again.windows.grains), "the restore found no window the crash left unflushed"
    # Two batches again (redelivered), then a flush after each batch: the minute of the crash is written while it
    # still fills.
    asyncio.run(run(again, batches[middle - 2 :], 1, flush_last=True))
    assert all(grain.kept for grain in again.windows.grains), "the restarted pipeline kept no minute, hour or day"

    late = store.rows("SELECT count() AS n FROM datamarket.trades WHERE late = 1")[0]["n"]
    duplicates = store.rows("SELECT count() AS n FROM datamarket.duplicate_events")[0]["n"]
    assert int(late) > 0 and int(duplicates) > 0
    assert_windows_are_the_events(store.rows)
    assert assert_public_days_are_the_events(store.rows) == 1, "the China day the run left was not rebuilt"
    assert assert_public_months_are_the_days(store.rows) == 1, "the closed day's month was not rebuilt after it"
    assert again.windows.public_pending == {china_day_start_ms(to_ms(START)) + DAY_MS}, "the open day is not pending"
    store.close()


def flushed_store(tmp_path: Path, values: list[bytes]) -> ChdbStore:
    """A store holding `values` as one pipeline stored them, its windows flushed."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    messages = [Message(TOPIC, 0, offset, None, value) for offset, value in enumerate(values)]
    pipeline = Pipeline(Settings(), store, _publish, topic_id="log-1")
    pipeline.restore()
    asyncio.run(pipeline.handle(messages))
    asyncio.run(pipeline.flush())
    return store


def test_a_store_created_before_console_1d_public_1d_and_public_1mo_has_them_filled_on_restore(
    tmp_path: Path, values: list[bytes]
) -> None:
    """The days market_1d holds and console_1d lacks are added up on start, before the unflushed windows are read
    (console_1d is one of the rollups whose latest flush they are read from); public_1d's closed days are rebuilt
    from the events then, the open one once it closes, and public_1mo's months from those days."""
    store = flushed_store(tmp_path, values)
    restored = Pipeline(Settings(), store, _publish, topic_id="log-1")
    restored.restore()
    store.command("TRUNCATE TABLE datamarket.console_1d")  # as a store from before them
    store.command("TRUNCATE TABLE datamarket.public_1d")
    store.command("TRUNCATE TABLE datamarket.public_1mo")
    again = Pipeline(Settings(), store, _publish, topic_id="log-1")
    again.restore()
    dirty = [grain.dirty for grain in again.windows.grains]
    assert dirty == [grain.dirty for grain in restored.windows.grains], "console_1d filled late: more windows dirty"
    assert int(store.rows("SELECT count() AS n FROM datamarket.console_1d")[0]["n"]) > 0
    assert_windows_are_the_events(store.rows)
    assert assert_public_days_are_the_events(store.rows) == 1, "public_1d's closed day was not filled"
    assert assert_public_months_are_the_days(store.rows) == 1, "public_1mo's month was not filled"
    open_day = china_day_start_ms(to_ms(START)) + DAY_MS
    assert again.windows.public_pending == {open_day}, "public_1d's open day is not left to its closing"
    asyncio.run(again.flush())  # nothing new: the open day is still open, and still pending
    assert again.windows.public_pending == {open_day}
    store.close()


def test_a_store_whose_rollups_counted_no_usage_events_has_those_days_recomputed_on_restore(
    tmp_path: Path, values: list[bytes]
) -> None:
    """A store from before the rollups counted usage events gains the column at 0 beside the days' calls and bytes;
    the next start recomputes the minutes of those days, then their hours, days and console days, so the console's
    metering (read from the rollups) counts every on-time usage event."""
    store = flushed_store(tmp_path, values)
    for table in ("market_1m", "market_1h", "market_1d", "console_1d"):  # as a store from before the column
        store.command(f"ALTER TABLE datamarket.{table} UPDATE usage_records = 0 WHERE 1 SETTINGS mutations_sync = 2")
    for table in ("trades", "usage", "listings"):  # stored long before that flush: no window is left unflushed
        store.command(
            f"ALTER TABLE datamarket.{table} UPDATE ingested_at = ingested_at - INTERVAL 1 DAY WHERE 1 "
            "SETTINGS mutations_sync = 2"
        )
    records = "SELECT sum(usage_records) AS n FROM datamarket.{} FINAL"
    assert int(store.rows(records.format("console_1d"))[0]["n"]) == 0
    again = Pipeline(Settings(), store, _publish, topic_id="log-1")
    again.restore()
    asyncio.run(again.flush())
    on_time = int(store.rows("SELECT count() AS n FROM datamarket.usage FINAL WHERE late = 0")[0]["n"])
    assert on_time > 0
    for table in ("market_1m", "market_1h", "market_1d", "console_1d"):
        assert int(store.rows(records.format(table))[0]["n"]) == on_time, table
    assert_windows_are_the_events(store.rows)
    store.close()
