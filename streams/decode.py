"""Raw Kafka value -> a valid event, or a rejection with the contract's reason.

The fast path is one pydantic-core `validate_json` per message (parse and
validate in Rust, no intermediate dicts). Only a message that fails takes the
slow path, which works out *why* so the rejection names the right reason:
`malformed` > `unsupported_schema` > `invalid` > `unknown_exchange` >
`amount_mismatch` (the first that applies wins).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from models import EVENT_ADAPTER, SCHEMA, AnyEvent, occurred_ms
from models.clock import from_ms, rfc3339
from models.fields import NO_CONTROL, Timestamp

# The contract's reasons (dm.v1 and Amendment 1) in its order; docs/errors.md says which wins when several apply.
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
REASONS: tuple[Reason, ...] = get_args(Reason)
DETAIL_MAX = 2000
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    exchange_id: str = ""
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class WallClock:
    """The monitor's wall clock, read once per batch, and the latest event time it accepts: an event stamped
    further ahead (a producer's clock set wrong, or a forged stamp) would carry the market's event time with it."""

    now_ms: int
    latest_ms: int  # now + DMM_MAX_CLOCK_SKEW_S

    @classmethod
    def read(cls, max_skew_s: float) -> WallClock:
        now_ms = time.time_ns() // 1_000_000
        return cls(now_ms, now_ms + round(max_skew_s * 1000))

    def rejection(self, event: AnyEvent) -> Rejection:
        """`future_event`, saying by how much and what to do."""
        ahead_s = (event.at_ms - self.now_ms) / 1000
        return Rejection(
            "future_event",
            f"occurred_at {rfc3339(event.occurred_at)} is {_span(ahead_s)} ahead of the monitor's clock "
            f"({rfc3339(from_ms(self.now_ms))}); at most {_span((self.latest_ms - self.now_ms) / 1000)} is accepted "
            "(DMM_MAX_CLOCK_SKEW_S): fix the producer's clock (NTP) and send the event again with the time it "
            "happened",
            event.exchange_id,
            event.event_id,
        )


def decode(raw: bytes | None, clock: WallClock | None = None) -> AnyEvent | Rejection:
    """Validate one message value; never raises. `clock`: an event further ahead of it than it accepts is a
    `future_event` (None: any event time in the supported range, e.g. a file checked offline)."""
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
    if clock is not None and event.at_ms > clock.latest_ms:
        return clock.rejection(event)
    return event


def _span(seconds: float) -> str:
    """A length of time as ops read it: `12.5 s`, `4 min 10 s`, `2 h 5 min`, `26,601 days 3 h`."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s"
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days:,} days {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


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
    occurred_at = document.get("occurred_at")
    if _out_of_range(occurred_at):
        errors.append(
            {"type": "out_of_range", "loc": ("event", "occurred_at"), "msg": _OUT_OF_RANGE_MSG, "input": occurred_at}
        )
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
        message = error["msg"]
        if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NO_CONTROL:
            message = _CONTROL_CHARACTER
        parts.append(f"{where}: {message}")
    return "; ".join(parts)[:DETAIL_MAX]


_CONTROL_CHARACTER = (
    "holds a control character (Unicode category Cc, e.g. ESC, NUL or a line break), which no identifier may: "
    "send the id without it"
)


def _text(value: Any) -> str:
    return value[:64] if isinstance(value, str) else ""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


__all__ = ["REASONS", "Reason", "Rejection", "WallClock", "decode"]
