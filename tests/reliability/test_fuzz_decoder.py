"""Hostile input for the decoder: it never raises, names the right reason, and holds no memory.

Every input here is something an exchange (or an attacker behind one) can put on
dm.events. An accepted event must also be writable: a valid-looking event the
store cannot take would fail its batch on every retry and stop the worker.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.replay import line_key
from dmm.stack import EmbeddedStack
from models import Dims, Trade
from sinks.clickhouse.batches import BatchRows, StoredEvent
from streams.decode import REASONS, Rejection, decode
from tests.support.stack import settings_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = {
    name: json.loads((FIXTURES / f"{name}.json").read_text()) for name in ("trade", "listing", "usage", "heartbeat")
}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def writable(event: Any) -> None:
    """The accepted event converts to its Arrow batch (what the store write needs)."""
    rows = BatchRows()
    rows.add(StoredEvent(event, 0, 0, False, Dims()))
    assert rows.tables()


def check(raw: bytes | None) -> Rejection | Any:
    outcome = decode(raw)
    if isinstance(outcome, Rejection):
        assert outcome.reason in REASONS
        assert isinstance(outcome.detail, str) and outcome.detail
        assert len(outcome.exchange_id) <= 64 and len(outcome.event_id) <= 64
    else:
        writable(outcome)
    return outcome


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    outcome = check(raw)
    assert isinstance(outcome, Rejection)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_truncated_valid_events_are_malformed(name: str, data: st.DataObject) -> None:
    raw = json.dumps(EXAMPLES[name]).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    outcome = check(raw[:cut])
    assert isinstance(outcome, Rejection) and outcome.reason == "malformed", (raw[:cut], outcome)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_wrong_types_in_any_field_are_invalid(name: str, data: st.DataObject) -> None:
    """Replace one field's value by any JSON value: invalid (or accepted if it happens to be valid)."""
    event = dict(EXAMPLES[name])
    field = data.draw(st.sampled_from(sorted(set(event) - {"schema", "type", "exchange_id"})))
    event[field] = data.draw(JSON_VALUES)
    outcome = check(json.dumps(event).encode())
    if isinstance(outcome, Rejection):
        # amount_mismatch when price/quantity/amount still parse but no longer multiply out.
        allowed = {"invalid", "amount_mismatch"} if field in ("price", "quantity", "amount") else {"invalid"}
        assert outcome.reason in allowed, (field, event[field], outcome)
        if outcome.reason == "invalid":
            assert field in outcome.detail or "type" in outcome.detail, (field, outcome.detail)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_is_rejected_with_a_reason(value: Any) -> None:
    outcome = check(json.dumps(value).encode())
    assert isinstance(outcome, Rejection)
    expected = "malformed" if not isinstance(value, dict) else "unsupported_schema"
    assert outcome.reason == expected


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["schema", "exchange", "amount", "invalid"]),
    st.sampled_from(["schema", "exchange", "amount", "invalid", None]),
)
def test_precedence_of_reasons(first: str, second: str | None) -> None:
    """malformed > unsupported_schema > invalid > unknown_exchange > amount_mismatch."""
    event = dict(EXAMPLES["trade"])
    faults = {first, second} - {None}
    if "schema" in faults:
        event["schema"] = "dm.v9"
    if "exchange" in faults:
        event["exchange_id"] = "NOWHERE"
    if "amount" in faults:
        event["amount"] = str(Decimal(event["amount"]) + 1)
    if "invalid" in faults:
        event["venue"] = "dark_pool"
    order = ["schema", "invalid", "exchange", "amount"]
    reason = {"schema": "unsupported_schema", "invalid": "invalid", "exchange": "unknown_exchange",
              "amount": "amount_mismatch"}[min(faults, key=order.index)]
    outcome = check(json.dumps(event).encode())
    assert isinstance(outcome, Rejection) and outcome.reason == reason, (faults, outcome)


