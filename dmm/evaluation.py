"""`dmm eval`: how well the monitor finds the incidents a labelled scenario injected.

A scenario is the simulator's events JSONL plus its ground truth (one incident
per line: kind, exchange_id, product_id or null, evidence event_ids, event-time
window). `run_scenario` replays the events through the real stack (embedded
broker, worker process, embedded store) exactly as `dmm replay` would, waits
until the worker has drained them, and reads back the alerts; `score` compares.

Matching: an alert matches an incident when kind and exchange_id are equal, the
product_id is equal when the incident names one, and either their evidence
event_ids overlap or their event-time windows overlap. An incident with at least
one matching alert is detected; every further matching alert is a duplicate; an
alert matching no incident is a false alert.

Latency: from the moment the monitor could know (the latest time any of the
alert's evidence events was stored, `ingested_at`; the alert's window_end when
none of them is in the store) to the alert's `detected_at`, for the first alert
of each detected incident. Measured from ingestion rather than event time, so a
file replayed at full speed measures the monitor, not the replay's pace. An alert
raised in the batch that stores its evidence counts 0 (the worker stamps
`detected_at` while processing the batch and `ingested_at` when writing it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any, get_args

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.replay import replay_file
from dmm.simulator.ground_truth import Incident, read_truth
from dmm.stack import EmbeddedStack
from models import Alert, AlertKind
from models.clock import from_ms, from_ms_or_none
from settings import Settings
from sinks.clickhouse import queries

EventKey = tuple[str, str]  # (exchange_id, event_id)


@dataclass(slots=True)
class KindScore:
    kind: str
    injected: int = 0
    detected: int = 0
    false_alerts: int = 0
    duplicates: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return self.injected - self.detected

    @property
    def latency_p50_s(self) -> float | None:
        return median(self.latencies_s) if self.latencies_s else None

    @property
    def latency_max_s(self) -> float | None:
        return max(self.latencies_s) if self.latencies_s else None


@dataclass(slots=True)
class EvalReport:
    kinds: dict[str, KindScore]
    missed: list[Incident]
    false_alerts: list[Alert]

    @property
    def total(self) -> KindScore:
        total = KindScore("total")
        for row in self.kinds.values():
            total.injected += row.injected
            total.detected += row.detected
            total.false_alerts += row.false_alerts
            total.duplicates += row.duplicates
            total.latencies_s.extend(row.latencies_s)
        return total

    @property
    def perfect(self) -> bool:
        """Every incident found once, nothing else alerted."""
        total = self.total
        return total.missed == 0 and total.false_alerts == 0 and total.duplicates == 0


def matches(incident: Incident, alert: Alert) -> bool:
    if alert.kind != incident.kind or alert.exchange_id != incident.exchange_id:
        return False
    if incident.product_id is not None and alert.product_id != incident.product_id:
        return False
    if set(incident.event_ids) & set(alert.event_ids):
        return True
    start, end = _parse(incident.window_start), _parse(incident.window_end)
    alert_start = alert.window_start or alert.window_end
    alert_end = alert.window_end or alert.window_start
    if start is None or end is None or alert_start is None or alert_end is None:
        return False
    return alert_start <= end and start <= alert_end


def score(
    incidents: Iterable[Incident], alerts: Iterable[Alert], stored_at: Mapping[EventKey, datetime] | None = None
) -> EvalReport:
    """Score alerts against the ground truth, per alert kind (pure: no I/O)."""
    incidents, alerts = list(incidents), list(alerts)
    stored_at = stored_at or {}
    kinds = {kind: KindScore(kind) for kind in get_args(AlertKind)}
    matched: set[str] = set()
    missed: list[Incident] = []
    for incident in incidents:
        row = kinds.setdefault(incident.kind, KindScore(incident.kind))
        row.injected += 1
        found = sorted((a for a in alerts if matches(incident, a)), key=lambda a: (a.detected_at, a.dedup_key))
        matched.update(a.dedup_key for a in found)
        if not found:
            missed.append(incident)
            continue
        row.detected += 1
        row.duplicates += len(found) - 1
        row.latencies_s.append(_latency_s(found[0], stored_at))
    false_alerts = [a for a in alerts if a.dedup_key not in matched]
    for alert in false_alerts:
        kinds.setdefault(alert.kind, KindScore(alert.kind)).false_alerts += 1
    return EvalReport(kinds, missed, false_alerts)


def run_scenario(
    events: Path, truth: Path, settings: Settings, workdir: Path, timeout_s: float = 600
) -> EvalReport:
    """Replay `events` through a fresh embedded stack and score its alerts against `truth`."""

    incidents = read_truth(truth)
    with EmbeddedStack(settings, workdir) as stack:
        with EventProducer(stack.settings.kafka) as producer:
            replay_file(events, producer)
        wait_until_drained(stack.settings, timeout=timeout_s)
        database = settings.clickhouse.database
        detected = query_rows(stack.settings, queries.alerts_in_detection_order(database))
        alerts = [alert_from_row(row) for row in detected]
        evidence = (event_id for alert in alerts for event_id in alert.event_ids)
        stored = query_rows(stack.settings, *queries.evidence_stored_at(database, evidence)) if alerts else []
    stored_at = {(row["exchange_id"], row["event_id"]): from_ms(int(row["ms"])) for row in stored}
    return score(incidents, alerts, stored_at)


def alert_from_row(row: dict[str, Any]) -> Alert:
    data = {k: v for k, v in row.items() if not k.endswith("_ms")}
    data.update(
        window_start=from_ms_or_none(row["window_start_ms"]),
        window_end=from_ms_or_none(row["window_end_ms"]),
        detected_at=from_ms_or_none(row["detected_ms"]),
    )
    return Alert.model_validate(data)


def _latency_s(alert: Alert, stored_at: Mapping[EventKey, datetime]) -> float:
    known = [stored_at[(alert.exchange_id, e)] for e in alert.event_ids if (alert.exchange_id, e) in stored_at]
    since = max(known) if known else (alert.window_end or alert.window_start or alert.detected_at)
    return max(0.0, (alert.detected_at - since).total_seconds())


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
