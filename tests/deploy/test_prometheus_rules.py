"""deploy/prometheus: promtool checks and unit tests, plus checks that need no promtool.

promtool comes from Debian's `prometheus` package: scripts/install-prometheus
installs it (CI runs that script). Only the promtool tests skip without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.deploy_files import (
    DEPLOY,
    RULES_TEST_YML,
    RULES_YML,
    alerting_rules,
    known_promql_names,
    promql_metric_names,
    recording_rules,
    rule_exprs,
)

PROM = DEPLOY / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: run scripts/install-prometheus (CI installs it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROM, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_promtool_check_rules(promtool):
    r = run(promtool, "check", "rules", "rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.integration
def test_promtool_test_rules(promtool):
    r = run(promtool, "test", "rules", "rules_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


@pytest.mark.integration
def test_promtool_check_config(promtool):
    r = run(promtool, "check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.integration
def test_promtool_check_kubernetes_scrape_config(promtool):
    r = run(promtool, "check", "config", "kubernetes-scrape.yml")
    out = r.stdout + r.stderr
    if r.returncode != 0 and "field kubernetes_sd_configs not found" in out:
        # Debian builds Prometheus without the Kubernetes service discovery.
        pytest.skip("this promtool build has no kubernetes_sd_configs support (Debian's package)")
    assert r.returncode == 0, out


# ---- checks without promtool ------------------------------------------------


def test_rule_exprs_use_only_exported_metrics():
    known = known_promql_names()
    exprs = rule_exprs()
    assert len(exprs) == len(recording_rules()) + len(alerting_rules())
    for expr in exprs:
        unknown = promql_metric_names(expr) - known
        assert not unknown, f"{expr!r} uses metrics not in sinks/prometheus.py: {sorted(unknown)}"


def _rule_blocks() -> dict[str, str]:
    text = RULES_YML.read_text(encoding="utf-8")
    parts = re.split(r"^\s*- (?=alert:|record:)", text, flags=re.M)
    return {m.group(1): p for p in parts if (m := re.match(r"alert:\s*(\S+)", p))}


def test_every_alert_has_severity_and_bilingual_annotations():
    blocks = _rule_blocks()
    assert set(blocks) == set(alerting_rules())
    for name, block in blocks.items():
        sev = re.search(r"^\s*severity:\s*(\S+)", block, re.M)
        assert sev and sev.group(1) in {"info", "warning", "critical"}, name
        for key in ("summary", "summary_zh", "description"):
            assert re.search(rf"^\s*{key}:", block, re.M), f"{name} lacks annotation {key}"
        assert re.search(r"[\u4e00-\u9fff]", block), f"{name} has no Chinese text"


def test_expected_alerts_exist():
    expected = {
        "DmmWorkerDown", "DmmConsumerStalled", "DmmConsumerLagHigh", "DmmStoreWriteFailures",
        "DmmStoreBackpressure", "DmmRejectedRatioHigh", "DmmExchangeSilent", "DmmEventLagHigh",
        "DmmSurveillanceCriticalAlert",
    }
    assert expected <= set(alerting_rules())


def test_every_alert_has_a_firing_unit_test():
    text = RULES_TEST_YML.read_text(encoding="utf-8")
    firing: set[str] = set()
    # each alert_rule_test entry: alertname, then exp_alerts either [] or a non-empty list
    for m in re.finditer(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:(\s*\[\])?", text):
        if not m.group(2):
            firing.add(m.group(1))
    missing = set(alerting_rules()) - firing
    assert not missing, f"alerting rules without a test expecting them to fire: {sorted(missing)}"
