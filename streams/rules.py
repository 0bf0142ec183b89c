"""Surveillance rules that change at runtime, through the dm.rules topic, without a restart.

A message is a JSON object: `{"set": {"price_outlier_ratio": "4"}, "actor": "ops-li"}` or
`{"reset": true, "actor": "ops-li"}` (back to the DMM_RULES__* settings). It is taken only when
signed with the operators' key (contract, Amendment 1): record headers `dm-key: ops` and `dm-sig`,
the lower-case hex HMAC-SHA256 of the value bytes under DMM_OPS_KEY (hex). Anyone who can write
to the topic could otherwise switch a rule off (`exchange_silent_s = 31536000`: no exchange is
ever silent). Every change, accepted or refused, is recorded in `rule_changes`; on start the
accepted ones are replayed on top of the configured rules, so a restart keeps what ops decided.

`dmm rules` signs with DMM_OPS_KEY; on the embedded stack, where it is usually unset, `dmm up`
generates one into its work directory (`provision_ops_key`) and `dmm rules` reads it from there.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from models.keys import KEY_HEADER, MIN_SECRET_BYTES, SIGNATURE_HEADER, signature
from settings import RuleSettings, Settings
from sinks.clickhouse.records import RuleChange
from sinks.clickhouse.state import StateReader

OPS_KEY_ID = "ops"
OPS_KEY_FILE = "ops.key"  # in `dmm up`'s work directory, when DMM_OPS_KEY is unset
RecordHeaders = Mapping[str, bytes | None] | Sequence[tuple[str, bytes | None]]


class RuleChangeError(ValueError):
    """A dm.rules message that cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class OpsKey:
    """The operators' key that signs rule changes, or why there is none to verify with."""

    secret: bytes | None = field(repr=False)
    problem: str = ""

    @classmethod
    def configured(cls, value: SecretStr | None) -> OpsKey:
        """DMM_OPS_KEY as a key; unset, not hex or too short: none, and every change is refused saying so."""
        if value is None or not value.get_secret_value().strip():
            return cls(None, f"no operators' key is configured (DMM_OPS_KEY): every rule change is refused; {_SET_KEY}")
        try:
            secret = bytes.fromhex(value.get_secret_value().strip())
        except ValueError:
            return cls(None, f"DMM_OPS_KEY is not hex: every rule change is refused; {_SET_KEY}")
        if len(secret) < MIN_SECRET_BYTES:
            return cls(None, f"DMM_OPS_KEY is {len(secret)} bytes, under {MIN_SECRET_BYTES}: every rule change is "
                       f"refused; {_SET_KEY}")
        return cls(secret)

    def sign(self, value: bytes) -> list[tuple[str, bytes]]:
        """The record headers that sign a dm.rules message value with this key."""
        if self.secret is None:
            raise RuleChangeError(self.problem)
        return [(KEY_HEADER, OPS_KEY_ID.encode()), (SIGNATURE_HEADER, signature(self.secret, value))]

    def verify(self, value: bytes | None, headers: RecordHeaders) -> str:
        """The key id of a change signed with this key; else raise RuleChangeError saying why it is refused."""
        if self.secret is None:
            raise RuleChangeError(self.problem)
        named = dict(headers)  # a header given twice: the last one counts, as Kafka's `lastHeader`
        key_id, signed = named.get(KEY_HEADER), named.get(SIGNATURE_HEADER)
        if key_id is None or signed is None:
            raise RuleChangeError(
                f"unsigned: a rule change needs the headers {KEY_HEADER}: {OPS_KEY_ID} and {SIGNATURE_HEADER} "
                "(HMAC-SHA256 of the message under DMM_OPS_KEY); send it with `dmm rules`"
            )
        if key_id != OPS_KEY_ID.encode():
            shown = key_id[:64].decode("utf-8", errors="replace")
            raise RuleChangeError(
                f"signed with key {shown!r}: only the operators' key ({KEY_HEADER}: {OPS_KEY_ID}) may change rules"
            )
        if not hmac.compare_digest(signed, signature(self.secret, value or b"")):
            raise RuleChangeError(
                f"the signature ({SIGNATURE_HEADER}) does not verify under DMM_OPS_KEY: sign the message bytes as "
                "sent, with the workers' DMM_OPS_KEY (`dmm rules` does)"
            )
        return OPS_KEY_ID


_SET_KEY = "set DMM_OPS_KEY on the workers and on `dmm rules` to one hex secret (e.g. `openssl rand -hex 32`)"


def provision_ops_key(settings: Settings, workdir: Path) -> Settings:
    """The embedded stack's settings with an operators' key: DMM_OPS_KEY if set, else the one in the work
    directory, generated there (readable by its owner only) on first use; the worker is started with it."""
    if settings.ops_key is not None:
        return settings
    path = workdir / OPS_KEY_FILE
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another `dmm up` wrote it meanwhile: use that one
            pass
        else:
            with os.fdopen(descriptor, "w") as key_file:
                key_file.write(secrets.token_hex(MIN_SECRET_BYTES) + "\n")
    return settings.model_copy(update={"ops_key": SecretStr(path.read_text(encoding="utf-8").strip())})


def signing_key(settings: Settings, workdir: Path) -> OpsKey:
    """The key `dmm rules` signs with: DMM_OPS_KEY, else the embedded stack's (`provision_ops_key`); raises
    RuleChangeError saying where to get one when there is neither."""
    if settings.ops_key is None:
        path = workdir / OPS_KEY_FILE
        if not path.is_file():
            raise RuleChangeError(
                f"no operators' key: set DMM_OPS_KEY to the workers' key, or start the embedded stack with `dmm up` "
                f"(it generates one into {path})"
            )
        settings = settings.model_copy(update={"ops_key": SecretStr(path.read_text(encoding="utf-8").strip())})
    key = OpsKey.configured(settings.ops_key)
    if key.secret is None:
        raise RuleChangeError(key.problem)
    return key


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


def rule_change_record(raw: bytes | None, rules: RuleSettings | None, error: str = "", key_id: str = "") -> RuleChange:
    """What `rule_changes` keeps of one dm.rules message: who, what, the rules in force after it, and the key
    that signed it (verified)."""
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        actor = str(json.loads(text).get("actor", ""))
    except (ValueError, AttributeError):
        actor = ""
    return RuleChange(actor, text, rules.model_dump_json() if rules is not None else "", error, key_id)


def restore_rules(state: StateReader, configured: RuleSettings) -> RuleSettings:
    """Configured rules with every accepted (signed) runtime change replayed in order."""
    rules = configured
    for change in state.accepted_rule_changes():
        rules = apply_change(configured, rules, change)
    return rules
