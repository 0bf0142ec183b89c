"""Records written outside the batch path: ops' alert actions, runtime rule changes, the market stage's progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from sinks.clickhouse.store import Store

ALERT_ACTIONS = ("ack", "resolve")
ALERT_ACTION_SCHEMA = pa.schema(
    [
        ("dedup_key", pa.string()),
        ("action", pa.string()),
        ("actor", pa.string()),
        ("note", pa.string()),
        ("at", pa.timestamp("ms", tz="UTC")),
    ]
)
RULE_CHANGE_SCHEMA = pa.schema(
    [
        ("changed_at", pa.timestamp("ms", tz="UTC")),
        ("actor", pa.string()),
        ("change", pa.string()),
        ("effective", pa.string()),
        ("accepted", pa.uint8()),
        ("error", pa.string()),
        ("key_id", pa.string()),
    ]
)


def record_alert_action(store: Store, dedup_key: str, action: str, actor: str, note: str) -> dict[str, str]:
    """Append one lifecycle action (who, what, when); shared by the CLI, the HTTP API and the console."""
    if action not in ALERT_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ALERT_ACTIONS)}")
    if not dedup_key or not actor:
        raise ValueError("dedup_key and actor (who) are required")
    at = datetime.now(UTC)
    said = {"dedup_key": dedup_key, "action": action, "actor": actor, "note": note}
    store.insert(
        "alert_actions",
        pa.Table.from_pylist([{**said, "at": at}], schema=ALERT_ACTION_SCHEMA),
        f"{dedup_key}|{action}|{at}",
    )
    return {**said, "at": at.isoformat()}


@dataclass(frozen=True, slots=True)
class RuleChange:
    actor: str
    change: str  # the dm.rules message as received
    effective: str  # the rules in force afterwards (JSON), empty when refused
    error: str = ""
    key_id: str = ""  # the key whose signature verified (`ops`), empty when none did


def record_rule_change(store: Store, change: RuleChange) -> None:
    now = datetime.now(UTC)
    row = {
        "changed_at": now,
        "actor": change.actor,
        "change": change.change,
        "effective": change.effective,
        "accepted": int(not change.error),
        "error": change.error,
        "key_id": change.key_id,
    }
    token = f"rules|{now.isoformat()}|{change.change}"
    store.insert("rule_changes", pa.Table.from_pylist([row], schema=RULE_CHANGE_SCHEMA), token)


MARKET_PROGRESS_SCHEMA = pa.schema(
    [
        ("src_topic", pa.string()),
        ("topic_id", pa.string()),
        ("src_partition", pa.int32()),
        ("applied_offset", pa.int64()),
        ("recorded_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def record_market_progress(store: Store, topic: str, topic_id: str, applied: dict[int, int]) -> None:
    """Per partition, the last offset the market stage observed, once its alerts are stored."""
    now = datetime.now(UTC)
    rows = [
        {"src_topic": topic, "topic_id": topic_id, "src_partition": p, "applied_offset": o, "recorded_at": now}
        for p, o in sorted(applied.items())
    ]
    # The log's id counts: the same offsets of a new log are new progress, not a retried write to drop.
    token = f"market|{topic}:{topic_id}|" + ",".join(f"{p}:{o}" for p, o in sorted(applied.items()))
    store.insert("market_progress", pa.Table.from_pylist(rows, schema=MARKET_PROGRESS_SCHEMA), token)
