"""A bounded clock (contract, Amendment 1): an event stamped more than DMM_MAX_CLOCK_SKEW_S ahead of the monitor's
wall clock is rejected as `future_event` and never moves the market's event time, on either decode path, and a
store holding such rows from before (a forged 2099 stamp, accepted then) does not bring 2099 back on restart."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dmm.simulator import publish_live
from dmm.simulator.wire import Message as SimulatedMessage
from models.clock import rfc3339, to_ms
from settings import Settings
from sinks import prometheus as metrics
from sinks.clickhouse.memory import MemoryState, MemoryStore
from sinks.clickhouse.store import ChdbStore
from streams.columnar import decode_usage
from streams.decode import Rejection, WallClock, decode
from streams.pipeline import Pipeline
from streams.records import Message

FIXTURES = Path(__file__).parents[1] / "fixtures"
FORGED = "2099-01-01T00:00:00Z"


def event(name: str, **changes: Any) -> bytes:
    return json.dumps({**json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")), **changes}).encode()


def in_(seconds: float) -> str:
    """A stamp `seconds` from now."""
    return rfc3339(datetime.now(UTC) + timedelta(seconds=seconds))


def feed(running: Pipeline, values: list[bytes], first_offset: int) -> None:
    messages = [Message("dm.events", 0, first_offset + i, None, value) for i, value in enumerate(values)]
    asyncio.run(running.handle(messages, {0: first_offset + len(values)}))


def test_an_event_too_far_ahead_is_a_future_event_saying_by_how_much_and_what_to_do() -> None:
    clock = WallClock.read(300)
    outcome = decode(event("trade", occurred_at=FORGED), clock)
    assert isinstance(outcome, Rejection) and outcome.reason == "future_event"
    assert outcome.event_id == "SHDEX-T-20261121-004211" and outcome.exchange_id == "SHDEX"
    assert "2099-01-01T00:00:00.000Z is 26," in outcome.detail and "days" in outcome.detail
    assert "DMM_MAX_CLOCK_SKEW_S" in outcome.detail and "fix the producer's clock" in outcome.detail
    assert "6 min" in decode(event("trade", occurred_at=in_(400)), clock).detail  # type: ignore[union-attr]
    assert not isinstance(decode(event("trade", occurred_at=in_(290)), clock), Rejection)  # within the skew
    assert not isinstance(decode(event("trade", occurred_at="2020-01-01T00:00:00Z"), clock), Rejection)  # a replay
    assert decode(event("trade", occurred_at="2106-03-01T00:00:00Z"), clock).reason == "invalid"  # type: ignore[union-attr]


def test_usage_read_as_columns_leaves_an_event_too_far_ahead_to_decode() -> None:
    clock = WallClock.read(300)
    values = [event("usage", event_id="AHEAD", occurred_at=in_(310)), event("usage", occurred_at=in_(290))]
    assert decode_usage(values, clock).ok.tolist() == [False, True]
    assert decode_usage(values).ok.tolist() == [True, True]  # no clock: a file checked offline


@pytest.mark.parametrize("as_columns", [True, False], ids=["usage as columns", "usage one by one"])
def test_a_2099_event_is_rejected_and_the_traffic_after_it_stays_on_time(
    as_columns: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[float] = []
    wall_clock = WallClock.read
    monkeypatch.setattr(WallClock, "read", classmethod(lambda cls, skew_s: read.append(skew_s) or wall_clock(skew_s)))
    store = MemoryStore()
    running = Pipeline(Settings(usage_as_columns=as_columns), store, _ignore, topic_id="log", reader=MemoryState)
    running.restore()
    feed(
        running,
        [
            event("trade", event_id="FORGED-T", occurred_at=FORGED),
            event("usage", event_id="FORGED-U", occurred_at=FORGED),
        ],
        0,
    )
    assert running.surveillance.watermark_ms == 0
    read.clear()
    normal = [event("listing"), event("trade"), event("usage"), event("heartbeat")]
    feed(running, normal, 2)
    assert len(read) == 1  # the wall clock, once for the batch
    assert running.surveillance.watermark_ms == to_ms(datetime.fromisoformat("2026-11-21T10:05:10+08:00"))
    rejected = store.pylist("rejected_events")
    assert [(r["event_id"], r["reason"]) for r in rejected] == [
        ("FORGED-T", "future_event"),
        ("FORGED-U", "future_event"),
    ]
    assert rejected[0]["raw"] == event("trade", event_id="FORGED-T", occurred_at=FORGED)  # kept as sent
    for table in ("listings", "trades", "usage", "heartbeats"):
        assert [row["late"] for row in store.pylist(table)] == [0], table
    assert metrics.REJECTED.labels(reason="future_event")._value.get() >= 2


@pytest.mark.integration
def test_a_restart_leaves_out_far_future_rows_stored_before_the_bound(tmp_path: Path) -> None:
    """A store from before the bound holds a 2099 trade: restored, it would carry event time, the windows kept and
    the exchanges' latest events to 2099, and every event after it would be late."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    try:
        before = Pipeline(Settings(max_clock_skew_s=1e10), store, _ignore, topic_id="log")  # no bound, in effect
        before.restore()
        feed(before, [event("listing"), event("trade", event_id="FORGED-T", occurred_at=FORGED)], 0)
        assert before.surveillance.watermark_ms == to_ms(datetime(2099, 1, 1, tzinfo=UTC))

        after = Pipeline(Settings(), store, _ignore, topic_id="log")
        after.restore()
        listed = to_ms(datetime.fromisoformat("2026-11-21T09:30:00+08:00"))
        assert after.surveillance.watermark_ms == listed
        silent = next(d for d in after.surveillance.detectors if d.kind == "exchange_silent")
        assert silent._senders["SHDEX"].last_ms == listed  # type: ignore[attr-defined]
        feed(after, [event("trade"), event("usage")], 2)
        assert store.rows("SELECT event_id, late FROM datamarket.usage") == [
            {"event_id": "SHDEX-U-20261121-918273", "late": 0}
        ]
        assert after.surveillance.watermark_ms == to_ms(datetime.fromisoformat("2026-11-21T10:05:00+08:00"))
    finally:
        store.close()


