"""The console tests' market: a seeded file with anomalies, bad lines and resends, and the operator token."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from dmm.producer import EventProducer
from dmm.query import wait_until_drained
from dmm.replay import replay_file
from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.stack import EmbeddedStack
from settings import Settings

TOKEN = "console-test-token"


@contextmanager
def replayed_stack(settings: Settings, workdir: Path, build: Callable[[Path], int]) -> Iterator[EmbeddedStack]:
    """An embedded stack in `workdir` once the file `build` writes (returning its line count) is replayed and
    fully stored."""
    with EmbeddedStack(settings, workdir / "stack") as stack:
        path = workdir / "market.jsonl"
        sent = build(path)
        with EventProducer(settings.kafka) as producer:
            assert replay_file(path, producer) == sent
        wait_until_drained(settings, timeout=300)
        yield stack


def market_file(path: Path) -> int:
    """15 minutes of simulated market with four injected incidents, bad lines and resends."""
    simulation = MarketSimulator(
        SimulationConfig(
            seed=5,
            start=datetime.fromisoformat("2026-11-21T08:00:00+08:00"),
            duration_s=900,
            rate=2.0,
            injections={"self_dealing": 1, "price_outlier": 1, "wash_trading": 1, "pricing_policy_violation": 1},
        )
    )
    lines = [value for _, value in simulation.messages()]
    trade = json.loads(next(line for line in lines if b'"type":"trade"' in line.replace(b" ", b"")))
    bad = [
        b"{not json",
        json.dumps({**trade, "event_id": "BAD-1", "quantity": 0}).encode(),
        json.dumps({**trade, "event_id": "BAD-2", "exchange_id": "NOPE"}).encode(),
    ]
    lines[len(lines) // 2 : len(lines) // 2] = bad
    lines += [lines[100], lines[200]]  # resent: duplicates
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


HISTORY = (("2025-11-21T08:00:00+08:00", 300), ("2026-11-20T08:00:00+08:00", 300), ("2026-11-21T08:00:00+08:00", 600))


def history_file(path: Path) -> int:
    """A market seen on three days: a year before the last, the day before it, and the last (longer): every period
    has something to compare with."""
    lines = []
    for seed, (start, seconds) in enumerate(HISTORY, start=11):
        simulation = MarketSimulator(
            SimulationConfig(seed=seed, start=datetime.fromisoformat(start), duration_s=seconds, rate=1.0)
        )
        lines += [value for _, value in simulation.messages()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


# How the console writes figures, written here from its rules (not taken from its code), for tests to expect.

UNITS = {
    "zh": ((10**8, "亿元"), (10**4, "万元"), (1, "元")),
    "en": ((10**9, "bn"), (10**6, "M"), (10**3, "k"), (1, "")),
}
CENT = Decimal("0.01")


def readable(amount: Decimal | str, lang: str) -> str:
    """`253704329.37` as the page shows it: `2.54亿元` / `CNY 253.70 M` (two decimals of the largest unit reached,
    half up)."""
    value = Decimal(amount)
    size, unit = next(((s, u) for s, u in UNITS[lang] if abs(value) >= s), UNITS[lang][-1])
    figure = f"{(value / size).quantize(CENT, ROUND_HALF_UP):,}"
    if lang == "zh":
        return figure + unit
    return f"CNY {figure} {unit}" if unit else f"CNY {figure}"


def exact(amount: Decimal | str) -> str:
    """The exact figure on hover and in print: `¥253,704,329.37`."""
    return f"¥{Decimal(amount).quantize(CENT):,}"


def percent(part: Decimal | str, whole: Decimal | str) -> str:
    """A share to two decimals (`40.88%`), `—` of nothing."""
    if not Decimal(whole):
        return "—"
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(CENT, ROUND_HALF_UP)}%"


def change(value: Decimal | int | str, base: Decimal | int | str) -> str:
    """The change from `base`, in % to one decimal (`+10.3%`, `−4.0%`); `—` from 0."""
    if not Decimal(base):
        return "—"
    tenths = ((Decimal(value) - Decimal(base)) * 100 / Decimal(base)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{'+' if tenths > 0 else '−' if tenths < 0 else ''}{abs(tenths)}%"


def point_change(part: Decimal, whole: Decimal, base_part: Decimal, base_whole: Decimal, lang: str) -> str:
    """The change of a share in percentage points to two decimals (`+1.23 个百分点` / `+1.23 pp`); `—` from or to
    nothing."""
    if not whole or not base_whole:
        return "—"
    delta = ((part / whole - base_part / base_whole) * 100).quantize(CENT, ROUND_HALF_UP)
    text = f"{'+' if delta > 0 else '−' if delta < 0 else ''}{abs(delta)}"
    return f"{text} 个百分点" if lang == "zh" else f"{text} pp"
