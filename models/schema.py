"""JSON Schema of the contract, generated from the models (published under deploy/)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from models.alert import Alert
from models.events import Event


def contract_schema() -> dict[str, Any]:
    """One document: `$defs` for every event type and the alert, `oneOf` over the events."""
    events = TypeAdapter(Event).json_schema(by_alias=True, mode="validation")
    alert = Alert.model_json_schema(by_alias=True, mode="serialization")
    defs = {**events.pop("$defs", {}), "Alert": {k: v for k, v in alert.items() if k != "$defs"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://datamarket.example/contract/dm.v1.schema.json",
        "title": "Data-market events, contract dm.v1",
        **events,
        "$defs": defs,
    }


def contract_schema_json() -> str:
    return json.dumps(contract_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