@settings(max_examples=300, deadline=None)
@given(
    st.dates(), st.times(), st.sampled_from(["Z", "+08:00", "-12:00", "+14:00", "", "+24:00", "+0800"]),
)
def test_timestamps_anywhere_in_time(day: Any, moment: Any, offset: str) -> None:
    """Year 1 to 9999, any offset: accepted only if it can be stored and placed in a window."""
    event = {**EXAMPLES["trade"], "occurred_at": f"{day.isoformat()}T{moment.isoformat()}{offset}"}
    outcome = check(json.dumps(event).encode())
    if isinstance(outcome, Rejection):
        assert outcome.reason == "invalid" and "occurred_at" in outcome.detail, outcome
    else:
        assert 1970 <= outcome.occurred_at.year <= 2106


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.integers(min_value=-(2**70), max_value=2**70),
)
def test_hostile_money(price: Decimal, quantity: int) -> None:
    """Negative, NaN, Infinity, exponents, huge: invalid, never an exception or an unstorable row."""
    event = {**EXAMPLES["trade"], "price": str(price), "quantity": quantity}
    if price.is_finite():
        event["amount"] = format(price * quantity, "f")
    outcome = check(json.dumps(event).encode())
    if not isinstance(outcome, Rejection):
        assert isinstance(outcome, Trade) and outcome.price >= 0 and outcome.quantity >= 1


def test_json_constants_and_non_utf8() -> None:
    trade = json.dumps(EXAMPLES["trade"])
    for raw, reason in [
        (trade.replace('"quantity": 2', '"quantity": NaN').encode(), "malformed"),
        (trade.replace('"quantity": 2', '"quantity": Infinity').encode(), "malformed"),
        (trade.replace('"quantity": 2', '"quantity": -Infinity').encode(), "malformed"),
        (trade.replace('"quantity": 2', '"quantity": 2.0').encode(), "invalid"),
        (trade.replace('"quantity": 2', '"quantity": -2').encode(), "invalid"),
        (trade.replace('"quantity": 2', '"quantity": 1e400').encode(), "invalid"),
        (trade.replace('"quantity": 2', '"quantity": 99999999999999999999999999').encode(), "invalid"),
        (trade.encode("utf-16"), "malformed"),
        (trade.encode()[:-1] + b"\xc3", "malformed"),
        (trade.replace("SHDEX", "SH\udcffDEX").encode("utf-8", "surrogateescape"), "malformed"),
        (trade.replace('"SHDEX"', '"\\ud800"').encode(), "malformed"),  # no UTF-8 text; stored it would crash
        (trade.replace('"SHDEX-T', '"\\udfff-T').encode(), "malformed"),
        (b"\x00" * 100, "malformed"),
        (b"null", "malformed"),
        (b"", "malformed"),
        (None, "malformed"),
    ]:
        outcome = check(raw)
        assert isinstance(outcome, Rejection) and outcome.reason == reason, (raw[:80] if raw else raw, outcome)


def test_huge_fields_and_deep_nesting() -> None:
    """Megabytes in a field, 100k levels of nesting, 100k keys: rejected, bounded detail."""
    base = EXAMPLES["trade"]
    cases = [
        (json.dumps({**base, "buyer_id": "B" * (4 << 20)}).encode(), "invalid"),
        (json.dumps({**base, "extra": "x" * (8 << 20)}).encode(), None),  # unknown fields are ignored
        (b"[" * 100_000 + b"]" * 100_000, "malformed"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "malformed"),  # too deep to read
        (json.dumps({**base, "nested": json.loads("[" * 50 + "]" * 50)}).encode(), None),
        (json.dumps({**base, "nested": json.loads("[" * 500 + "]" * 500)}).encode(), "malformed"),  # too deep
        (json.dumps({f"k{i}": i for i in range(100_000)}).encode(), "unsupported_schema"),
        (json.dumps({**base, "price": "9" * 1_000_000}).encode(), "invalid"),
    ]
    for raw, reason in cases:
        outcome = check(raw)
        if reason is None:
            assert not isinstance(outcome, Rejection), outcome
        else:
            assert isinstance(outcome, Rejection) and outcome.reason == reason, (raw[:60], outcome)
            assert len(outcome.detail) <= 2000


