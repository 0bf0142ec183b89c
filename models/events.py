"""The four event types of contract dm.v1, as one discriminated union on `type`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, field_validator, model_validator
from pydantic_core import PydanticCustomError

from models.digest import md5
from models.fields import Amount, Count, ExchangeCode, Identifier, Price, Quantity, Timestamp
from models.registry import sectors

SCHEMA = "dm.v1"

Category = Literal["dataset", "api", "report", "model", "compute", "service"]
Source = Literal["public", "enterprise", "personal"]
Pricing = Literal["free", "conditional_free", "paid"]
Unit = Literal["license", "call_pack", "gb", "record_pack", "month"]
Venue = Literal["on_exchange", "off_exchange_registered"]
Purpose = Literal["public_governance", "commercial", "research"]


class _EventTime:
    """`event.at_ms` and `event.at_us`: event time since the epoch, computed on first read of either and kept in
    the instance's `__dict__` (every rule reads the ms; the store's column takes the µs, exact, from ints)."""

    def __init__(self, unit: Literal["at_ms", "at_us"]) -> None:
        self.unit = unit

    def __get__(self, event: _Event | None, owner: type) -> int:
        if event is None:
            raise AttributeError(self.unit)
        found = event.__dict__
        found["at_us"] = us = occurred_us(event.occurred_at)
        found["at_ms"] = ms = us // 1000
        return us if self.unit == "at_us" else ms


class _ContentDigest:
    """`event.content_digest`: what the event says once parsed, as 64 bits (`content_digest`), computed on first
    read and kept in the instance's `__dict__` (the dedup index and the store's column both read it)."""

    def __get__(self, event: _Event | None, owner: type) -> int:
        if event is None:
            raise AttributeError("content_digest")
        digest = event.__dict__["content_digest"] = content_digest(content_text(event))
        return digest


class _Event(BaseModel):
    """Fields every event has. Unknown fields are ignored (forward compatibility)."""

    model_config = ConfigDict(extra="ignore", frozen=True, ignored_types=(_EventTime, _ContentDigest))

    schema_: Literal["dm.v1"] = Field(alias="schema")
    event_id: Identifier
    exchange_id: ExchangeCode
    occurred_at: Timestamp

    at_ms: ClassVar[_EventTime] = _EventTime("at_ms")
    at_us: ClassVar[_EventTime] = _EventTime("at_us")
    content_digest: ClassVar[_ContentDigest] = _ContentDigest()

    @classmethod
    def rebuilt(cls, fields: dict[str, Any], at_ms: int) -> Self:
        """An event as the store holds it, from the fields given (it was validated on arrival): the object
        `model_construct` makes, without its Python loop over the fields (about 5 µs an event, paid for
        every event the market stage reads back). `at_ms` is its event time, known exactly from the store."""
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", {**fields, "at_ms": at_ms})
        object.__setattr__(event, "__pydantic_fields_set__", set(fields))
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event

    @property
    def key(self) -> tuple[str, str]:
        """`(exchange_id, event_id)`: what identifies an event."""
        return (self.exchange_id, self.event_id)


class Listing(_Event):
    type: Literal["listing"]
    action: Literal["list", "delist", "reprice"]
    product_id: Identifier
    seller_id: Identifier | None = None
    title: Annotated[str, Field(strict=True)] | None = None
    category: Category | None = None
    source: Source | None = None
    sector: str | None = Field(None, json_schema_extra={"enum": [*sorted(sectors())]})
    pricing: Pricing | None = None
    list_price: Price | None = None
    unit: Unit | None = None
    high_quality: StrictBool = False
    size_bytes: Count | None = None
    recognized_by: list[ExchangeCode] = Field(default_factory=list)

    @field_validator("sector")
    @classmethod
    def _sector_known(cls, value: str | None) -> str | None:
        if value is not None and value not in sectors():
            raise PydanticCustomError("unknown_sector", "'{code}' is not in sectors.csv", {"code": value})
        return value

    @model_validator(mode="after")
    def _required_by_action(self) -> Listing:
        required = {
            "list": ("seller_id", "title", "category", "source", "sector", "pricing", "list_price", "unit"),
            "reprice": ("list_price",),
            "delist": (),
        }[self.action]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise PydanticCustomError(
                "required_by_action",
                "{fields} required when action is '{action}'",
                {"fields": ", ".join(missing), "action": self.action},
            )
        return self


class Trade(_Event):
    type: Literal["trade"]
    trade_id: Identifier
    product_id: Identifier
    buyer_id: Identifier
    seller_id: Identifier
    price: Price
    quantity: Quantity
    amount: Amount
    currency: Literal["CNY"]
    venue: Venue
    purpose: Purpose
    data_bytes: Count | None = None

    @model_validator(mode="after")
    def _amount_is_price_times_quantity(self) -> Trade:
        if self.amount != self.price * self.quantity:
            raise PydanticCustomError(
                "amount_mismatch",
                "amount {amount} is not price {price} x quantity {quantity} = {expected}",
                {
                    "amount": str(self.amount),
                    "price": str(self.price),
                    "quantity": self.quantity,
                    "expected": str(self.price * self.quantity),
                },
            )
        return self


class Usage(_Event):
    type: Literal["usage"]
    product_id: Identifier
    buyer_id: Identifier
    calls: Count
    bytes: Count


class Heartbeat(_Event):
    type: Literal["heartbeat"]
    seq: Count


Event = Annotated[Listing | Trade | Usage | Heartbeat, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Listing | Trade | Usage | Heartbeat] = TypeAdapter(Event)
AnyEvent = Listing | Trade | Usage | Heartbeat


class Sighting(NamedTuple):
    """An event other than a trade known only by who sent it, its id and its time: all that the market-wide
    rules read of one (the market stage reads back no more; see `Surveillance.sight`)."""

    kind: type[Listing | Usage | Heartbeat]
    exchange_id: str
    event_id: str
    at_ms: int


# What an event says, once parsed (contract, Amendment 1: a resend with its identity is a duplicate only if it
# says the same; otherwise `conflicting_duplicate`). The text is its event time in µs since the epoch, then every
# field but the identity and the schema in declaration order (`type` first), joined by US (0x1F), which no field
# holds: identifiers hold no control character, the free text is JSON-quoted, the others are codes and numbers.
# Values as parsed: the same instant at any offset, 1.5 and 1.50, key order and white space say the same. Usage
# read as columns builds the same text (`streams.columnar`): `at_us␟usage␟product_id␟buyer_id␟calls␟bytes`.
CONTENT_SEPARATOR = "\x1f"
_FREE_TEXT = frozenset({"title"})
_IDENTITY = frozenset({"schema_", "event_id", "exchange_id", "occurred_at"})


def content_text(event: _Event) -> str:
    """The canonical text of what the event says (see `CONTENT_SEPARATOR`)."""
    fields = event.__dict__  # the values as parsed (and, once read, `at_ms`, `at_us`, `content_digest`)
    parts = [str(event.at_us)]
    for name, free_text in _content_fields(type(event)):
        value = fields[name]
        if free_text and value is not None:
            parts.append(json.dumps(value, ensure_ascii=False))
        else:
            parts.append(_TEXT.get(type(value), _no_text)(value))
    return CONTENT_SEPARATOR.join(parts)


def content_digest(text: str | bytes) -> int:
    """64 bits of MD5 of a content text, never 0 (0 stands for "not known": rows stored before the digest)."""
    data = text.encode() if isinstance(text, str) else text
    return int.from_bytes(md5(data, usedforsecurity=False).digest()[:8], "big") or 1


@cache
def _content_fields(kind: type[_Event]) -> tuple[tuple[str, bool], ...]:
    """Per event type, the fields its content text holds, in order, each with whether it is free text."""
    return tuple((name, name in _FREE_TEXT) for name in kind.model_fields if name not in _IDENTITY)


# A value's text by its type, as parsed (a dict lookup: this runs for every field of every event).
_TEXT: dict[type, Callable[[Any], str]] = {
    str: str,  # identifiers (no control character), codes, literals
    int: str,
    bool: lambda value: "1" if value else "0",
    Decimal: lambda value: format(value.normalize(), "f"),  # 1.5 and 1.50 say the same
    list: ",".join,  # exchange codes
    type(None): lambda value: "",
}


def _no_text(value: object) -> str:
    raise TypeError(f"no canonical text for a {type(value).__name__}: add one to models.events._TEXT")


def partition_key(event: AnyEvent) -> str:
    """The Kafka key the contract prescribes: product for listing/trade/usage, exchange for heartbeat."""
    return event.exchange_id if isinstance(event, Heartbeat) else event.product_id


def occurred_us(moment: datetime) -> int:
    """Microseconds since the epoch, exact (integer arithmetic on the aware datetime; from the difference's
    parts: a fifth faster than dividing it by a timedelta, and it runs for every event)."""
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def occurred_ms(moment: datetime) -> int:
    """Milliseconds since the epoch: the unit of event time inside the worker."""
    return occurred_us(moment) // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


__all__ = [
    "CONTENT_SEPARATOR",
    "EVENT_ADAPTER",
    "SCHEMA",
    "AnyEvent",
    "Event",
    "Heartbeat",
    "Listing",
    "Sighting",
    "Trade",
    "Usage",
    "content_digest",
    "content_text",
    "occurred_ms",
    "occurred_us",
    "partition_key",
]
