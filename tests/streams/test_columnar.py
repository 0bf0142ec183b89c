"""Usage read as columns: it accepts exactly what the per-event validator accepts, with the same values, and
a batch stores the same rows and raises the same alerts either way, its usage judged at the batch's end, at
once (`Surveillance.whole_batch`), or event by event (the per-event path is the reference)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.anomalies import KINDS
from models import Usage
from models.keys import load_keys
from models.registry import exchanges
from settings import IngestSettings, Settings
from sinks import prometheus as metrics
from sinks.clickhouse.memory import MemoryState, MemoryStore
from streams import batch as batch_core
from streams import batch_usage
from streams.columnar import candidates, decode_usage
from streams.decode import Rejection, WallClock, decode
from streams.detectors import build_detectors
from streams.detectors.base import Finding
from streams.detectors.exchange_silent import ExchangeSilent
from streams.detectors.volume_spike import VolumeSpike
from streams.pipeline import Pipeline
from streams.records import Message
from streams.surveillance import Surveillance, WholeBatch

pytestmark = pytest.mark.slow  # the differential market runs take ~40 s: CI and the full suite run them

FIXTURES = Path(__file__).parents[1] / "fixtures"
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
# Ten minutes into the simulated market (and so into its event time, when mixed in).
USAGE = {
    **json.loads((FIXTURES / "usage.json").read_text(encoding="utf-8")),
    "occurred_at": "2026-11-20T09:10:00+08:00",
}


def usage(**changes: Any) -> bytes:
    return json.dumps({**USAGE, **changes}, ensure_ascii=False).encode()


# Each is a usage message the columns might read differently from pydantic: they must agree, or leave it.
EDGES: list[bytes] = [
    usage(),
    usage(occurred_at="2026-11-20t01:11:00z"),
    usage(occurred_at="2026-11-19 19:42:00.123456789-05:30"),
    usage(occurred_at="2026-11-20T09:12:00.5+08:00"),
    usage(occurred_at="2026-11-21T09:30:60+08:00"),  # second 60: pydantic refuses
    usage(occurred_at="2026-11-31T09:30:00+08:00"),
    usage(occurred_at="2026-11-21T24:00:00+08:00"),
    usage(occurred_at="2026-11-21T09:30:00+24:00"),
    usage(occurred_at="2026-11-20T09:10:00+08:60"),
    usage(occurred_at="2026-04-31T09:10:00+08:00"),
    usage(occurred_at="2026-11-20T09:10:00.000001-00:00"),
    usage(occurred_at="2024-02-29T12:00:00+23:59"),
    usage(occurred_at="2023-02-29T12:00:00+08:00"),
    usage(occurred_at="9999-12-31T23:59:59Z"),  # Python reads it, out of the supported range
    usage(occurred_at="0000-01-01T00:00:00Z"),
    usage(occurred_at="1969-12-31T23:59:59Z"),  # out of the supported range
    usage(occurred_at="2026-11-21T09:30:00+08:00\n"),
    usage(occurred_at="２０２６-11-21T09:30:00+08:00"),  # full-width digits
    usage(occurred_at="2026-11-21T09:30:00"),  # no offset
    usage(schema="dm.v2"),
    usage(type="heartbeat"),
    usage(exchange_id="NOPE"),
    usage(event_id=""),
    usage(event_id="E" * 64),
    usage(event_id="E" * 65),
    usage(event_id="é" * 64),  # 64 characters, 128 bytes
    usage(product_id=None),
    usage(calls=-1),
    usage(calls=0, bytes=2**63 - 1),
    usage(calls=2**63),
    usage(calls="5"),
    usage(calls=5.0),
    usage(calls=True),
    usage(extra={"nested": [1, {"deep": None}]}),
    usage(buyer_id="\u0000x"),  # identifiers hold no control character (Unicode category Cc): invalid
    usage(product_id="P\u001b[2J"),
    usage(buyer_id="B\u0085"),  # NEL, a C1 control
    usage(event_id="E\u007f"),
    usage(event_id="E\u2028"),  # a line separator is no Cc: accepted
    usage(event_id="E\t"),
    json.dumps({k: v for k, v in USAGE.items() if k != "bytes"}).encode(),
    usage()[:-1] + b',"x": NaN}',
    usage()[:-1] + b',"x": Infinity}',
    usage()[:-1] + b',"calls": 3}',  # a key twice
    usage()[:-1] + b',"x": "\xff"}',  # not UTF-8, in a field nobody reads
    usage()[:-1] + b',"x": "\\ud800"}',
    usage()[:-1] + b"," + b'"x": ' + b"[" * 200 + b"]" * 200 + b"}",
    usage() + usage(),
    usage().replace(b", ", b",\n"),
    b"  " + usage(),
]


def simulated(**config: Any) -> list[bytes]:
    simulator = MarketSimulator(SimulationConfig(**{"seed": 11, "start": START, "rate": 40.0, **config}))
    return [value for _, value in simulator.messages()]


def test_columns_accept_only_what_pydantic_accepts_with_the_same_values_and_event_time() -> None:
    values = [v for v in simulated(duration_s=120.0) if b'"usage"' in v] + EDGES
    taken = [v for v, candidate in zip(values, candidates(values), strict=True) if candidate]
    read = [(v, decode_usage([v])) for v in taken]
    together = decode_usage([v for v in taken if v not in EDGES])
    assert together.ok.all()
    accepted = 0
    for value, columns in read:
        event = decode(value)
        if not columns.ok[0]:
            continue
        accepted += 1
        assert isinstance(event, Usage), value
        assert columns.at_us[0] == event.at_us
        assert columns.keys[0] == event.key and columns.products == [event.product_id]
        row = columns.table.to_pylist()[0]
        assert row == {name: getattr(event, name) for name in row}  # what it says too: `content_digest`
    edges_accepted = sum(1 for value, columns in read if value in EDGES and columns.ok[0])
    assert edges_accepted == 15, "the edge cases the columns should accept, and no more"
    assert accepted == len(together.ok) + edges_accepted


def test_a_message_arrow_cannot_read_leaves_the_others_to_the_columns() -> None:
    too_long = usage()[:-1] + b',"x": ' + b"[" * 300 + b"]" * 300 + b"}"  # left to pydantic: it refuses the nesting
    assert candidates([b"  " + usage(), too_long, None, b"", b'"usage"', usage()]) == [False] * 5 + [True]
    bad = [usage()[:-1] + b',"x": "\xff"}', usage() + usage(), usage(calls="5"), b"{", b'{"calls": 1} {"calls": 2}']
    good = [usage(event_id=f"U-{n}") for n in range(9)]
    mixed = [good[0], bad[0], *good[1:4], bad[1], bad[2], good[4], bad[3], *good[5:8], bad[4], good[8]]
    columns = decode_usage(mixed)
    assert [value in good for value in mixed] == columns.ok.tolist()
    assert [columns.keys[i][1] for i in range(len(mixed)) if columns.ok[i]] == [f"U-{n}" for n in range(9)]


def run(
    values: list[bytes],
    as_columns: bool,
    batch: int,
    headers: list[Headers] | None = None,
    keys_file: Path | None = None,
) -> tuple[MemoryStore, list[bytes]]:
    """`headers`: each message's record headers; `keys_file`: the producer keys the pipeline verifies them with."""
    published: list[bytes] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        if topic == "dm.alerts":
            published.append(value)

    store = MemoryStore()
    settings = Settings(usage_as_columns=as_columns, ingest=IngestSettings(keys_file=keys_file))
    running = Pipeline(settings, store, publish, topic_id="log", reader=MemoryState)
    running.restore()
    every = headers or [[] for _ in values]
    for first in range(0, len(values), batch):
        messages = [
            Message("dm.events", 0, first + i, None, v, every[first + i])
            for i, v in enumerate(values[first : first + batch])
        ]
        asyncio.run(running.handle(messages, {0: len(values)}))
    return store, published


