"""The alert the monitor publishes (`dm.alert.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from models.clock import rfc3339

ALERT_SCHEMA: Final = "dm.alert.v1"

AlertKind = Literal[
    "self_dealing",
    "wash_trading",
    "unlisted_product",
    "pricing_policy_violation",
    "price_outlier",
    "cross_exchange_price_gap",
    "volume_spike",
    "exchange_silent",
]
Severity = Literal["info", "warning", "critical"]

SEVERITY: dict[str, Severity] = {
    "self_dealing": "critical",
    "wash_trading": "critical",
    "unlisted_product": "warning",
    "pricing_policy_violation": "warning",
    "price_outlier": "warning",
    "cross_exchange_price_gap": "info",
    "volume_spike": "warning",
    "exchange_silent": "critical",
}


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_: Literal["dm.alert.v1"] = Field(ALERT_SCHEMA, alias="schema")
    alert_id: str
    kind: AlertKind
    severity: Severity
    exchange_id: str
    product_id: str | None = None
    parties: list[str] = Field(default_factory=list)
    event_ids: list[str] = Field(default_factory=list)
    score: float
    window_start: datetime | None = None
    window_end: datetime | None = None
    detected_at: datetime
    dedup_key: str
    message: str
    message_zh: str

    @field_serializer("window_start", "window_end", "detected_at")
    def _rfc3339(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return rfc3339(moment)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
