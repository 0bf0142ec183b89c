"""Injected anomalies: exactly the requested incidents, each found by its rule and by no other."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from dmm.simulator import KINDS, Incident, SimulationConfig
from tests.support import reference
from tests.support.reference import Event
from tests.support.simulated_runs import START, Run, simulate


def findings(events: list[Event]) -> dict[str, set[tuple[object, ...]]]:
    """Every reference rule's findings, normalised to compare with the ground truth."""
    return {
        "self_dealing": {(event_id,) for event_id in reference.self_dealing(events)},
        "wash_trading": set(reference.wash_cycles(events)),
        "unlisted_product": {(key[0], key[1], *ids) for key, ids in reference.unlisted(events).items()},
        "pricing_policy_violation": {(event_id,) for event_id in reference.pricing_policy(events)},
        "price_outlier": {(event_id,) for event_id in reference.price_outliers(events)},
        "cross_exchange_price_gap": set(reference.price_gaps(events)),
        "volume_spike": set(reference.volume_spikes(events)),
        "exchange_silent": set(reference.silences(events)),
    }


def expected(incident: Incident, times: dict[str, int]) -> tuple[object, ...]:
    """What the reference rule of the incident's kind should report for it."""
    match incident.kind:
        case "unlisted_product":
            return (incident.exchange_id, incident.product_id, *incident.event_ids)
        case "cross_exchange_price_gap":
            return (incident.product_id, incident.event_ids[-1])
        case "volume_spike":
            return (incident.exchange_id, times[incident.event_ids[0]] // 60_000)
        case "exchange_silent":
            return (incident.exchange_id, *incident.event_ids)
        case _:
            return incident.event_ids


def check_against_reference(run: Run) -> None:
    events = reference.parse(run.lines)
    times = {event["event_id"]: event["_ms"] for event in events}
    truth: dict[str, set[tuple[object, ...]]] = {kind: set() for kind in KINDS}
    for incident in run.incidents:
        truth[incident.kind].add(expected(incident, times))
    assert findings(events) == truth


def test_scenario_all_has_two_incidents_of_every_kind(injected_run: Run) -> None:
    assert Counter(incident.kind for incident in injected_run.incidents) == {kind: 2 for kind in KINDS}


def test_evidence_exists_and_spans_the_window(injected_run: Run) -> None:
    events = {event["event_id"]: event for event in reference.parse(injected_run.lines)}
    for incident in injected_run.incidents:
        assert incident.event_ids and all(event_id in events for event_id in incident.event_ids)
        evidence = [events[event_id] for event_id in incident.event_ids]
        assert incident.window_start == min(evidence, key=lambda e: e["_ms"])["occurred_at"]
        assert incident.window_end == max(evidence, key=lambda e: e["_ms"])["occurred_at"]
        assert datetime.fromisoformat(incident.window_start) <= datetime.fromisoformat(incident.window_end)
        assert any(event["exchange_id"] == incident.exchange_id for event in evidence)
        if incident.product_id is not None:
            assert all(event.get("product_id") == incident.product_id for event in evidence)


def test_scenario_all_matches_the_reference_rules_exactly(injected_run: Run) -> None:
    check_against_reference(injected_run)


def test_both_wash_cycle_shapes_and_outlier_sides(injected_run: Run) -> None:
    wash = sorted(len(i.event_ids) for i in injected_run.incidents if i.kind == "wash_trading")
    assert wash == [2, 3]
    sides = sorted(i.note.split(":")[0] for i in injected_run.incidents if i.kind == "price_outlier")
    assert sides == ["high", "low"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_kind_alone_is_separable(kind: str) -> None:
    """Three injections of one kind: three incidents of it, nothing else fires."""
    run = simulate(seed=KINDS.index(kind) + 100, injections={kind: 3})
    assert [incident.kind for incident in run.incidents] == [kind] * 3
    check_against_reference(run)


def test_too_short_for_a_volume_spike() -> None:
    with pytest.raises(ValueError, match="volume_spike"):
        simulate(seed=1, duration_s=1_200.0, injections={"volume_spike": 1})


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        SimulationConfig(start=START, injections={"spoofing": 1})