def test_a_resent_usage_stamped_earlier_does_not_move_back_when_its_exchange_was_first_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`volume_spike` counts an exchange's windows from the minute it was first seen. A batch taken whole gives it
    its first-seen usage ahead of the other events (`WholeBatch.sight_ahead`), as one by one: a duplicate
    stamped an hour earlier is not sighted either way."""
    judged_whole: list[int] = []
    judge = WholeBatch.judge

    def counted_batch(whole: WholeBatch, *usage: Any) -> Any:
        judged_whole.append(1)
        return judge(whole, *usage)

    monkeypatch.setattr(WholeBatch, "judge", counted_batch)
    batches = [
        [usage(event_id="U-1", occurred_at="2026-11-20T09:10:00+08:00")],
        [
            usage(event_id="U-1", occurred_at="2026-11-20T08:10:00+08:00"),
            usage(event_id="U-2", occurred_at="2026-11-20T09:20:00+08:00"),
        ],
    ]
    first_minutes = []
    for as_columns in (True, False):
        running = Pipeline(
            Settings(usage_as_columns=as_columns), MemoryStore(), _ignore, topic_id="log", reader=MemoryState
        )
        running.restore()
        offset = 0
        for values in batches:
            messages = [Message("dm.events", 0, offset + i, None, v) for i, v in enumerate(values)]
            asyncio.run(running.handle(messages, {0: 3}))
            offset += len(values)
        spike = next(d for d in running.surveillance.detectors if d.kind == "volume_spike")
        windows = spike._exchanges[USAGE["exchange_id"]]  # type: ignore[attr-defined]
        first_minutes.append(windows.next_minute - windows.closed)  # windows closed since first seen
    assert len(judged_whole) == 2  # both batches with usage as columns, none with usage as events
    ten_past = int(datetime(2026, 11, 20, 1, 10, tzinfo=UTC).timestamp()) // 60
    assert first_minutes == [ten_past, ten_past]


async def _ignore(topic: str, key: bytes | None, value: bytes) -> None:
    return None


def reclassified(values: list[bytes], where: int, n: int) -> bytes:
    """A `list` event, at `where`, of the product used most in the 200 messages around it, by the exchange that
    uses it most there, as another category; the fourth lists the edge cases' product, listed nowhere before."""
    near = [json.loads(v) for v in values[max(0, where - 100) : where + 100]]
    used = Counter((e["exchange_id"], e["product_id"]) for e in near if e["type"] == "usage")
    exchange_id, product_id = used.most_common(1)[0][0] if n < 3 else (USAGE["exchange_id"], USAGE["product_id"])
    listing = next(json.loads(v) for v in values if b'"action":"list"' in v)
    category = sorted({"dataset", "api", "report", "model", "compute", "service"} - {listing["category"]})[n]
    at = next(e["occurred_at"] for e in reversed(near[:100]) if e["type"] != "heartbeat")
    changed = {**listing, "event_id": f"RELIST-{n}", "exchange_id": exchange_id, "occurred_at": at}
    return json.dumps({**changed, "product_id": product_id, "category": category}, ensure_ascii=False).encode()


