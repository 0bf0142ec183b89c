"""Surveillance rules that change at runtime, through the dm.rules topic, without a restart.

A message is a JSON object: `{"set": {"price_outlier_ratio": "4"}, "actor": "ops-li"}` or
`{"reset": true, "actor": "ops-li"}` (back to the DMM_RULES__* settings). Every change,
accepted or refused, is recorded in `rule_changes`; on start the accepted ones are replayed
on top of the configured rules, so a restart keeps what ops decided.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from settings import RuleSettings
from sinks.clickhouse import Store

CHANGE_SCHEMA = pa.schema(
    [
        ("changed_at", pa.timestamp("ms", tz="UTC")),
        ("actor", pa.string()),
        ("change", pa.string()),
        ("effective", pa.string()),
        ("accepted", pa.uint8()),
        ("error", pa.string()),
    ]
)


class RuleChangeError(ValueError):
    """A dm.rules message that cannot be applied; the message says why."""


def apply_change(configured: RuleSettings, current: RuleSettings, change: dict[str, Any]) -> RuleSettings:
    """The rules after one change message (validated like the settings themselves)."""
    if change.get("reset"):
        return configured
    updates = change.get("set")
    if not isinstance(updates, dict) or not updates:
        raise RuleChangeError('expected {"set": {rule: value, ...}} or {"reset": true}')
    unknown = sorted(set(updates) - set(RuleSettings.model_fields))
    if unknown:
        raise RuleChangeError(f"unknown rule(s): {', '.join(unknown)}; known: {', '.join(RuleSettings.model_fields)}")
    try:
        return RuleSettings.model_validate({**current.model_dump(), **updates})
    except ValidationError as exc:
        raise RuleChangeError(str(exc)) from exc


def parse_change(raw: bytes | None) -> dict[str, Any]:
    try:
        change = json.loads(raw or b"")
    except ValueError as exc:
        raise RuleChangeError(f"not JSON: {exc}") from exc
    if not isinstance(change, dict):
        raise RuleChangeError("a dm.rules message must be a JSON object")
    return change


def record_change(store: Store, raw: bytes | None, rules: RuleSettings | None, error: str = "") -> None:
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        actor = str(json.loads(text).get("actor", ""))
    except (ValueError, AttributeError):
        actor = ""
    now = datetime.now(UTC)
    row = {
        "changed_at": now,
        "actor": actor,
        "change": text,
        "effective": rules.model_dump_json() if rules is not None else "",
        "accepted": int(rules is not None),
        "error": error,
    }
    store.insert("rule_changes", pa.Table.from_pylist([row], schema=CHANGE_SCHEMA), f"rules|{now.isoformat()}|{text}")


def restore_rules(store: Store, configured: RuleSettings) -> RuleSettings:
    """Configured rules with every accepted runtime change replayed in order."""
    rules = configured
    for row in store.rows(f"SELECT change FROM {store.database}.rule_changes WHERE accepted ORDER BY changed_at"):
        rules = apply_change(configured, rules, json.loads(row["change"]))
    return rules
