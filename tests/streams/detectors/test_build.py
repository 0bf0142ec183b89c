from __future__ import annotations

import pytest

from settings import RuleSettings
from sinks.clickhouse.store import ChdbStore
from streams.detectors import build_detectors
from tests.support.detector_market import heartbeat, restored


def test_the_eight_kinds_and_the_unlisted_switch() -> None:
    kinds = {detector.kind for detector in build_detectors(RuleSettings())}
    assert kinds == {
        "self_dealing", "wash_trading", "unlisted_product", "pricing_policy_violation", "price_outlier",
        "cross_exchange_price_gap", "volume_spike", "exchange_silent",
    }
    assert "unlisted_product" not in {d.kind for d in build_detectors(RuleSettings(unlisted_product_enabled=False))}


@pytest.mark.integration
def test_every_detector_restores_from_an_empty_store(store: ChdbStore) -> None:
    for detector in build_detectors(RuleSettings()):
        market = restored(detector, store, [])
        assert market.feed(heartbeat(0)) == []
