"""Surveillance rules that change at runtime, through the dm.rules topic, without a restart.

A message is a JSON object: `{"set": {"price_outlier_ratio": "4"}, "actor": "ops-li"}` or
`{"reset": true, "actor": "ops-li"}` (back to the DMM_RULES__* settings). Every change,
accepted or refused, is recorded in `rule_changes`; on start the accepted ones are replayed
on top of the configured rules, so a restart keeps what ops decided.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from settings import RuleSettings
from sinks.clickhouse.records import RuleChange
from sinks.clickhouse.state import StateReader


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


def rule_change_record(raw: bytes | None, rules: RuleSettings | None, error: str = "") -> RuleChange:
    """What `rule_changes` keeps of one dm.rules message: who, what, and the rules in force after it."""
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        actor = str(json.loads(text).get("actor", ""))
    except (ValueError, AttributeError):
        actor = ""
    return RuleChange(actor, text, rules.model_dump_json() if rules is not None else "", error)


def restore_rules(state: StateReader, configured: RuleSettings) -> RuleSettings:
    """Configured rules with every accepted runtime change replayed in order."""
    rules = configured
    for change in state.accepted_rule_changes():
        rules = apply_change(configured, rules, change)
    return rules
