"""What the exchanges put on the wire: dm.v1 JSON messages with their ids, keys and timestamps.

The tape is the single place events are written, so event-id uniqueness, the contract's
keys and an exchange's silence (it sends nothing at all) hold for clean and injected
traffic alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Final, NamedTuple

from models.clock import CHINA_STANDARD_TIME as CST  # exchanges stamp Beijing time
from models.clock import from_ms

SCHEMA: Final = "dm.v1"
_TYPE_LETTER: Final[dict[str, str]] = {"listing": "L", "trade": "T", "usage": "U"}

ResumeHook = Callable[[str, int], None]


class Message(NamedTuple):
    """One `dm.events` message and the event time it carries."""

    key: bytes
    value: bytes
    occurred_ms: int


def rfc3339(ms: int) -> str:
    """Event time as an exchange writes it: Beijing time with milliseconds and offset."""
    return from_ms(ms).astimezone(CST).isoformat(timespec="milliseconds")


def _day(ms: int) -> str:
    return from_ms(ms).astimezone(CST).strftime("%Y%m%d")


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    raise TypeError(f"cannot encode {type(value).__name__}")


class Tape:
    """Numbers, encodes and buffers the events of all exchanges, in the order they happen."""

    def __init__(self) -> None:
        self._serials: dict[tuple[str, str], int] = {}
        self._seqs: dict[str, int] = {}
        self._buffer: list[Message] = []
        self._silent: dict[str, tuple[int, int]] = {}
        self._on_resume: dict[str, ResumeHook] = {}
        self.last_event: dict[str, tuple[str, int]] = {}

    def emit(self, type_: str, exchange_id: str, ms: int, fields: dict[str, Any]) -> str:
        """Write one listing/trade/usage event; returns its event_id."""
        serial = self._serials.get((exchange_id, type_), 0) + 1
        self._serials[(exchange_id, type_)] = serial
        day = _day(ms)
        event_id = f"{exchange_id}-{_TYPE_LETTER[type_]}-{day}-{serial:06d}"
        if type_ == "trade":
            fields = {"trade_id": f"T{day}{serial:06d}", **fields}
        self._write(type_, event_id, exchange_id, ms, fields["product_id"], fields)
        return event_id

    def heartbeat(self, exchange_id: str, ms: int) -> str:
        """Write the exchange's next heartbeat; seq grows by one per heartbeat actually sent."""
        seq = self._seqs.get(exchange_id, -1) + 1
        self._seqs[exchange_id] = seq
        event_id = f"{exchange_id}-H-{seq:06d}"
        self._write("heartbeat", event_id, exchange_id, ms, exchange_id, {"seq": seq})
        return event_id

    def silence(self, exchange_id: str, start_ms: int, end_ms: int, on_resume: ResumeHook) -> None:
        """Make the exchange send nothing in [start_ms, end_ms); `on_resume` sees its next event."""
        self._silent[exchange_id] = (start_ms, end_ms)
        self._on_resume[exchange_id] = on_resume

    def is_silent(self, exchange_id: str, ms: int) -> bool:
        window = self._silent.get(exchange_id)
        return window is not None and window[0] <= ms < window[1]

    def drain(self) -> Iterator[Message]:
        """Hand over the buffered messages (oldest first) and forget them."""
        buffered, self._buffer = self._buffer, []
        return iter(buffered)

    def _write(self, type_: str, event_id: str, exchange_id: str, ms: int, key: str, fields: dict[str, Any]) -> None:
        if self.is_silent(exchange_id, ms):
            raise RuntimeError(f"{exchange_id} is silent at {rfc3339(ms)}; nothing may be sent")
        event = {
            "schema": SCHEMA,
            "type": type_,
            "event_id": event_id,
            "exchange_id": exchange_id,
            "occurred_at": rfc3339(ms),
            **fields,
        }
        value = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=_json_default)
        self._buffer.append(Message(key.encode(), value.encode(), ms))
        self.last_event[exchange_id] = (event_id, ms)
        hook = self._on_resume.pop(exchange_id, None)
        if hook is not None:
            hook(event_id, ms)
