"""JSON Schema of the contract, generated from the models (published as deploy/contract.schema.json).

The models give the types and rules; this module adds what a reader of the schema needs beside them: a
description of every event type and field, in the contract's words, and an example of each, taken from the
contract's example events (the same as docs/examples/*.json, which a test checks). Descriptions live here,
not on the models, because one field name means one thing across the event types (`event_id`,
`product_id`, `seller_id`, ...): one sentence each, qualified by type only where the meaning differs. A
description or example given on a model's own field wins over these.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import TypeAdapter

from models.alert import Alert
from models.events import Event

SCHEMA_ID = "https://datamarket.example/contract/dm.v1.schema.json"

# The contract's example events and alert (docs/examples/<type>.json), one per definition.
EXAMPLES: dict[str, dict[str, Any]] = {
    "Listing": {
        "schema": "dm.v1",
        "type": "listing",
        "event_id": "SHDEX-L-20261121-000001",
        "exchange_id": "SHDEX",
        "occurred_at": "2026-11-21T09:30:00.000+08:00",
        "action": "list",
        "product_id": "DP310000-2026-000123",
        "seller_id": "91310000MA1FL0XX0K",
        "title": "长三角港口集装箱吞吐量日度数据集",
        "category": "dataset",
        "source": "enterprise",
        "sector": "transportation",
        "pricing": "paid",
        "list_price": "12000.00",
        "unit": "license",
        "high_quality": True,
        "size_bytes": 73400320000,
        "recognized_by": ["BJIDEX", "SZDEX"],
    },
    "Trade": {
        "schema": "dm.v1",
        "type": "trade",
        "event_id": "SHDEX-T-20261121-004211",
        "exchange_id": "SHDEX",
        "occurred_at": "2026-11-21T10:02:13.481+08:00",
        "trade_id": "T20261121004211",
        "product_id": "DP310000-2026-000123",
        "buyer_id": "91440300MA5FXXXX3Q",
        "seller_id": "91310000MA1FL0XX0K",
        "price": "12000.00",
        "quantity": 2,
        "amount": "24000.00",
        "currency": "CNY",
        "venue": "on_exchange",
        "purpose": "commercial",
        "data_bytes": 146800640000,
    },
    "Usage": {
        "schema": "dm.v1",
        "type": "usage",
        "event_id": "SHDEX-U-20261121-918273",
        "exchange_id": "SHDEX",
        "occurred_at": "2026-11-21T10:05:00.000+08:00",
        "product_id": "DP310000-2026-000123",
        "buyer_id": "91440300MA5FXXXX3Q",
        "calls": 240,
        "bytes": 52428800,
    },
    "Heartbeat": {
        "schema": "dm.v1",
        "type": "heartbeat",
        "event_id": "SHDEX-H-000042",
        "exchange_id": "SHDEX",
        "occurred_at": "2026-11-21T10:05:10.000+08:00",
        "seq": 42,
    },
    "Alert": {
        "schema": "dm.alert.v1",
        "alert_id": "a-7f3c2e",
        "kind": "self_dealing",
        "severity": "critical",
        "exchange_id": "SHDEX",
        "product_id": "DP310000-2026-000123",
        "parties": ["91310000MA1FL0XX0K"],
        "event_ids": ["SHDEX-T-20261121-004377"],
        "score": 1.0,
        "window_start": "2026-11-21T02:14:02.000Z",
        "window_end": "2026-11-21T02:14:02.000Z",
        "detected_at": "2026-11-21T02:14:02.391Z",
        "dedup_key": "self_dealing:SHDEX:SHDEX-T-20261121-004377",
        "message": "Buyer and seller are the same participant in trade T20261121004377.",
        "message_zh": "成交 T20261121004377 的买方与卖方为同一主体。",
    },
}

TYPES: dict[str, str] = {
    "Listing": "上架 / 下架 / 调价: a product listed on, delisted from or repriced on an exchange. A product is "
    "active on exchange E from a `list` on E until a `delist` on E; `reprice` changes its list price on E. "
    "Kafka key: `product_id`.",
    "Trade": "成交: one purchase of a product on (or registered with) an exchange. Kafka key: `product_id`.",
    "Usage": "计量: calls and bytes delivered under a bought product. Kafka key: `product_id`.",
    "Heartbeat": "An exchange's sign of life while it has nothing else to send, so that a quiet exchange is "
    "not taken for a silent one. Kafka key: `exchange_id`.",
    "Alert": "A surveillance finding the monitor publishes on dm.alerts (Kafka key: `dedup_key`) and keeps in "
    "the table `alerts`.",
}

_IDENTIFIER = "1-64 characters, no control characters (Unicode category Cc)"
_REQUIRED_FOR_LIST = "required when `action` is `list`"

# Field name -> description; "Type.field" where one type means something else by the name.
DESCRIPTIONS: dict[str, str] = {
    "schema": 'The contract version, always "dm.v1"; any other value is rejected as `unsupported_schema`.',
    "type": 'The event type, which selects the fields: "listing", "trade", "usage" or "heartbeat".',
    "event_id": f"The exchange's id of this event, {_IDENTIFIER}. Unique per exchange: `(exchange_id, "
    "event_id)` identifies an event; an exact resend within 24 h is a duplicate (counted once), one with "
    "other content is rejected as `conflicting_duplicate`.",
    "exchange_id": "The sending exchange: a `code` from exchanges.csv, otherwise rejected as `unknown_exchange`. "
    "Where producer keys are configured, the message must be signed with one of this exchange's keys "
    "(headers `dm-key`, `dm-sig`), otherwise it is rejected as `unauthenticated`.",
    "occurred_at": "When it happened at the exchange (event time): an RFC 3339 timestamp with an explicit "
    "offset; one without an offset is invalid. Windows, baselines and detectors use it. More than "
    "DMM_MAX_CLOCK_SKEW_S (default 300 s) ahead of the monitor's clock: rejected as `future_event`.",
    "product_id": f"The product's registration code, {_IDENTIFIER}; the Kafka key of the event. The same "
    "product may be listed on several exchanges.",
    "seller_id": f"The seller's participant code, {_IDENTIFIER}.",
    "Listing.action": '"list" (上架), "delist" (下架) or "reprice" (调价).',
    "Listing.seller_id": f"The seller's participant code, {_IDENTIFIER}; {_REQUIRED_FOR_LIST}.",
    "Listing.title": f"The product's title, may be Chinese; {_REQUIRED_FOR_LIST}.",
    "Listing.category": f'"dataset", "api", "report", "model", "compute" or "service"; {_REQUIRED_FOR_LIST}.',
    "Listing.source": f'"public" (公共数据), "enterprise" (企业数据) or "personal" (个人数据); {_REQUIRED_FOR_LIST}.',
    "Listing.sector": f'A `code` from sectors.csv (the twelve "数据要素×" sectors); {_REQUIRED_FOR_LIST}.',
    "Listing.pricing": f'"free", "conditional_free" (有条件无偿) or "paid" (有偿); {_REQUIRED_FOR_LIST}.',
    "Listing.list_price": "CNY per unit, a decimal string (never a JSON number) >= 0 with at most 2 decimals; "
    "required when `action` is `list` or `reprice`.",
    "Listing.unit": f'"license", "call_pack", "gb", "record_pack" or "month"; {_REQUIRED_FOR_LIST}.',
    "Listing.high_quality": "A registered high-quality dataset (高质量数据集); default false.",
    "Listing.size_bytes": "The product's size in bytes, an integer >= 0; optional.",
    "Listing.recognized_by": "Codes (exchanges.csv) of the exchanges that recognise this listing "
    "(一地上架、全国互认); default empty.",
    "Trade.trade_id": f"The exchange's own trade number, {_IDENTIFIER}.",
    "buyer_id": f"The buyer's participant code (often an 18-character unified social credit code), {_IDENTIFIER}.",
    "Trade.seller_id": f"The seller's participant code (often an 18-character unified social credit code), "
    f"{_IDENTIFIER}.",
    "Trade.price": "Unit price in CNY, a decimal string (never a JSON number) >= 0 with at most 2 decimals.",
    "Trade.quantity": "Units bought, an integer >= 1.",
    "Trade.amount": "The trade's total in CNY, a decimal string; must equal `price` × `quantity` exactly, "
    "otherwise the event is rejected as `amount_mismatch`.",
    "Trade.currency": 'Always "CNY".',
    "Trade.venue": '"on_exchange" (场内) or "off_exchange_registered" (场外登记).',
    "Trade.purpose": '"public_governance" (公共治理、公益事业), "commercial" or "research".',
    "Trade.data_bytes": "Data delivered, in bytes, an integer >= 0; optional.",
    "Usage.product_id": f"The product bought, under which the calls and bytes were delivered, {_IDENTIFIER}; "
    "the Kafka key of the event.",
    "Usage.buyer_id": f"The buyer the delivery is metered for, {_IDENTIFIER}.",
    "Usage.calls": "Calls delivered, an integer >= 0.",
    "Usage.bytes": "Bytes delivered, an integer >= 0.",
    "Heartbeat.seq": "Increases by one per heartbeat of that exchange; an integer >= 0.",
    "Alert.schema": 'The alert record version, always "dm.alert.v1".',
    "Alert.alert_id": "Unique id of this alert.",
    "Alert.kind": "What was found: one of the eight surveillance kinds (docs/contract.md, Alerts).",
    "Alert.severity": '"info", "warning" or "critical"; fixed per kind.',
    "Alert.exchange_id": "The exchange the finding is about.",
    "Alert.product_id": "The product the finding is about, or null (findings about a whole exchange).",
    "Alert.parties": "The participants involved (buyer and seller codes).",
    "Alert.event_ids": "The events that are the evidence (`event_id`s of `exchange_id`).",
    "Alert.score": "How far past its threshold the finding is: >= 1.0 at the threshold.",
    "Alert.window_start": "Start of the event-time span the finding covers (RFC 3339), or null.",
    "Alert.window_end": "End of the event-time span the finding covers (RFC 3339), or null.",
    "Alert.detected_at": "When the monitor found it (processing time, RFC 3339).",
    "Alert.dedup_key": "One incident, one key: an incident is alerted once, across restarts and replays; the "
    "Kafka key on dm.alerts. A resolved incident that recurs with new evidence is `KEY#2`, `#3`, ...",
    "Alert.message": "One sentence in English.",
    "Alert.message_zh": "The same sentence in Chinese.",
}


def describe(definition: str, field: str) -> str | None:
    """The description of one field of one definition (`Trade`, `amount`), or None if there is none."""
    return DESCRIPTIONS.get(f"{definition}.{field}", DESCRIPTIONS.get(field))


def _annotate(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    """A definition with its description and example, and each property's (the model's own ones win)."""
    definition = copy.deepcopy(definition)
    example = EXAMPLES.get(name, {})
    if name in TYPES:
        definition.setdefault("description", TYPES[name])
    if example:
        definition.setdefault("examples", [example])
    for field, spec in definition.get("properties", {}).items():
        text = describe(name, field)
        if text is not None:
            spec.setdefault("description", text)
        if field in example:
            spec.setdefault("examples", [example[field]])
    return definition


def contract_schema() -> dict[str, Any]:
    """One document: `$defs` for every event type and the alert, `oneOf` over the events."""
    events = TypeAdapter(Event).json_schema(by_alias=True, mode="validation")
    alert = Alert.model_json_schema(by_alias=True, mode="serialization")
    defs = {**events.pop("$defs", {}), "Alert": {k: v for k, v in alert.items() if k != "$defs"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Data-market events, contract dm.v1",
        "description": "One message value on dm.events: a UTF-8 JSON object, one of four event types chosen by "
        "`type`. Unknown extra fields are ignored. `$defs/Alert` is the record the monitor publishes on "
        "dm.alerts. The contract's text: docs/contract.md.",
        **events,
        "$defs": {name: _annotate(name, definition) for name, definition in defs.items()},
    }


def contract_schema_json() -> str:
    return json.dumps(contract_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