def test_one_exchange_far_ahead_of_the_others_shows_in_a_metric_not_a_rejection() -> None:
    running = Pipeline(Settings(), MemoryStore(), _ignore, topic_id="log", reader=MemoryState)
    running.restore()
    ahead = "2026-11-21T10:15:00+08:00"  # ten minutes after the rest, and long past
    feed(running, [event("usage"), event("usage", exchange_id="BJIDEX", event_id="B-1", occurred_at=ahead)], 0)
    assert metrics.EXCHANGE_CLOCK_AHEAD.labels(exchange_id="BJIDEX")._value.get() == 600
    assert metrics.EXCHANGE_CLOCK_AHEAD.labels(exchange_id="SHDEX")._value.get() == 0
    assert running.surveillance.watermark_ms == to_ms(datetime.fromisoformat(ahead))  # accepted: it is in the past


def test_a_simulated_market_run_faster_than_real_time_never_runs_ahead_of_the_wall_clock() -> None:
    """`dmm up --time-scale 10` from now would stamp events ahead of the clock: they wait until it is their time."""
    now = [0.0]  # seconds on the monotonic clock; the wall clock is 1,000 s after the epoch plus that

    def sleep(seconds: float) -> None:
        now[0] += seconds

    messages = [SimulatedMessage(b"k", str(n).encode(), 1_000_000 + n * 10_000) for n in range(4)]  # 10 s apart
    published: list[tuple[float, bytes]] = []
    publish_live(
        messages,
        lambda key, value: published.append((now[0], value)),
        10.0,
        clock=lambda: now[0],
        sleep=sleep,
        epoch_ms=lambda: 1_000_000 + now[0] * 1000,
    )
    assert [at for at, _ in published] == pytest.approx([0.0, 10.0, 20.0, 30.0])  # real time, not 1 s apart


async def _ignore(topic: str, key: bytes | None, value: bytes) -> None:
    return None
