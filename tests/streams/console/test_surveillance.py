"""Alert actions are refused unless a console token is configured and presented; filters are checked."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from streams.console.routes import static_asset
from streams.console.surveillance import Refused, action_request, alert_filter, authorize


def test_without_a_configured_token_every_action_is_forbidden() -> None:
    for configured in (None, SecretStr("")):
        with pytest.raises(Refused) as refused:
            authorize(configured, "Bearer anything")
        assert refused.value.status == 403 and "read-only" in str(refused.value)


@pytest.mark.parametrize("header", [None, "", "Bearer wrong", "Basic s3cret", "s3cret"])
def test_a_missing_or_wrong_token_is_forbidden(header: str | None) -> None:
    with pytest.raises(Refused) as refused:
        authorize(SecretStr("s3cret"), header)
    assert refused.value.status == 403


def test_the_configured_token_is_accepted() -> None:
    authorize(SecretStr("s3cret"), "Bearer s3cret")


def test_an_action_names_a_known_action_an_alert_and_who_acts() -> None:
    assert action_request({"dedup_key": "k1", "action": "ack", "actor": " ops-li ", "note": "n"}) == (
        "k1",
        "ack",
        "ops-li",
        "n",
    )
    for body in (
        {"dedup_key": "k1", "action": "delete", "actor": "a"},
        {"action": "ack", "actor": "a"},
        {"dedup_key": "k1", "action": "ack", "actor": " "},
        ["k1"],
    ):
        with pytest.raises(Refused) as refused:
            action_request(body)
        assert refused.value.status == 400


def test_filters_accept_known_values_only() -> None:
    where = alert_filter({"kind": "wash_trading", "severity": "critical", "exchange": "SHDEX", "status": ""}, {"SHDEX"})
    assert (where.kind, where.severity, where.exchange_id, where.status) == ("wash_trading", "critical", "SHDEX", None)
    with pytest.raises(Refused):
        alert_filter({"exchange": "SHDEX' OR 1=1"}, {"SHDEX"})


def test_only_shipped_assets_of_known_types_are_served() -> None:
    page = static_asset("index.html")
    assert page is not None and page[1] == "text/html" and "/console/console.js" in page[0]
    for name in ("../routes.py", "routes.py", ".hidden.js", "missing.css", "static/index.html"):
        assert static_asset(name) is None
