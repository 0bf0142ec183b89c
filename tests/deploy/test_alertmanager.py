"""deploy/alertmanager and deploy/runbooks: the routing tree, the runbook links, and a real Alertmanager.

`amtool` and the Alertmanager binary come from Debian's `prometheus-alertmanager`
package (`scripts/install-prometheus`; CI runs it). Debian names the server
`prometheus-alertmanager`, upstream `alertmanager`: either is used.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dmm.broker import free_port
from tests.support.deploy_files import DEPLOY, ROOT, RULES_YML, alerting_rules

ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
RUNBOOKS = DEPLOY / "runbooks"
RELAY = "http://alert-relay:8080"


@dataclass(frozen=True)
class Rule:
    name: str
    labels: dict[str, str]
    runbook_url: str | None


def rules() -> list[Rule]:
    """Every alerting rule of rules.yml with its static labels and runbook_url (no YAML library needed)."""
    text = RULES_YML.read_text(encoding="utf-8")
    found = []
    for block in re.split(r"^\s*- (?=alert:|record:)", text, flags=re.MULTILINE):
        name = re.match(r"alert:\s*(\S+)", block)
        if not name:
            continue
        labels_block = re.search(r"^(\s*)labels:\s*\n((?:\1\s+\S.*\n)+)", block, re.MULTILINE)
        labels = (
            dict(re.findall(r"^\s*(\w+):\s*(\S+)\s*$", labels_block.group(2), re.MULTILINE)) if labels_block else {}
        )
        runbook = re.search(r"^\s*runbook_url:\s*(\S+)\s*$", block, re.MULTILINE)
        found.append(Rule(name.group(1), labels, runbook.group(1) if runbook else None))
    assert [r.name for r in found] == list(alerting_rules())
    return found


def expected_receiver(labels: dict[str, str]) -> str:
    """The routing policy deploy/alertmanager/alertmanager.yml documents."""
    if labels.get("team") == "surveillance":
        return "surveillance-desk"
    if labels.get("team") == "ops" and labels.get("severity") == "critical":
        return "ops-pager"
    return "ops-chat"


# ---- runbooks (no binary needed) ---------------------------------------------


def test_every_rule_has_team_severity_and_a_runbook_that_names_it():
    for rule in rules():
        assert rule.labels.get("team") in {"ops", "surveillance"}, f"{rule.name}: team label"
        assert rule.labels.get("severity") in {"critical", "warning", "info"}, f"{rule.name}: severity label"
        assert rule.runbook_url == f"deploy/runbooks/{rule.name}.md", f"{rule.name}: runbook_url"
        page = ROOT / rule.runbook_url
        assert page.is_file(), f"{rule.name}: {page} is missing"
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {rule.name}\n"), f"{page} must be titled with the alert name"
        for section in ("## What it means", "## First checks", "## Fix"):
            assert section in text, f"{page} lacks {section!r}"


def test_runbooks_have_no_orphans_and_the_index_lists_every_alert():
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(alerting_rules())
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for rule in rules():
        assert f"[{rule.name}]({rule.name}.md) | {rule.labels['team']} | {rule.labels['severity']} |" in index


# ---- amtool ------------------------------------------------------------------


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool is not installed: run scripts/install-prometheus (CI installs it)")
    return path


@pytest.mark.integration
def test_amtool_check_config(amtool):
    r = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_YML)], check=False, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.integration
@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.name)
def test_amtool_routes_each_rule_by_team_and_severity(amtool, rule):
    labels = [f"{k}={v}" for k, v in {"alertname": rule.name, **rule.labels}.items()]
    r = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == [expected_receiver(rule.labels)]


# ---- a real Alertmanager delivering to a webhook -----------------------------


class _Webhook(ThreadingHTTPServer):
    """Collects (path, JSON body) of every POST; answers 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.received: queue.Queue[tuple[str, dict]] = queue.Queue()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.put((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _alertmanager_binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        pytest.skip("alertmanager is not installed: run scripts/install-prometheus (CI installs it)")
    return path


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"alertmanager exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    pytest.fail(f"alertmanager never became ready:\n{log.read_text()}")


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: _Webhook) -> Iterator[str]:
    """The real config, its receivers pointed at the test's webhook and group_wait cut to zero."""
    binary = _alertmanager_binary()
    config = ALERTMANAGER_YML.read_text(encoding="utf-8")
    assert RELAY in config
    config = re.sub(r"group_wait:\s*\S+", "group_wait: 0s", config.replace(RELAY, webhook.url))
    (tmp_path / "alertmanager.yml").write_text(config, encoding="utf-8")
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post_alerts(url: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.integration
def test_alertmanager_routes_real_rule_labels_to_the_right_webhook(alertmanager, webhook):
    by_name = {rule.name: rule for rule in rules()}
    sent = {
        # what Prometheus sends for these rules: alertname, the rule's labels, the series' labels, annotations
        "DmmWorkerDown": {"job": "dmm-worker", "instance": "w1:6066"},
        "DmmRejectedRatioHigh": {},
        "DmmSurveillanceCriticalAlert": {"kind": "wash_trading"},
    }
    alerts = []
    for name, series in sent.items():
        rule = by_name[name]
        alerts.append(
            {
                "labels": {"alertname": name, **rule.labels, **series},
                "annotations": {"summary": f"test {name}", "runbook_url": rule.runbook_url},
            }
        )
    _post_alerts(alertmanager, alerts)

    deliveries: dict[str, tuple[str, dict]] = {}
    while len(deliveries) < len(sent):
        path, body = webhook.received.get(timeout=60)
        deliveries[body["receiver"]] = (path, body)

    expected = {
        "ops-pager": ("/ops/pager", "DmmWorkerDown"),
        "ops-chat": ("/ops/chat", "DmmRejectedRatioHigh"),
        "surveillance-desk": ("/surveillance", "DmmSurveillanceCriticalAlert"),
    }
    assert set(deliveries) == set(expected)
    for receiver, (path, alertname) in expected.items():
        got_path, body = deliveries[receiver]
        assert got_path == path
        assert body["status"] == "firing"
        assert [a["labels"]["alertname"] for a in body["alerts"]] == [alertname]
        alert = body["alerts"][0]
        assert alert["annotations"]["runbook_url"] == f"deploy/runbooks/{alertname}.md"
        assert alert["labels"]["team"] == by_name[alertname].labels["team"]
    assert deliveries["surveillance-desk"][1]["alerts"][0]["labels"]["kind"] == "wash_trading"
