"""The stream is the contract's: valid dm.v1 events, right keys, unique ids, event-time order, reproducible."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise

from dmm.simulator import MarketSimulator, SimulationConfig
from models import EVENT_ADAPTER, Heartbeat, Listing, exchanges, partition_key, sectors
from tests.support.reference import parse
from tests.support.simulated_runs import START, Run, simulate


def test_every_line_is_a_valid_event_with_known_codes(injected_run: Run) -> None:
    for message in injected_run.messages:
        event = EVENT_ADAPTER.validate_json(message.value)
        assert event.exchange_id in exchanges()
        if isinstance(event, Listing):
            assert all(code in exchanges() for code in event.recognized_by)
            if event.action == "list":
                assert event.sector in sectors()
        assert message.key == partition_key(event).encode()


def test_values_are_compact_json_as_an_exchange_sends_it(clean_run: Run) -> None:
    for line in clean_run.lines[:500]:
        record = json.loads(line)
        assert record["schema"] == "dm.v1"
        assert json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() == line
        assert record["occurred_at"].endswith("+08:00")


def test_event_ids_unique_per_exchange(injected_run: Run) -> None:
    seen = set()
    for event in parse(injected_run.lines):
        key = (event["exchange_id"], event["event_id"])
        assert key not in seen
        seen.add(key)


def test_stream_is_in_event_time_order(injected_run: Run) -> None:
    times = [event["_ms"] for event in parse(injected_run.lines)]
    assert times == sorted(times)
    assert [message.occurred_ms for message in injected_run.messages] == times


def test_heartbeats_every_10s_with_contiguous_seq(clean_run: Run) -> None:
    beats: dict[str, list[Heartbeat]] = defaultdict(list)
    for line in clean_run.lines:
        event = EVENT_ADAPTER.validate_json(line)
        if isinstance(event, Heartbeat):
            beats[event.exchange_id].append(event)
    assert set(beats) == set(exchanges())
    for series in beats.values():
        assert [beat.seq for beat in series] == list(range(len(series)))
        gaps = {(b.occurred_at - a.occurred_at).total_seconds() for a, b in pairwise(series)}
        assert gaps == {10.0}


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = simulate(seed=42, duration_s=900.0, injections={"price_outlier": 1, "exchange_silent": 1})
    again = simulate(seed=42, duration_s=900.0, injections={"price_outlier": 1, "exchange_silent": 1})
    other = simulate(seed=43, duration_s=900.0, injections={"price_outlier": 1, "exchange_silent": 1})
    assert b"\n".join(first.lines) == b"\n".join(again.lines)
    assert first.incidents == again.incidents
    assert first.lines != other.lines


def test_rate_sets_business_events_per_simulated_second() -> None:
    run = simulate(seed=8, duration_s=1_200.0, rate=3.0)
    business = [event for event in parse(run.lines) if event["type"] != "heartbeat"]
    # Catalogue listings come on top; trades the minute cap holds back come off.
    assert 0.8 * 3.0 * 1_200 < len(business) < 1.3 * 3.0 * 1_200


def test_messages_yields_key_value_pairs() -> None:
    simulator = MarketSimulator(SimulationConfig(seed=1, start=START, duration_s=30.0))
    pairs = list(simulator.messages())
    assert pairs and all(isinstance(key, bytes) and isinstance(value, bytes) for key, value in pairs)
