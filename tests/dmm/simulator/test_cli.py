"""`dmm simulate` to a file and live through a publish callback; pacing by the time scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

import dmm.producer
from dmm.cli import app
from dmm.simulator import (
    SCENARIO_ALL,
    MarketSimulator,
    Message,
    SimulationConfig,
    parse_injections,
    publish_live,
    read_truth,
)
from models import EVENT_ADAPTER
from tests.support.simulated_runs import START

runner = CliRunner()
START_TEXT = "2026-11-21T10:00:00+08:00"


def test_simulate_to_file_with_ground_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    args = ["simulate", "--seed", "9", "--start", START_TEXT, "--duration", "900", "--out", str(out)]
    injections = ["--inject", "self_dealing=2", "--inject", "wash_trading=1"]
    result = runner.invoke(app, [*args, "--truth", str(truth), *injections])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    config = SimulationConfig(
        seed=9, start=START, duration_s=900.0, injections={"self_dealing": 2, "wash_trading": 1}
    )
    assert lines == [message.value for message in MarketSimulator(config)]
    incidents = read_truth(truth)
    assert sorted(incident.kind for incident in incidents) == ["self_dealing", "self_dealing", "wash_trading"]
    ids = {EVENT_ADAPTER.validate_json(line).event_id for line in lines}
    assert all(event_id in ids for incident in incidents for event_id in incident.event_ids)


def test_simulate_rejects_bad_options(tmp_path: Path) -> None:
    out = str(tmp_path / "x.jsonl")
    for bad in (
        ["--inject", "insider_trading=1"],
        ["--inject", "price_outlier"],
        ["--scenario", "most"],
        ["--start", "2026-11-21T10:00:00"],
        ["--time-scale", "0"],
        ["--growth", "-1"],
        ["--year-seconds", "0"],
        ["--new-participants", "100000"],
        ["--hq-share", "SHDEX"],
        ["--hq-share", "SHDEX=1.5"],
        ["--hq-share", "NOPE=0.5"],
    ):
        result = runner.invoke(app, ["simulate", "--out", out, *bad])
        assert result.exit_code == 2, (bad, result.output)


class FakeProducer:
    """Stands in for dmm.producer.EventProducer: records what would go to the broker."""

    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, kafka: Any) -> None:
        self.kafka = kafka
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.flushed = False
        FakeProducer.instances.append(self)

    def __enter__(self) -> FakeProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((value, key))

    def flush(self) -> None:
        self.flushed = True


def test_simulate_live_publishes_through_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dmm.producer, "EventProducer", FakeProducer)
    args = ["simulate", "--seed", "2", "--start", START_TEXT, "--duration", "60", "--time-scale", "100000"]
    result = runner.invoke(app, [*args, "--bootstrap", "broker.example:9092"])
    assert result.exit_code == 0, result.output
    producer = FakeProducer.instances[-1]
    assert producer.kafka.bootstrap == "broker.example:9092"
    assert producer.flushed
    expected = MarketSimulator(SimulationConfig(seed=2, start=START, duration_s=60.0)).messages()
    assert producer.sent == [(value, key) for key, value in expected]


def test_publish_live_paces_by_event_time() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def publish(key: bytes, value: bytes) -> None:
        published.append(value)
        now[0] += 0.7 if value == b"b" else 0.0  # one slow hand-over: "c" falls due before it returns

    messages = [Message(b"k", b"a", 0), Message(b"k", b"b", 1_000), Message(b"k", b"c", 2_000)]
    published: list[bytes] = []
    behind: list[float] = []
    count = publish_live(messages, publish, 2.0, clock=lambda: now[0], sleep=sleep, behind=behind)
    assert count == 3 and published == [b"a", b"b", b"c"]
    assert sleeps == pytest.approx([0.5])  # "c" was due at 1.0 s, "b" returned at 1.2 s
    assert behind == pytest.approx([0.0, 0.7, 0.2])  # the publisher's own lateness, per message


def test_parse_injections() -> None:
    assert parse_injections(["volume_spike=3"]) == {"volume_spike": 3}
    assert parse_injections(["volume_spike=0"], "all") == {k: v for k, v in SCENARIO_ALL.items() if k != "volume_spike"}
    with pytest.raises(ValueError):
        parse_injections(["volume_spike=-1"])
