"""The console tests' market: a seeded file with anomalies, bad lines and resends, and the operator token."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from dmm.simulator import MarketSimulator, SimulationConfig

TOKEN = "console-test-token"


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
