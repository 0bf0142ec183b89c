"""Pydantic models of the data-market wire contract (dm.v1) and its registries."""

from models.alert import ALERT_SCHEMA, SEVERITY, Alert, AlertKind, Severity
from models.dims import Dims
from models.events import (
    CONTENT_SEPARATOR,
    EVENT_ADAPTER,
    SCHEMA,
    AnyEvent,
    Event,
    Heartbeat,
    Listing,
    Sighting,
    Trade,
    Usage,
    content_digest,
    content_text,
    occurred_ms,
    occurred_us,
    partition_key,
)
from models.registry import Exchange, Sector, exchanges, sectors

__all__ = [
    "ALERT_SCHEMA",
    "CONTENT_SEPARATOR",
    "EVENT_ADAPTER",
    "SCHEMA",
    "SEVERITY",
    "Alert",
    "AlertKind",
    "AnyEvent",
    "Dims",
    "Event",
    "Exchange",
    "Heartbeat",
    "Listing",
    "Sector",
    "Severity",
    "Sighting",
    "Trade",
    "Usage",
    "content_digest",
    "content_text",
    "exchanges",
    "occurred_ms",
    "occurred_us",
    "partition_key",
    "sectors",
]
