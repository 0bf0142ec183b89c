"""A replay file with known answers: clean simulated traffic plus every kind of bad line.

The expectations are computed here from the file's own lines (what was sent),
not from anything the monitor does, so the end-to-end test can compare the two.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from dmm.simulator import MarketSimulator, SimulationConfig

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
    last_ms = max(_ms(e["occurred_at"]) for e in events)

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
        t2, event_id="LATE-OK", trade_id="LATE-OK", occurred_at=_iso(last_ms - 2 * 60_000)
    )
    late_far = variant(
        t2, event_id="LATE-FAR", trade_id="LATE-FAR", occurred_at=_iso(last_ms - 30 * 60_000)
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


def tally(lines: list[bytes], bad: list[tuple[bytes, str]]) -> Expected:
    """What the monitor must end up with for these lines, `bad` being the ones to reject (and why)."""
    expected = Expected(lines=len(lines))
    sector_of: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for raw, reason in bad:
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


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
