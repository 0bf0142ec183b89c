"""Replay files with known answers: clean simulated traffic plus every kind of bad line, resends and late events.

The expectations are computed here from the file's own lines (what was sent),
not from anything the monitor does, so a test can demand exact equality with what the monitor stored.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.simulator.scenario import SCENARIO_ALL

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


@dataclass
class Expected:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    late: int = 0
    amount_by_exchange: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    amount_by_sector: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    trades: int = 0


def build(path: Path, minutes: float = 12, seed: int = 11) -> Expected:
    """Write the file and return what the monitor must end up with."""
    simulation = MarketSimulator(SimulationConfig(seed=seed, start=START, duration_s=minutes * 60, rate=2.0))
    clean = [value for _, value in simulation.messages()]
    events = [json.loads(value) for value in clean]
    trades = [e for e in events if e["type"] == "trade"]
    last_ms = max(ms_of(e["occurred_at"]) for e in events)

    def variant(base: dict, **changes: object) -> bytes:
        event = {**base, **changes}
        return json.dumps(event, ensure_ascii=False).encode()

    t0, t1, t2 = trades[5], trades[6], trades[7]
    bad: list[tuple[bytes, str]] = [
        (b"{not json", "malformed"),
        (b"\xff\xfe\x00garbage", "malformed"),
        (b"[1, 2, 3]", "malformed"),
        (b"", "malformed"),
        (variant(t0, schema="dm.v2", event_id="X-1"), "unsupported_schema"),
        (variant(t0, quantity=0, event_id="X-2"), "invalid"),
        (variant(t0, occurred_at="2026-11-20T09:00:00", event_id="X-3"), "invalid"),
        (variant(t0, price=12.5, event_id="X-4"), "invalid"),
        (variant(t0, venue="dark_pool", event_id="X-5"), "invalid"),
        (variant(t0, exchange_id="NOPE", event_id="X-6"), "unknown_exchange"),
        (variant(t1, amount=str(Decimal(t1["amount"]) + Decimal("0.01")), event_id="X-7"), "amount_mismatch"),
    ]
    # Late events: one within the allowed lateness (updates its window), one far beyond it.
    late_ok = variant(
        t2, event_id="LATE-OK", trade_id="LATE-OK", occurred_at=iso_of(last_ms - 2 * 60_000)
    )
    late_far = variant(
        t2, event_id="LATE-FAR", trade_id="LATE-FAR", occurred_at=iso_of(last_ms - 30 * 60_000)
    )
    lines: list[bytes] = list(clean)
    # Interleave the bad lines through the stream and resend some valid events.
    for index, (raw, _) in enumerate(bad):
        lines.insert(len(lines) * (index + 1) // (len(bad) + 1), raw)
    # Duplicates: two byte-identical resends and one re-serialised copy (same ids, other bytes).
    resent = [clean[3], clean[len(clean) // 2], json.dumps(trades[10], ensure_ascii=False).encode()]
    lines.extend(resent)
    lines.extend([late_ok, late_far])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return tally(lines, bad)


def build_market(path: Path, minutes: float, rate: float = 2.0, seed: int = 11, anomalies: bool = True) -> Expected:
    """A simulated market (every anomaly kind injected) with bad lines, resends and late events mixed in."""
    injections = SCENARIO_ALL if anomalies else {}
    simulation = MarketSimulator(
        SimulationConfig(seed=seed, start=START, duration_s=minutes * 60, rate=rate, injections=injections)
    )
    clean = [value for _, value in simulation.messages()]
    events = [json.loads(value) for value in clean]
    trades = [e for e in events if e["type"] == "trade"]
    last_ms = max(ms_of(e["occurred_at"]) for e in events)

    def variant(base: dict[str, Any], **changes: object) -> bytes:
        return json.dumps({**base, **changes}, ensure_ascii=False).encode()

    bad: list[tuple[bytes, str]] = []
    for n in range(0, len(trades) - 2, max(1, len(trades) // 12)):
        t0, t1 = trades[n], trades[n + 1]
        bad += [
            (b"{not json " + str(n).encode(), "malformed"),
            (b"\xff\xfe\x00garbage" + str(n).encode(), "malformed"),
            (variant(t0, schema="dm.v2", event_id=f"X-{n}-1"), "unsupported_schema"),
            (variant(t0, quantity=0, event_id=f"X-{n}-2"), "invalid"),
            (variant(t0, exchange_id="NOPE", event_id=f"X-{n}-3"), "unknown_exchange"),
            (variant(t1, amount=str(Decimal(t1["amount"]) + Decimal("0.01")), event_id=f"X-{n}-4"), "amount_mismatch"),
        ]
    lines: list[bytes] = list(clean)
    for index, (raw, _) in enumerate(bad):
        lines.insert(len(lines) * (index + 1) // (len(bad) + 1), raw)
    # Resends spread through the stream (byte-identical and re-serialised), then a late pair at the end.
    for index in range(1, 40):
        source = clean[index * len(clean) // 41]
        copy = source if index % 2 else json.dumps(json.loads(source), ensure_ascii=False, indent=None).encode() + b" "
        lines.insert(min(len(lines), index * len(lines) // 40 + 50), copy)
    t2 = trades[7]
    lines.append(variant(t2, event_id="LATE-OK", trade_id="LATE-OK", occurred_at=iso_of(last_ms - 2 * 60_000)))
    lines.append(variant(t2, event_id="LATE-FAR", trade_id="LATE-FAR", occurred_at=iso_of(last_ms - 30 * 60_000)))
    path.write_bytes(b"\n".join(lines) + b"\n")

    return tally(lines, bad)


def tally(lines: list[bytes], bad: list[tuple[bytes, str]]) -> Expected:
    """What the monitor must end up with for these lines, `bad` being the ones to reject (and why)."""
    expected = Expected(lines=len(lines))
    sector_of: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for _, reason in bad:
        expected.rejected[reason] += 1
    bad_raw = {raw for raw, _ in bad}
    for raw in lines:
        if raw in bad_raw:
            continue
        event = json.loads(raw)
        key = (event["exchange_id"], event["event_id"])
        if key in seen:
            expected.duplicates += 1
            continue
        seen.add(key)
        expected.accepted += 1
        if event["type"] == "listing" and event["action"] == "list":
            sector_of[event["product_id"]] = event["sector"]
        if event["type"] == "trade":
            amount = Decimal(event["amount"])
            expected.trades += 1
            expected.amount_by_exchange[event["exchange_id"]] += amount
            expected.amount_by_sector[sector_of.get(event["product_id"], "unknown")] += amount
    expected.late = 1
    return expected


def ms_of(text: str) -> int:
    """Epoch milliseconds of an event's `occurred_at` text."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso_of(ms: int) -> str:
    """An `occurred_at` text (UTC, to the millisecond) for epoch milliseconds."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
