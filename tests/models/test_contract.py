"""The models are the contract: its examples validate, its registries load, its schema is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import EVENT_ADAPTER, Alert, Heartbeat, Listing, Trade, Usage, exchanges, partition_key, sectors
from models.schema import contract_schema, contract_schema_json

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "docs" / "examples"  # the contract's examples, as the repository publishes them
FIXTURES = ROOT / "tests" / "fixtures"  # copies the other tests read


@pytest.mark.parametrize(
    "name, kind, key",
    [
        ("listing", Listing, "DP310000-2026-000123"),
        ("trade", Trade, "DP310000-2026-000123"),
        ("usage", Usage, "DP310000-2026-000123"),
        ("heartbeat", Heartbeat, "SHDEX"),
    ],
)
def test_every_example_event_validates_and_is_keyed_as_the_contract_says(name: str, kind: type, key: str) -> None:
    event = EVENT_ADAPTER.validate_json((EXAMPLES / f"{name}.json").read_bytes())
    assert isinstance(event, kind)
    assert event.occurred_at.utcoffset() is not None
    assert partition_key(event) == key


def test_the_example_alert_round_trips() -> None:
    text = (EXAMPLES / "alert.json").read_text(encoding="utf-8")
    assert json.loads(Alert.model_validate_json(text).to_json()) == json.loads(text)


def test_the_test_fixtures_are_the_contracts_examples() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        assert path.read_bytes() == (EXAMPLES / path.name).read_bytes(), f"{path.name} differs from docs/examples"


def test_registries_hold_the_contracts_exchanges_and_sectors() -> None:
    assert len(exchanges()) == 24 and exchanges()["SHDEX"].name_zh == "上海数据交易所"
    assert len(sectors()) == 12 and "transportation" in sectors()


def test_unknown_fields_are_ignored() -> None:
    event = json.loads((EXAMPLES / "trade.json").read_text(encoding="utf-8"))
    event["future_field"] = {"anything": [1, 2]}
    assert isinstance(EVENT_ADAPTER.validate_python(event), Trade)


def test_the_published_json_schema_is_the_models_own() -> None:
    published = (ROOT / "deploy" / "contract.schema.json").read_text(encoding="utf-8")
    assert published == contract_schema_json(), "run: .venv/bin/dmm schema -o deploy/contract.schema.json"


def test_the_schema_covers_every_event_type_and_money_as_strings() -> None:
    schema = contract_schema()
    assert {"Listing", "Trade", "Usage", "Heartbeat", "Alert"} <= set(schema["$defs"])
    assert schema["$defs"]["Trade"]["properties"]["amount"]["type"] == "string"
    assert set(schema["discriminator"]["mapping"]) == {"listing", "trade", "usage", "heartbeat"}
