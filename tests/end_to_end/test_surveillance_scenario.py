"""A seeded scenario with every alert kind injected yields every incident, once, and no false alert.

Real broker, real worker process, real store; the scenario's ground truth comes from the
simulator, the alerts from the `alerts` table, scored by `dmm.evaluation.score`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dmm.evaluation import run_scenario
from dmm.simulator import KINDS, write_jsonl, write_truth
from tests.support.stack import every_kind_scenario, stack_settings

pytestmark = pytest.mark.slow


def test_every_injected_incident_is_alerted_once_and_nothing_else(tmp_path: Path) -> None:
    simulation = every_kind_scenario()
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    write_jsonl(simulation, events)
    write_truth(simulation.incidents, truth)
    assert len(simulation.incidents) == 2 * len(KINDS)

    report = run_scenario(events, truth, stack_settings(tmp_path), tmp_path / "stack")

    assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    for kind in KINDS:
        row = report.kinds[kind]
        assert (row.injected, row.detected, row.missed, row.false_alerts, row.duplicates) == (2, 2, 0, 0, 0), row