def comparable(store: MemoryStore, table: str) -> list[tuple[Any, ...]]:
    stamps = {"ingested_at", "received_at", "processed_at", "detected_at", "alert_id"}
    return sorted(tuple(sorted((k, repr(v)) for k, v in row.items() if k not in stamps)) for row in store.pylist(table))


@pytest.mark.parametrize("batch", [50, 5_000])
def test_a_market_stores_the_same_rows_and_raises_the_same_alerts_with_usage_as_columns_or_not(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = simulated(duration_s=2_400.0, rate=8.0, injections={kind: 1 for kind in KINDS})
    # Resent usage (duplicates), late usage and the edge cases, spread through the stream.
    usages = [i for i, v in enumerate(values) if b'"usage"' in v][::97]
    for i in reversed(usages):  # each a little after its first copy, within the batch or not
        values.insert(i + 1 + i % 60, values[i])
    # A heartbeat reusing a usage event's identity, a little after it: a conflicting resend of it (it says else).
    beat = next(json.loads(v) for v in values if b'"heartbeat"' in v)
    for i in reversed([i for i, v in enumerate(values) if b'"usage"' in v][50::211]):
        used = json.loads(values[i])
        same = {**beat, **{field: used[field] for field in ("exchange_id", "event_id", "occurred_at")}}
        values.insert(i + 1 + i % 7, json.dumps(same).encode())
    for n, extra in enumerate(EDGES):  # stamped ten minutes in: past that, so as not to move event time
        values.insert(len(values) // 2 + (n * 389) % (len(values) // 2), extra)
    values.insert(len(values) * 3 // 4, usage(event_id="LATE-1", occurred_at="2026-11-20T09:00:00+08:00"))
    # Usage ahead of the market by ten minutes: the other events after it in its batch are late.
    ahead = int(len(values) * 0.97)
    at = next(json.loads(v)["occurred_at"] for v in values[ahead:] if b'"heartbeat"' not in v)
    stamp = (datetime.fromisoformat(at) + timedelta(minutes=10)).isoformat(timespec="milliseconds")
    values.insert(ahead, usage(event_id="AHEAD-1", occurred_at=stamp))
    # Products listed again as something else (and a product listed nowhere before), between their usage.
    for n, at in enumerate((0.3, 0.45, 0.6, 0.9)):
        values.insert(int(len(values) * at), reclassified(values, int(len(values) * at), n))
    one_by_one: list[bytes] = []  # usage messages the pipeline validated one at a time

    def counted(raw: bytes | None, clock: WallClock | None = None) -> Any:
        if raw is not None and b'"usage"' in raw:
            one_by_one.append(raw)
        return decode(raw, clock)

    judged_whole: list[int] = []  # batches whose usage was judged at their end, at once (`whole_batch`)
    judge = WholeBatch.judge

    def counted_batch(whole: WholeBatch, *usage: Any) -> Any:
        judged_whole.append(1)
        return judge(whole, *usage)

    for module in (batch_core, batch_usage):  # records decoded one by one, usage the columns refused
        monkeypatch.setattr(module, "decode", counted)
    monkeypatch.setattr(WholeBatch, "judge", counted_batch)
    columns_store, columns_alerts = run(values, as_columns=True, batch=batch)
    assert 0 < len(one_by_one) <= len(EDGES)  # only edge cases: the columns read the rest
    assert len(judged_whole) == -(-len(values) // batch)  # every batch, the first ones (new exchanges) too
    events_store, events_alerts = run(values, as_columns=False, batch=batch)
    assert {json.loads(a)["kind"] for a in events_alerts} == set(KINDS)
    # The same alerts; within one batch `exchange_silent`'s come after the others when the batch is taken whole
    # (a batch's alerts are all published before its rows are stored: their order there means nothing).
    assert sorted(json.loads(a)["dedup_key"] for a in columns_alerts) == sorted(
        json.loads(a)["dedup_key"] for a in events_alerts
    )
    for table in ("usage", "trades", "listings", "heartbeats", "duplicate_events", "rejected_events", "alerts"):
        assert comparable(columns_store, table) == comparable(events_store, table), table
    # Usage is a third of the simulated arrivals; about a quarter of the events since trades the volume cap holds
    # back are deferred rather than metered (issue 28): enough that the columns carry most of the stream's usage.
    assert len(columns_store.pylist("usage")) > 0.2 * len(values)
    assert any(row["late"] for row in columns_store.pylist("usage"))
    assert any(row["late"] for row in columns_store.pylist("trades"))  # behind the usage ahead
    assert len(columns_store.pylist("duplicate_events")) >= len(usages)
    conflicts = [row for row in columns_store.pylist("rejected_events") if row["reason"] == "conflicting_duplicate"]
    assert any(b'"heartbeat"' in row["raw"] for row in conflicts)
    assert any(b'"usage"' in row["raw"] for row in conflicts)  # the edge cases restamped under one identity


def test_rejections_of_usage_name_their_reason_as_before() -> None:
    store, _ = run([usage(calls=-1), usage(exchange_id="NOPE"), usage(event_id="U-OK")], as_columns=True, batch=10)
    assert [r["reason"] for r in store.pylist("rejected_events")] == ["invalid", "unknown_exchange"]
    assert [r["event_id"] for r in store.pylist("usage")] == ["U-OK"]
    assert isinstance(decode(usage(calls=-1)), Rejection)


class FailingOnBatches(ExchangeSilent):
    """Test double: `exchange_silent` with a bug that only its whole-batch path hits."""

    def sighted_batch(self, *args: Any, **kwargs: Any) -> list[Finding]:
        raise ZeroDivisionError("no events")


class FailingAhead(VolumeSpike):
    """Test double: `volume_spike` with a bug that only sighting a batch's usage ahead hits."""

    def sight_ahead(self, earliest: Mapping[str, int]) -> None:
        raise ZeroDivisionError("no usage")


@pytest.mark.parametrize("failing", [FailingOnBatches, FailingAhead])
def test_a_rule_failing_on_a_batch_taken_whole_misses_it_and_the_events_are_stored_all_the_same(
    failing: type[ExchangeSilent | VolumeSpike],
) -> None:
    values = simulated(duration_s=600.0, rate=8.0)
    settings = Settings()
    rule = failing()
    rules = [d for d in build_detectors(settings.rules) if d.kind != rule.kind] + [rule]
    surveillance = Surveillance(settings.rules, settings.allowed_lateness_s * 1000, rules)
    store = MemoryStore()

    async def publish(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    running = Pipeline(settings, store, publish, topic_id="log", surveillance=surveillance, reader=MemoryState)
    running.restore()
    errors = metrics.DETECTOR_ERRORS.labels(detector=rule.kind)
    before = errors._value.get()
    for first in range(0, len(values), 500):
        messages = [Message("dm.events", 0, first + i, None, v) for i, v in enumerate(values[first : first + 500])]
        asyncio.run(running.handle(messages, {0: len(values)}))
    stored = sum(len(store.pylist(table)) for table in ("usage", "trades", "listings", "heartbeats"))
    assert stored == len(values) and not store.pylist("rejected_events")
    assert errors._value.get() >= before + len(values) // 500  # counted, every batch


Headers = list[tuple[str, bytes | None]]


def test_signed_and_forged_messages_are_judged_alike_as_columns_or_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With producer keys, a market whose every eleventh message is unsigned, signed with another exchange's key,
    with a garbage or a wrong signature: those, and only those, are `unauthenticated`, usage read as columns or
    not; every other message (the edge cases signed too) lands as without keys."""
    keys_file = tmp_path / "keys.csv"
    rows = [f"{code},{code}-1,{n:02x}{'5a' * 31}" for n, code in enumerate(sorted(exchanges()))]
    keys_file.write_text("\n".join(["exchange_id,key_id,secret", *rows, f"SHDEX,SHDEX-2,{'c3' * 48}"]) + "\n")
    ring = load_keys(keys_file)
    market = simulated(duration_s=900.0, rate=8.0)
    values = market + EDGES
    first = {key.exchange_id: key for key in reversed(ring.keys)}  # each exchange's first key
    headers: list[Headers] = []
    for n, value in enumerate(values):
        try:
            exchange_id = json.loads(value).get("exchange_id")
        except (ValueError, AttributeError):
            exchange_id = None
        own = first.get(exchange_id, first["SHDEX"])
        foreign = first["SZDEX" if exchange_id != "SZDEX" else "SHDEX"]
        attack = n % 11 if n < len(market) else None
        if attack == 0:
            headers.append([])
        elif attack == 1:
            headers.append(foreign.headers(value))
        elif attack == 2:
            headers.append([("dm-key", own.key_id.encode()), ("dm-sig", b"0" * 64)])
        elif attack == 3:
            headers.append([("dm-key", own.key_id.encode()), ("dm-sig", own.signature(value + b" "))])
        elif exchange_id == "SHDEX" and n % 2:
            headers.append(ring.keys[-1].headers(value))  # SHDEX's second key: rotation
        else:
            headers.append(own.headers(value))
    one_by_one: list[bytes] = []

    def counted(raw: bytes | None, *clock: Any) -> Any:
        if raw is not None and b'"usage"' in raw:
            one_by_one.append(raw)
        return decode(raw, *clock)

    for module in (batch_core, batch_usage):  # records decoded one by one, usage the columns refused
        monkeypatch.setattr(module, "decode", counted)
    columns_store, columns_alerts = run(values, True, 500, headers, keys_file)
    assert len(one_by_one) <= len(EDGES)  # the columns read the market's usage, forged or not
    events_store, events_alerts = run(values, False, 500, headers, keys_file)
    for table in ("usage", "trades", "listings", "heartbeats", "duplicate_events", "rejected_events", "alerts"):
        assert comparable(columns_store, table) == comparable(events_store, table), table
    assert sorted(json.loads(a)["dedup_key"] for a in columns_alerts) == sorted(
        json.loads(a)["dedup_key"] for a in events_alerts
    )
    unauthenticated = [r for r in columns_store.pylist("rejected_events") if r["reason"] == "unauthenticated"]
    assert sorted(r["src_offset"] for r in unauthenticated) == [n for n in range(len(market)) if n % 11 < 4]
    why = {0: "missing header dm-key and dm-sig", 1: "unknown key for exchange", 2: "bad signature", 3: "bad signature"}
    for row in unauthenticated:
        assert row["raw"] == values[row["src_offset"]]  # the raw bytes kept
        assert row["detail"].startswith(why[row["src_offset"] % 11]), row["detail"]
    assert any(r["exchange_id"] == "SHDEX" for r in columns_store.pylist("usage"))
    # Without keys, the same messages: the edge cases' outcomes are those they had before keys.
    unsigned_store, _ = run(EDGES, True, 500)
    signed_edges = [r for r in columns_store.pylist("rejected_events") if r["src_offset"] >= len(market)]
    assert sorted(r["reason"] for r in signed_edges) == sorted(
        r["reason"] for r in unsigned_store.pylist("rejected_events")
    )
