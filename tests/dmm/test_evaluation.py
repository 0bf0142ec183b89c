from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dmm.evaluation import matches, score
from dmm.simulator.ground_truth import Incident
from models import SEVERITY, Alert

T = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def incident(kind: str = "price_outlier", exchange: str = "SHDEX", product: str | None = "P1",
             event_ids: tuple[str, ...] = ("E1",), start: int = 0, end: int = 0) -> Incident:
    return Incident(kind, exchange, product, event_ids, (T + timedelta(seconds=start)).isoformat(),
                    (T + timedelta(seconds=end)).isoformat(), "injected")


def alert(
    key: str,
    kind: str = "price_outlier",
    exchange: str = "SHDEX",
    product: str | None = "P1",
    event_ids: tuple[str, ...] = ("E1",),
    start: int | None = 0,
    end: int | None = 0,
    detected: float = 1,
) -> Alert:
    return Alert(
        alert_id=f"a-{key}", kind=kind, severity=SEVERITY[kind], exchange_id=exchange, product_id=product,
        event_ids=list(event_ids), score=1.0,
        window_start=None if start is None else T + timedelta(seconds=start),
        window_end=None if end is None else T + timedelta(seconds=end),
        detected_at=T + timedelta(seconds=detected), dedup_key=key, message="m", message_zh="m",
    )


def test_matching_needs_kind_exchange_product_and_evidence_or_window() -> None:
    truth = incident(event_ids=("E1",), start=0, end=10)
    assert matches(truth, alert("a"))
    assert not matches(truth, alert("a", kind="self_dealing"))
    assert not matches(truth, alert("a", exchange="BJIDEX"))
    assert not matches(truth, alert("a", product="P2"))
    assert matches(truth, alert("a", event_ids=("X",), start=10, end=20))  # windows touch
    assert not matches(truth, alert("a", event_ids=("X",), start=11, end=20))
    assert not matches(truth, alert("a", event_ids=("X",), start=None, end=None))
    assert matches(incident(product=None), alert("a", product=None))
    assert matches(incident(product=None), alert("a", product="P9"))  # the incident names no product


def test_detected_missed_false_and_duplicates_per_kind() -> None:
    incidents = [
        incident(event_ids=("E1",)),
        incident(event_ids=("E2",), product="P2"),
        incident("volume_spike", product=None, event_ids=("V1",), start=60, end=120),
    ]
    alerts = [
        alert("first", event_ids=("E1",), detected=3),
        alert("again", event_ids=("E1",), detected=5),  # duplicate of the first incident
        alert("spike", kind="volume_spike", product=None, event_ids=("other",), start=60, end=120, detected=125),
        alert("noise", kind="self_dealing", event_ids=("Z",)),  # matches nothing
    ]
    report = score(incidents, alerts, stored_at={("SHDEX", "E1"): T + timedelta(seconds=1)})
    outlier, spike, self_dealing = (report.kinds[k] for k in ("price_outlier", "volume_spike", "self_dealing"))
    counted = (outlier.injected, outlier.detected, outlier.missed, outlier.duplicates, outlier.false_alerts)
    assert counted == (2, 1, 1, 1, 0)
    assert outlier.latencies_s == [2.0]  # from when its evidence was stored to the first alert
    assert spike.detected == 1 and spike.latencies_s == [5.0]  # no stored evidence: from window_end
    assert self_dealing.false_alerts == 1 and self_dealing.injected == 0
    assert [i.product_id for i in report.missed] == ["P2"]
    assert [a.dedup_key for a in report.false_alerts] == ["noise"]
    total = report.total
    assert (total.injected, total.detected, total.missed, total.false_alerts, total.duplicates) == (3, 2, 1, 1, 1)
    assert total.latency_p50_s == 3.5 and total.latency_max_s == 5.0
    assert not report.perfect


def test_a_perfect_run_and_every_kind_is_listed() -> None:
    report = score([incident()], [alert("a")])
    assert report.perfect
    assert len(report.kinds) == 8 and report.kinds["exchange_silent"].injected == 0
    assert report.kinds["price_outlier"].latencies_s == [1.0]


def test_latency_never_negative() -> None:
    report = score([incident()], [alert("a", detected=1)], stored_at={("SHDEX", "E1"): T + timedelta(seconds=2)})
    assert report.kinds["price_outlier"].latencies_s == [0.0]
