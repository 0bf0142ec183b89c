"""Raw Kafka value -> a valid event, or a rejection with the contract's reason.

The fast path is one pydantic-core `validate_json` per message (parse and
validate in Rust, no intermediate dicts). Only a message that fails takes the
slow path, which works out *why* so the rejection names the right reason:
`malformed` > `unsupported_schema` > `invalid` > `unknown_exchange` >
`amount_mismatch` (the first that applies wins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from models import EVENT_ADAPTER, SCHEMA, AnyEvent, occurred_ms
from models.fields import Timestamp

Reason = Literal[
    "malformed",
    "unsupported_schema",
    "unknown_exchange",
    "unauthenticated",
    "invalid",
    "amount_mismatch",
    "future_event",
    "conflicting_duplicate",
]
# The contract's reasons (dm.v1 and its Amendment 1), in the order the checks run.
REASONS: tuple[Reason, ...] = (
    "malformed",
    "unsupported_schema",
    "unknown_exchange",
    "unauthenticated",
    "invalid",
    "amount_mismatch",
    "future_event",
    "conflicting_duplicate",
)
DETAIL_MAX = 2000
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    exchange_id: str = ""
    event_id: str = ""


def decode(raw: bytes | None) -> AnyEvent | Rejection:
    """Validate one message value; never raises."""
    if raw is None:
        return Rejection("malformed", "empty message (no value): send one UTF-8 JSON object per message")
    try:
        event = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _explain(raw, exc)
    except RecursionError:
        return Rejection("malformed", "JSON nested too deeply")
    if not EARLIEST_MS <= event.at_ms <= LATEST_MS:  # ints: comparing datetimes across offsets is slower
        return Rejection("invalid", _OUT_OF_RANGE, event.exchange_id, event.event_id)
    return event


def _explain(raw: bytes, exc: ValidationError) -> Rejection:
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        return Rejection("malformed", f"not UTF-8: {err.reason} at byte {err.start}")
    except (ValueError, RecursionError) as err:
        return Rejection("malformed", f"not JSON: {str(err)[:200]}")
    if not isinstance(document, dict):
        return Rejection("malformed", f"a JSON {type(document).__name__} where an object is expected")
    unreadable = [e for e in exc.errors(include_url=False, include_input=False) if e["type"] == "json_invalid"]
    if unreadable:  # e.g. a lone surrogate escape ("\ud800"): Python reads it, but it is no UTF-8 text
        return Rejection("malformed", f"not JSON: {unreadable[0]['msg'][:200]}")
    exchange_id = _text(document.get("exchange_id"))
    event_id = _text(document.get("event_id"))
    schema = document.get("schema")
    if schema != SCHEMA:
        return Rejection(
            "unsupported_schema",
            f"schema is {json.dumps(schema, ensure_ascii=False)[:80]}; this monitor accepts only {SCHEMA!r}",
            exchange_id,
            event_id,
        )
    errors = exc.errors(include_url=False, include_input=False)
    if _out_of_range(document.get("occurred_at")):
        errors.append({"type": "out_of_range", "loc": ("event", "occurred_at"), "msg": _OUT_OF_RANGE_MSG})
    unknown_exchange = [e for e in errors if e["type"] == "unknown_exchange" and e["loc"][1:] == ("exchange_id",)]
    amount = [e for e in errors if e["type"] == "amount_mismatch"]
    invalid = [e for e in errors if e not in unknown_exchange and e not in amount]
    if invalid:
        return Rejection("invalid", _describe(invalid), exchange_id, event_id)
    if unknown_exchange:
        return Rejection("unknown_exchange", unknown_exchange[0]["msg"], exchange_id, event_id)
    return Rejection("amount_mismatch", amount[0]["msg"] if amount else _describe(errors), exchange_id, event_id)


# The store's minute windows are DateTime (1970..2106); an instant outside them cannot be
# aggregated, and one outside Python's datetime range in UTC cannot even be written (a batch
# holding it would fail on every retry and stop the worker).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2105, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
EARLIEST_MS, LATEST_MS = occurred_ms(_EARLIEST), occurred_ms(_LATEST)
_OUT_OF_RANGE_MSG = "must lie between 1970-01-01T00:00:00Z and 2105-12-31T23:59:59Z"
_OUT_OF_RANGE = f"occurred_at: {_OUT_OF_RANGE_MSG}"


def _out_of_range(value: Any) -> bool:
    """Whether a value the timestamp rule accepts is an instant outside the supported range."""
    try:
        moment = _TIMESTAMP.validate_python(value)
    except ValidationError:
        return False  # not a timestamp at all: the model already reports it
    return not _EARLIEST <= moment <= _LATEST


def _describe(errors: list[Any]) -> str:
    """`field: message; field: message` naming each failing field (without the union tag)."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error["loc"][1:]] or [str(part) for part in error["loc"]]
        where = ".".join(loc) if loc else "event"
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where = "type"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:DETAIL_MAX]


def _text(value: Any) -> str:
    return value[:64] if isinstance(value, str) else ""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


__all__ = ["REASONS", "Reason", "Rejection", "decode"]
