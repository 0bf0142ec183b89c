"""Conflicting resends (contract, Amendment 1): a message with the identity of an event accepted within the dedup
horizon but other content is rejected as `conflicting_duplicate`, the first staying as stored; an exact resend
(the same fields once parsed) stays a duplicate. The attack: a ¥0.01 trade sent first with a real trade's
event_id made the real ¥50,000 self-dealing trade a "duplicate": no alert, and 0.01 stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from models import EVENT_ADAPTER
from settings import Settings
from sinks.clickhouse.memory import MemoryState, MemoryStore
from sinks.clickhouse.store import ChdbStore
from streams.pipeline import Pipeline
from streams.records import Message

FIXTURES = Path(__file__).parents[1] / "fixtures"
TRADE = json.loads((FIXTURES / "trade.json").read_text(encoding="utf-8"))
USAGE = json.loads((FIXTURES / "usage.json").read_text(encoding="utf-8"))
LISTING = json.loads((FIXTURES / "listing.json").read_text(encoding="utf-8"))
# The real trade: ¥50,000, the buyer selling to itself. The squat: its event_id, sent first, ¥0.01 between others.
REAL = {**TRADE, "price": "25000.00", "amount": "50000.00", "buyer_id": TRADE["seller_id"]}
SQUAT = {**TRADE, "price": "0.01", "quantity": 1, "amount": "0.01"}


def raw(fields: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**fields, **changes}, ensure_ascii=False).encode()


def exact_resends(fields: dict[str, Any]) -> list[bytes]:
    """The same event sent again as other bytes: the same fields once parsed."""
    at = EVENT_ADAPTER.validate_python(fields).occurred_at.astimezone()
    return [
        raw(fields),
        json.dumps(dict(reversed(list(fields.items()))), indent=2).encode(),  # key order, white space, escapes
        raw(fields, occurred_at=at.isoformat()),  # the same instant at another offset
        raw(fields, extra_field="ignored"),  # unknown fields are no content
    ]


def pipeline(store: MemoryStore, as_columns: bool = True) -> Pipeline:
    running = Pipeline(Settings(usage_as_columns=as_columns), store, _ignore, topic_id="log", reader=MemoryState)
    running.restore()
    return running


def feed(running: Pipeline, values: list[bytes], first_offset: int = 0, partitions: int = 1) -> None:
    """One batch; with `partitions` > 1, spread over them (the batch is then taken one by one, aligned)."""
    messages = [Message("dm.events", i % partitions, first_offset + i, None, v) for i, v in enumerate(values)]
    ends = {p: first_offset + len(values) for p in range(partitions)}
    asyncio.run(running.handle(messages, ends))


def outcomes(store: MemoryStore) -> list[tuple[int, str]]:
    """Per offset after the first: where it landed (`duplicate` or the rejection's reason)."""
    landed = [(r["src_offset"], "duplicate") for r in store.pylist("duplicate_events")]
    landed += [(r["src_offset"], r["reason"]) for r in store.pylist("rejected_events")]
    return sorted(landed)


@pytest.mark.parametrize("batches", [[0, 1], [0]], ids=["in later batches", "in one batch"])
def test_the_real_trade_after_a_squat_is_a_conflicting_resend_and_the_squat_stays_as_stored(batches: list[int]) -> None:
    store = MemoryStore()
    running = pipeline(store)
    values = [raw(LISTING), raw(SQUAT), raw(REAL), *exact_resends(SQUAT)]
    if batches == [0]:
        feed(running, values)
    else:
        feed(running, values[:2])
        feed(running, values[2:], first_offset=2)
    [stored] = store.pylist("trades")
    assert (stored["event_id"], str(stored["amount"])) == (TRADE["event_id"], "0.01")
    assert outcomes(store) == [(2, "conflicting_duplicate"), *((offset, "duplicate") for offset in range(3, 7))]
    [conflict] = store.pylist("rejected_events")
    assert conflict["raw"] == raw(REAL)  # kept as sent, for the regulator to see
    assert (conflict["exchange_id"], conflict["event_id"]) == ("SHDEX", TRADE["event_id"])
    assert "says something else" in conflict["detail"] and "partition 0, offset 1" in conflict["detail"]


@pytest.mark.parametrize("as_columns", [True, False], ids=["usage as columns", "usage one by one"])
@pytest.mark.parametrize("partitions", [1, 2], ids=["batch taken whole", "taken one by one"])
def test_usage_resent_with_other_figures_is_a_conflict_on_every_path(as_columns: bool, partitions: int) -> None:
    """Usage read as columns digests what it says from its columns, as the per-event path does from the model:
    an exact resend read one way of a usage read the other way is still a duplicate."""
    store = MemoryStore()
    running = pipeline(store, as_columns)
    inflated = raw(USAGE, calls=USAGE["calls"] * 100)
    long_copy = raw(USAGE, padding="x" * 600)  # too long for the columns: validated one by one
    beat = raw(
        {"schema": "dm.v1", "type": "heartbeat", "seq": 1},
        **{k: USAGE[k] for k in ("event_id", "exchange_id", "occurred_at")},
    )
    feed(running, [raw(USAGE), inflated, long_copy, *exact_resends(USAGE), beat], partitions=partitions)
    assert [row["calls"] for row in store.pylist("usage")] == [USAGE["calls"]]
    assert outcomes(store) == [
        (1, "conflicting_duplicate"),
        *((offset, "duplicate") for offset in range(2, 7)),
        (7, "conflicting_duplicate"),  # a heartbeat with a usage event's identity says something else
    ]


def test_a_usage_event_resent_after_a_trade_with_its_identity_is_a_conflict_within_a_batch_taken_whole() -> None:
    store = MemoryStore()
    feed(pipeline(store), [raw(TRADE, event_id=USAGE["event_id"]), raw(USAGE), raw(USAGE)])
    assert outcomes(store) == [(1, "conflicting_duplicate"), (2, "conflicting_duplicate")]


@pytest.mark.integration
def test_after_a_restart_a_resend_is_judged_against_what_the_first_copy_said(tmp_path: Path) -> None:
    """The content digests come back from the store (`content_digest` of each event table); a batch replayed
    after a crash (the same partition and offsets) is a redelivery, never a conflict with itself."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    try:
        first = Pipeline(Settings(), store, _ignore, topic_id="log")
        first.restore()
        feed(first, [raw(LISTING), raw(SQUAT), raw(USAGE)])
        again = Pipeline(Settings(), store, _ignore, topic_id="log")
        again.restore()
        feed(again, [raw(LISTING), raw(SQUAT), raw(USAGE)])  # redelivered: skipped
        assert store.rows("SELECT count() AS n FROM datamarket.rejected_events")[0]["n"] == 0
        assert store.rows("SELECT count() AS n FROM datamarket.duplicate_events")[0]["n"] == 0
        feed(again, [raw(REAL), *exact_resends(SQUAT), raw(USAGE, bytes=1)], first_offset=3)
        rejected = store.rows("SELECT src_offset, reason FROM datamarket.rejected_events ORDER BY src_offset")
        assert rejected == [
            {"src_offset": 3, "reason": "conflicting_duplicate"},
            {"src_offset": 8, "reason": "conflicting_duplicate"},
        ]
        duplicates = store.rows("SELECT src_offset, first_offset FROM datamarket.duplicate_events ORDER BY src_offset")
        assert duplicates == [{"src_offset": offset, "first_offset": 1} for offset in range(4, 8)]
        assert store.rows("SELECT toString(amount) AS amount FROM datamarket.trades") == [{"amount": "0.01"}]
    finally:
        store.close()


@pytest.mark.integration
def test_an_event_stored_before_content_digests_is_duplicated_by_any_resend(tmp_path: Path) -> None:
    """A row stored before the `content_digest` column holds 0 ("not known"): a resend of it is a duplicate,
    as it was then (it cannot be told from the first copy)."""
    store = ChdbStore(tmp_path / "chdb")
    store.apply_schema()
    try:
        first = Pipeline(Settings(), store, _ignore, topic_id="log")
        first.restore()
        feed(first, [raw(LISTING), raw(SQUAT)])
        store.command("ALTER TABLE datamarket.trades UPDATE content_digest = 0 WHERE 1 SETTINGS mutations_sync = 1")
        again = Pipeline(Settings(), store, _ignore, topic_id="log")
        again.restore()
        feed(again, [raw(REAL)], first_offset=2)
        assert store.rows("SELECT src_offset FROM datamarket.duplicate_events") == [{"src_offset": 2}]
    finally:
        store.close()


async def _ignore(topic: str, key: bytes | None, value: bytes) -> None:
    return None
