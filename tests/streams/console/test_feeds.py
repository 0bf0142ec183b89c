"""The Feeds view on a real store: rejections per exchange under every reason of the contract (conflicting resends
and events from the future among them), each exchange's clock lead, and a watermark that a row stamped 2099,
stored before the clock was bounded, does not carry off."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from settings import Settings
from sinks.clickhouse.store import ChdbStore
from streams import decode
from streams.console.feeds import REASONS, feeds_view
from streams.pipeline import Pipeline
from streams.records import Message

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures"


def event(name: str, **changes: Any) -> bytes:
    return json.dumps({**json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")), **changes}).encode()


def stored(store: ChdbStore, values: list[bytes], first: int, settings: Settings) -> None:
    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    running = Pipeline(settings, store, publish, topic_id="log")
    running.restore()
    messages = [Message("dm.events", 0, first + i, None, value) for i, value in enumerate(values)]
    asyncio.run(running.handle(messages, {0: first + len(values)}))


def test_feeds_show_conflicting_resends_future_events_and_a_clock_running_ahead(tmp_path: Path) -> None:
    assert REASONS[: len(decode.REASONS)] == decode.REASONS  # one list of the contract's reasons, in its order
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    try:
        ahead = "2026-11-21T10:12:13.481+08:00"  # BJIDEX ten minutes after SHDEX's latest
        stored(
            store,
            [
                event("trade"),
                event("trade", price="0.01", quantity=1, amount="0.01"),  # its identity, other content
                event("trade", event_id="NEW-FORGED", occurred_at="2099-01-01T00:00:00Z"),
                event("usage", exchange_id="BJIDEX", occurred_at=ahead),
            ],
            0,
            Settings(),
        )
        view = feeds_view(store, silent_after_s=120, max_clock_skew_s=300)
        rows = {row["code"]: row for row in view["exchanges"]}
        assert rows["SHDEX"]["rejected"] == {"conflicting_duplicate": 1, "future_event": 1}
        assert view["reasons"] == ["future_event", "conflicting_duplicate"]  # the contract's order
        assert (rows["BJIDEX"]["clock_ahead_s"], rows["SHDEX"]["clock_ahead_s"]) == (600, 0)
        assert rows["SZDEX"]["clock_ahead_s"] is None  # never sent
        assert view["max_clock_skew_s"] == 300

        # A 2099 trade accepted before the clock was bounded: SHDEX leads by decades (ops see the row), and the
        # market's "today" stays today.
        stored(
            store,
            [event("trade", event_id="OLD-FORGED", occurred_at="2099-01-01T00:00:00Z")],
            4,
            Settings(max_clock_skew_s=1e10),
        )
        view = feeds_view(store, silent_after_s=120, max_clock_skew_s=300)
        rows = {row["code"]: row for row in view["exchanges"]}
        assert rows["SHDEX"]["clock_ahead_s"] > 70 * 365 * 86_400
        assert rows["SHDEX"]["lag_s"] == 0  # ahead of the watermark is not behind it: never negative
        assert rows["BJIDEX"]["lag_s"] == 0 and all(row["lag_s"] is None or row["lag_s"] >= 0 for row in rows.values())
        assert view["watermark_us"] // 1000 == 1795227133481  # BJIDEX's usage, not 2099
    finally:
        store.close()
