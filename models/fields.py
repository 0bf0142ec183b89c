"""Field types of the contract: strict on the wire, convenient in Python.

Money is a decimal *string* on the wire (never a JSON number: floats lose fen)
and `Decimal` in Python. Timestamps are RFC 3339 strings with an explicit
offset and become timezone-aware datetimes. Integers are JSON integers only
(no "2", no 2.0, no true).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictInt, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from models.registry import exchanges

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
# Bounds of this project (the contract sets none): a price below 10^18 CNY and an amount
# below 10^20 CNY keep any realistic sum inside ClickHouse Decimal(38, 2), whose sum()
# would otherwise wrap around silently.
PRICE = re.compile(r"^\d{1,18}(\.\d{1,2})?$")
AMOUNT = re.compile(r"^-?\d{1,20}(\.\d{1,18})?$")
INT64_MAX = 2**63 - 1
# No control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) in an identifier: ids end up in
# terminals, logs and the console, where an ESC sequence ("\x1b[2J") would act instead of being shown. For
# pydantic's Rust engine and JSON Schema, where `$` is the very end (Python's `re` also lets a final "\n" pass).
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not RFC3339.match(value):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 timestamp with an explicit offset, e.g. 2026-11-21T10:00:00+08:00"
        )
    try:  # The pattern fixed the shape; Python (3.11+) parses it, a fraction beyond 6 digits truncated.
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise PydanticCustomError("rfc3339", "not a valid date or time: {error}", {"error": str(exc)}) from exc


def _decimal(pattern: re.Pattern[str], rule: str) -> Callable[[Any], Decimal]:
    def parse(value: Any) -> Decimal:
        if not isinstance(value, str) or not pattern.match(value):
            raise PydanticCustomError("decimal_string", "must be a decimal string, {rule}", {"rule": rule})
        return Decimal(value)

    return parse


def _known_exchange(value: Any) -> Any:
    if isinstance(value, str) and value not in exchanges():
        raise PydanticCustomError("unknown_exchange", "'{code}' is not in exchanges.csv", {"code": value})
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339.pattern}),
]
Price = Annotated[
    Decimal,
    BeforeValidator(_decimal(PRICE, ">= 0 with at most 2 decimals, e.g. \"12000.00\"")),
    WithJsonSchema({"type": "string", "pattern": PRICE.pattern}),
]
Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal(AMOUNT, "e.g. \"24000.00\"")),
    WithJsonSchema({"type": "string", "pattern": AMOUNT.pattern}),
]
Identifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=NO_CONTROL)]
Count = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
ExchangeCode = Annotated[
    str,
    StringConstraints(strict=True),
    BeforeValidator(_known_exchange),
    WithJsonSchema({"type": "string", "enum": sorted(exchanges())}),
]
