"""The Surveillance view (监管预警): alerts with their lifecycle, and ack / resolve behind a token.

The console is read-only unless `DMM_CONSOLE_TOKEN` is set: then a request bearing that
token may acknowledge or resolve an alert, recorded exactly as `dmm alerts ack|resolve`
records it (the `/api/alert-action` mechanism), with the actor and note it names.
"""

from __future__ import annotations

import hmac
from typing import Any, get_args

from pydantic import SecretStr

from models import AlertKind, Severity
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.console_queries import Reader

STATUSES = ("open", "acked", "resolved")
ACTIONS = ("ack", "resolve")
KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)


class Refused(Exception):
    """An alert action the console will not record; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def alert_filter(query: dict[str, str], exchange_codes: set[str]) -> q.AlertFilter:
    """The filter named by the query string; unknown values are refused, not passed to SQL."""
    chosen = {name: query.get(name) or None for name in ("kind", "severity", "exchange", "status")}
    allowed = {"kind": KINDS, "severity": SEVERITIES, "exchange": exchange_codes, "status": STATUSES}
    for name, value in chosen.items():
        if value is not None and value not in allowed[name]:
            raise Refused(400, f"unknown {name}: {value}")
    return q.AlertFilter(chosen["kind"], chosen["severity"], chosen["exchange"], chosen["status"])


def alerts_view(store: Reader, where: q.AlertFilter, limit: int) -> dict[str, Any]:
    """Status counts for the filter and the newest matching alerts (blocking: run it in a thread). Each alert says
    when it happened in event time, `event_time_ms` (the end of its window, else its start), apart from when the
    monitor detected it by the wall clock, `detected_wall_ms`: a replayed or late market is detected long after."""
    alerts = q.alerts(store, where, limit)
    for alert in alerts:
        alert["event_time_ms"] = (
            alert["window_end_ms"] if alert["window_end_ms"] is not None else alert["window_start_ms"]
        )
        alert["detected_wall_ms"] = alert["detected_ms"]
    return {
        "watermark_us": q.watermark_us(store),
        "counts": q.alert_status_counts(store, where),
        "alerts": alerts,
    }


def authorize(configured: SecretStr | None, header: str | None) -> None:
    """Refuse unless a token is configured and the request's `Authorization: Bearer …` equals it."""
    if configured is None or not configured.get_secret_value():
        raise Refused(403, "alert actions are disabled: the console is read-only (set DMM_CONSOLE_TOKEN)")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), configured.get_secret_value().encode()
    ):
        raise Refused(403, "a valid console token is required for alert actions")


def action_request(body: Any) -> tuple[str, str, str, str]:
    """(dedup_key, action, actor, note) from the posted JSON, or refused."""
    if not isinstance(body, dict):
        raise Refused(400, "expected a JSON object")
    key, action = str(body.get("dedup_key", "")).strip(), str(body.get("action", ""))
    actor, note = str(body.get("actor", "")).strip(), str(body.get("note", ""))
    if action not in ACTIONS:
        raise Refused(400, f"action must be one of {', '.join(ACTIONS)}")
    if not key or not actor:
        raise Refused(400, "dedup_key and actor (who acts) are required")
    return key, action, actor, note