@pytest.mark.slow
def test_memory_stays_bounded_over_many_hostile_inputs() -> None:
    """Decoding tens of thousands of bad messages retains (almost) nothing: no cache or leak grows."""
    base = EXAMPLES["trade"]
    inputs = [
        b"{not json",
        b"\xff\xfe garbage",
        json.dumps({**base, "quantity": "2"}).encode(),
        json.dumps({**base, "exchange_id": "NOPE"}).encode(),
        json.dumps({**base, "amount": "1.00"}).encode(),
        json.dumps({**base, "schema": "dm.v2"}).encode(),
        json.dumps({**base, "buyer_id": "B" * 100_000}).encode(),
        b"[" * 5_000 + b"]" * 5_000,
        json.dumps({**base, "occurred_at": "0001-01-01T00:00:00+08:00"}).encode(),
    ]

    def rounds(n: int) -> None:
        for i in range(n):
            for raw in inputs:
                decode(raw.replace(b"SHDEX-T", f"SHDEX-{i}".encode()))

    rounds(200)  # warm caches (pydantic, regex, interned strings)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        rounds(3_000)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\ndecoder: retained {after - before} B after {3_000 * len(inputs)} hostile messages, peak {peak} B")
    assert after - before < 512 * 1024
    assert peak < 64 << 20


def fuzzed_messages(count: int, seed: int) -> list[bytes]:
    """Seeded mutations of valid events: byte flips, cuts, wrong types, hostile values, raw garbage."""
    rng = random.Random(seed)
    hostile: list[Any] = [None, True, -1, 0, 2**64, 1e308, "", "x" * 70, [], {}, "NaN", "-1.00", "1e3", "\ud800"]
    stamps = ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00", "2026-13-40T25:61:61Z",
              "2026-11-21T10:00:00", "1969-12-31T23:59:59Z", "2026-11-21T10:00:00.123456789+08:00"]
    out: list[bytes] = []
    for n in range(count):
        name = rng.choice(sorted(EXAMPLES))
        event = {**EXAMPLES[name], "event_id": f"FZ-{seed}-{n}"}
        if "trade_id" in event:
            event["trade_id"] = f"FZ-{n}"
        kind = rng.randrange(8)
        if kind == 0:
            event[rng.choice(sorted(event))] = rng.choice(hostile)
        elif kind == 1:
            event["occurred_at"] = rng.choice(stamps)
        elif kind == 2:
            event["extra"] = "y" * rng.choice([10, 1 << 16, 900_000])  # Kafka caps a message at 1 MiB
        text = json.dumps(event, ensure_ascii=rng.random() < 0.5)
        raw = text.encode("utf-8", "surrogatepass")
        if kind == 3:
            raw = raw[: rng.randrange(len(raw))]
        elif kind == 4:
            cut = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):
                cut[rng.randrange(len(cut))] = rng.randrange(256)
            raw = bytes(cut)
        elif kind == 5:
            raw = rng.randbytes(rng.randrange(0, 300))
        out.append(raw)
    return out


@pytest.mark.slow
def test_fuzzed_messages_through_broker_and_worker_are_all_accounted_for(tmp_path: Path) -> None:
    """A few hundred hostile messages on the real broker and worker: it stays up, each lands in one place."""
    messages = fuzzed_messages(400, seed=7)
    settings = settings_for(tmp_path)
    with EmbeddedStack(settings, tmp_path) as stack:
        assert stack.worker is not None
        pid = stack.worker.pid
        with EventProducer(settings.kafka) as producer:
            for raw in messages:
                producer.publish_raw(raw, line_key(raw))
        wait_until_drained(settings, timeout=120)
        where: dict[int, str] = {}
        for table in ("listings", "trades", "usage", "heartbeats", "rejected_events", "duplicate_events"):
            for row in query_rows(settings, f"SELECT src_offset FROM datamarket.{table}"):
                assert int(row["src_offset"]) not in where, (table, row)
                where[int(row["src_offset"])] = table
        assert sorted(where) == list(range(len(messages)))
        rejected = query_rows(settings, "SELECT src_offset, hex(raw) AS raw, reason FROM datamarket.rejected_events")
        for row in rejected:
            offset = int(row["src_offset"])
            assert bytes.fromhex(row["raw"]) == messages[offset], offset
            outcome = decode(messages[offset])
            assert isinstance(outcome, Rejection) and outcome.reason == row["reason"], (messages[offset][:100], row)
        for offset, table in where.items():
            if table not in ("rejected_events", "duplicate_events"):
                assert not isinstance(decode(messages[offset]), Rejection)
        assert stack.worker.poll() is None and stack.worker.pid == pid
        assert "exiting for a clean restart" not in stack.worker_log.read_text(errors="replace")
        reasons = {r["reason"] for r in rejected}
        print(f"\nworker fuzz: {len(messages)} messages, {len(rejected)} rejected by reason {sorted(reasons)}, "
              f"{sum(1 for t in where.values() if t not in ('rejected_events', 'duplicate_events'))} stored")
