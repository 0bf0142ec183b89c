"""dm.events on four partitions: exact totals and the same alerts as on one.

The same seeded scenario (every alert kind injected) is replayed through a fresh stack with
one partition and with four. Four partitions are consumed at different speeds within each
fetch, so this is where a market watermark taken from the fastest partition would make
on-time events late and exchanges silent (see `streams.watermark`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dmm.evaluation import score
from dmm.simulator import write_jsonl
from tests.support.market_file import tally
from tests.support.stack import every_kind_scenario, run_one_worker

pytestmark = pytest.mark.slow


def test_four_partitions_store_and_alert_exactly_as_one(tmp_path: Path) -> None:
    simulation = every_kind_scenario()
    events = tmp_path / "events.jsonl"
    write_jsonl(simulation, events)
    expected = tally(events.read_bytes().splitlines(), [])

    one = run_one_worker(events, tmp_path / "one", partitions=1)
    four = run_one_worker(events, tmp_path / "four", partitions=4)

    assert len(four["partitions"]) == 4
    assert all(p["processed"] >= 0 for p in four["partitions"].values()), "every partition carried events"
    for result in (one, four):
        assert result["counts"] == {"n": expected.accepted, "d": 0, "r": 0}
        assert result["amounts"] == dict(expected.amount_by_exchange)
        report = score(simulation.incidents, result["alerts"])
        assert not report.missed and not report.false_alerts, (report.missed, report.false_alerts)
    assert sorted(a.dedup_key for a in four["alerts"]) == sorted(a.dedup_key for a in one["alerts"])
