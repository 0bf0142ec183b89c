"""The simulated market echoes the published figures: growth, new products and participants, HQ share.

Tolerances come from the run itself: the standard error of each estimate, computed from the
generated trades (compound Poisson sums) or from the expected count (Poisson), times four.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dmm.cli import app
from dmm.simulator import MarketSimulator, SimulationConfig
from tests.support.reference import Event, parse
from tests.support.simulated_runs import START

runner = CliRunner()
START_TEXT = "2026-11-21T10:00:00+08:00"
CATALOGUE_MS = 20_000  # the exchanges publish their initial catalogues in the first 20 s
# Published: 3,328 new products in half a year, 2,600 new participants a quarter, 30 billion CNY
# a year traded on exchanges; one arrival of the simulator trades about 3,000 CNY.
CNY_SCALE = 3_000 / 30e9


@pytest.mark.slow
def test_growth_trend_shows_in_the_traded_amount(tmp_path: Path) -> None:
    """Eight simulated hours compressed into four market years at +30 %: the second half trades 1.3^2 x the first."""
    hours, years, growth = 8, 4, 0.3
    ratio, error = _half_ratio(_simulate_file(tmp_path, hours, "--growth", str(growth), "--year-seconds", "7200"))
    assert abs(ratio - (1 + growth) ** (years / 2)) <= 4 * error, (ratio, error)
    flat, flat_error = _half_ratio(_simulate_file(tmp_path, hours, "--growth", "0"))
    assert abs(flat - 1) <= 4 * flat_error, (flat, flat_error)
    assert ratio - flat > 8 * max(error, flat_error)


@pytest.mark.slow
def test_new_products_at_the_scaled_published_rate() -> None:
    rate, hours = 2.0, 3
    for per_half_year in (3_328, 33_280):  # the published figure, and ten times it for a tighter check
        config = SimulationConfig(
            seed=6,
            start=START,
            duration_s=hours * 3600.0,
            rate=rate,
            growth=0,
            new_products_per_half_year=per_half_year,
        )
        first_listed: dict[str, int] = {}
        for event in _events(MarketSimulator(config)):
            if event["type"] == "listing" and event["action"] == "list":
                first_listed.setdefault(event["product_id"], event["_ms"])
        start_ms = min(first_listed.values())
        new = sum(ms >= start_ms + CATALOGUE_MS for ms in first_listed.values())
        expected = per_half_year * 2 * CNY_SCALE * rate * hours * 3600
        assert abs(new - expected) <= 4 * math.sqrt(expected), (per_half_year, new, expected)


def test_new_participants_at_the_scaled_published_rate_and_visible_on_joining() -> None:
    rate, hours, per_quarter = 2.0, 3, 26_000  # ten times the published figure, for a tighter check
    config = SimulationConfig(
        seed=8,
        start=START,
        duration_s=hours * 3600.0,
        rate=rate,
        growth=0,
        new_products_per_half_year=33_280,  # the sellers among the newcomers list a new product each
        new_participants_per_quarter=per_quarter,
    )
    simulator = MarketSimulator(config)
    first_seen: dict[str, int] = {}
    for event in _events(simulator):
        for party in ("seller_id", "buyer_id"):
            if party in event:
                first_seen.setdefault(event[party], event["_ms"])
    expected = per_quarter * 4 * CNY_SCALE * rate * hours * 3600
    assert abs(len(simulator.newcomers) - expected) <= 4 * math.sqrt(expected), (len(simulator.newcomers), expected)
    kinds = {participant.kind for _, participant in simulator.newcomers}
    assert "enterprise" in kinds and len(kinds) >= 2
    end_ms = simulator.end_ms or 0
    for joined_ms, participant in simulator.newcomers:
        if joined_ms < end_ms - 60_000:  # a buyer retries its first purchase while exchanges are full
            assert joined_ms <= first_seen[participant.code] <= joined_ms + 60_000, participant


def test_high_quality_datasets_carry_the_configured_share_of_value() -> None:
    targets = {"SZDEX": 0.75, "WDEC": 0.6}
    options: dict[str, Any] = {"seed": 12, "start": START, "duration_s": 3 * 3600.0, "growth": 0}
    shares = _hq_shares(MarketSimulator(SimulationConfig(**options, high_quality_value_share=targets)))
    for code, target in targets.items():
        share, error = shares[code]
        assert abs(share - target) <= 4 * error, (code, share, error)
    untargeted = _hq_shares(MarketSimulator(SimulationConfig(**options, high_quality_value_share={})))
    assert untargeted["SZDEX"][0] < targets["SZDEX"] - 4 * untargeted["SZDEX"][1]


def test_default_targets_make_high_quality_datasets_most_of_the_hubs_value() -> None:
    shares = _hq_shares(MarketSimulator(SimulationConfig(seed=13, start=START, duration_s=3 * 3600.0)))
    assert shares["SHDEX"][0] > 0.5


def _simulate_file(tmp_path: Path, hours: int, *options: str) -> list[Event]:
    out = tmp_path / "events.jsonl"
    args = ["simulate", "--seed", "21", "--start", START_TEXT, "--duration", str(hours * 3600), "--rate", "0.25"]
    result = runner.invoke(app, [*args, "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return parse(out.read_bytes().splitlines())


def _events(simulator: MarketSimulator) -> list[Event]:
    return parse([message.value for message in simulator])


def _half_ratio(events: list[Event]) -> tuple[float, float]:
    """Traded amount of the run's second half over its first, and the ratio's standard error."""
    start, end = events[0]["_ms"], events[-1]["_ms"]
    sums, squares = [0.0, 0.0], [0.0, 0.0]
    for event in events:
        if event["type"] == "trade":
            half = int(event["_ms"] >= (start + end) / 2)
            amount = float(event["amount"])
            sums[half] += amount
            squares[half] += amount * amount
    ratio = sums[1] / sums[0]
    return ratio, ratio * math.sqrt(squares[0] / sums[0] ** 2 + squares[1] / sums[1] ** 2)


def _hq_shares(simulator: MarketSimulator) -> dict[str, tuple[float, float]]:
    """Per exchange: share of traded value in high-quality products, and its standard error."""
    high_quality: dict[str, bool] = {}
    trades: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for event in _events(simulator):
        if event["type"] == "listing" and event["action"] == "list":
            high_quality[event["product_id"]] = event["high_quality"]
        elif event["type"] == "trade":
            trades[event["exchange_id"]].append((float(event["amount"]), high_quality[event["product_id"]]))
    shares = {}
    for code, rows in trades.items():
        total = sum(amount for amount, _ in rows)
        share = sum(amount for amount, hq in rows if hq) / total
        error = math.sqrt(sum(amount * amount * (hq - share) ** 2 for amount, hq in rows)) / total
        shares[code] = (share, error)
    return shares
