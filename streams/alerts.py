"""The AlertLedger: findings in, alerts out, one alert per incident across restarts and replays.

Detectors may state the same incident many times (each new trade of an unlisted
product that day, each reprice while a price gap stays open, a re-check after a
restart); the ledger raises it once, keyed by the finding's dedup key, and
drops the rest. It remembers the keys alerted within a horizon (default 7 days
of processing time), rebuilt on start from the `alerts` table, so a restart or a
replay of old events does not alert an incident again.

Lifecycle (table `alert_actions`, written by `dmm alerts ack|resolve`): an
alert is *open*, *acked* (someone is on it; still one incident) or *resolved*
(closed). A resolved incident that recurs is a new alert: when a finding comes
for a key whose latest alert is resolved, and its evidence names an event the
resolved alert did not, the ledger raises a new alert under `<key>#2` (then
`#3`, ...), with its own alert_id, lifecycle and evidence. A finding that only
repeats the resolved evidence (a restart, a replay) stays dropped. The ledger
learns of resolutions on `restore` and on `sync`, which the worker runs on a
timer (actions are written by the CLI or the worker's HTTP API).

Alerts are counted in `dmm_alerts_total{kind,severity}` by the pipeline once they
are stored, not here, so a batch whose write is retried is counted once.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from models import SEVERITY, Alert
from models.clock import EPOCH, from_ms, from_ms_or_none, to_ms
from sinks.clickhouse.state import StateReader
from streams.detectors.base import Finding

DEFAULT_HORIZON_S = 7 * 24 * 3600
_RECURRENCE = re.compile(r"^(?P<base>.+)#(?P<n>[2-9]|[1-9]\d+)$")


@dataclass(slots=True)
class Incident:
    """The latest alert raised for one base dedup key."""

    dedup_key: str  # `base` for the first occurrence, `base#n` for the n-th
    occurrence: int
    event_ids: frozenset[str]
    resolved: bool
    seen_ms: int  # processing time the incident was last stated (alerted or dropped)


def alert_id(dedup_key: str) -> str:
    """Deterministic, so the same incident has the same id in Kafka, ClickHouse and every replay."""
    return "a-" + hashlib.sha1(dedup_key.encode()).hexdigest()[:12]


def split_occurrence(dedup_key: str) -> tuple[str, int]:
    """`key#3` -> (`key`, 3); a key without a recurrence suffix is occurrence 1."""
    match = _RECURRENCE.match(dedup_key)
    return (match["base"], int(match["n"])) if match else (dedup_key, 1)


class AlertLedger:
    def __init__(self, horizon_s: int = DEFAULT_HORIZON_S) -> None:
        self.horizon_ms = horizon_s * 1000
        self._incidents: OrderedDict[str, Incident] = OrderedDict()  # base key -> incident, least recent first
        self._actions_through: datetime = EPOCH  # `at` of the latest action read from the store

    def __len__(self) -> int:
        return len(self._incidents)

    def admit(self, finding: Finding, now: datetime | None = None) -> Alert | None:
        """The alert for this finding, or None if its incident was already alerted."""
        now = now or datetime.now(UTC)
        now_ms = to_ms(now)
        self._forget(now_ms)
        base = finding.dedup_key
        incident = self._incidents.get(base)
        if incident is not None:
            incident.seen_ms = now_ms
            self._incidents.move_to_end(base)
            if not incident.resolved or set(finding.event_ids) <= incident.event_ids:
                return None
        occurrence = 1 if incident is None else incident.occurrence + 1
        dedup_key = base if occurrence == 1 else f"{base}#{occurrence}"
        self._incidents[base] = Incident(dedup_key, occurrence, frozenset(finding.event_ids), False, now_ms)
        self._incidents.move_to_end(base)
        return Alert(
            alert_id=alert_id(dedup_key),
            kind=finding.kind,
            severity=SEVERITY[finding.kind],
            exchange_id=finding.exchange_id,
            product_id=finding.product_id,
            parties=finding.parties,
            event_ids=finding.event_ids,
            score=finding.score,
            window_start=from_ms_or_none(finding.window_start_ms),
            window_end=from_ms_or_none(finding.window_end_ms),
            detected_at=now,
            dedup_key=dedup_key,
            message=finding.message,
            message_zh=finding.message_zh,
        )

    def resolved(self, dedup_key: str) -> None:
        """Mark an alert resolved (its incident may now recur as a new alert)."""
        base, _ = split_occurrence(dedup_key)
        incident = self._incidents.get(base)
        if incident is not None and incident.dedup_key == dedup_key:
            incident.resolved = True

    def restore(self, state: StateReader, now: datetime | None = None) -> None:
        """Reload the incidents alerted within the horizon, and which of them are resolved."""
        now = now or datetime.now(UTC)
        self._incidents.clear()
        for stored in state.incidents(to_ms(now) - self.horizon_ms):
            base, occurrence = split_occurrence(stored.dedup_key)
            known = self._incidents.get(base)
            if known is None or occurrence >= known.occurrence:
                self._incidents[base] = Incident(
                    stored.dedup_key, occurrence, frozenset(stored.event_ids), False, stored.detected_ms
                )
                self._incidents.move_to_end(base)
        self._actions_through = EPOCH
        self.sync(state)

    def sync(self, state: StateReader) -> None:
        """Pick up resolutions recorded since the last sync (by the CLI, the HTTP API or the console)."""
        self.apply_resolutions(self.resolutions_since(state))

    def resolutions_since(self, state: StateReader) -> list[tuple[str, int]]:
        """The resolutions recorded since the last sync; only reads (the worker runs it in a thread)."""
        return state.resolutions(to_ms(self._actions_through))

    def apply_resolutions(self, resolutions: list[tuple[str, int]]) -> None:
        for dedup_key, at_ms in resolutions:
            self.resolved(dedup_key)
            self._actions_through = max(self._actions_through, from_ms(at_ms))

    def _forget(self, now_ms: int) -> None:
        """Bounded memory: drop incidents not stated within the horizon (least recent first)."""
        while self._incidents:
            oldest = next(iter(self._incidents.values()))
            if oldest.seen_ms >= now_ms - self.horizon_ms:
                break
            self._incidents.popitem(last=False)
