"""A real Prometheus server scrapes the worker: its totals match the store, and the rules load.

Uses Debian's `prometheus` binary (installed by scripts/install-prometheus).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmm.broker import free_port
from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.replay import replay_file
from dmm.stack import EmbeddedStack
from tests.support.market_file import build

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="no prometheus binary: run scripts/install-prometheus"
    ),
]
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"


@pytest.fixture
def prometheus(stack: EmbeddedStack, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        f"  - job_name: dmm\n    static_configs: [{{targets: ['127.0.0.1:{stack.settings.web_port}']}}]\n"
    )
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def promql(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def eventually(base: str, expr: str, expected: object, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = promql(base, expr)
            if expected is None or [r["value"][1] for r in result] == expected:
                return result
        except OSError:
            result = []
        assert time.monotonic() < deadline, (expr, result)
        time.sleep(1)


def test_scraped_totals_match_the_store_and_rules_evaluate(
    stack: EmbeddedStack, prometheus: str, tmp_path: Path
) -> None:
    expected = build(tmp_path / "market.jsonl", minutes=4)
    with EventProducer(stack.settings.kafka) as producer:
        replay_file(tmp_path / "market.jsonl", producer)
    wait_until_drained(stack.settings, timeout=300)
    stored = query_rows(
        stack.settings,
        "SELECT (SELECT count() FROM datamarket.trades) AS trades, "
        "(SELECT toString(sum(amount)) FROM datamarket.trades) AS amount",
    )[0]
    eventually(prometheus, 'sum(dmm_events_total{type="trade"})', [str(stored["trades"])])
    eventually(prometheus, "sum(dmm_rejected_total)", [str(sum(expected.rejected.values()))])
    eventually(prometheus, "sum(dmm_duplicates_total)", [str(expected.duplicates)])
    amount = eventually(prometheus, "sum(dmm_traded_amount_cny_total)", None)
    assert abs(float(amount[0]["value"][1]) - float(stored["amount"])) < 0.01
    deadline = time.monotonic() + 30
    while True:  # every recording and alerting rule evaluates without error against the real series
        groups = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10).read())["data"]["groups"]
        health = {r["name"]: r.get("health") for g in groups for r in g["rules"]}
        if health and set(health.values()) == {"ok"}:
            break
        assert time.monotonic() < deadline, health
        time.sleep(1)
    eventually(prometheus, 'up{job="dmm"}', ["1"])
