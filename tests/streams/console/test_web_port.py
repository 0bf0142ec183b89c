"""The worker's web port and SQL socket, attacked as issue 25 found them open, on a real worker.

Each request is sent as an attacker sends it: another user of the machine, or a page in the operator's browser
(a no-cors fetch posts `text/plain` with the page's Origin; DNS rebinding arrives with a foreign Host). Each
refusal is checked by its outcome in the store (nothing recorded, no file written), not only its status.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from dmm.cli import app
from dmm.producer import EventProducer
from dmm.query import query_rows, query_text, wait_until_drained
from dmm.replay import replay_file
from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.stack import EmbeddedStack
from settings import Settings, SqlSettings, get_settings
from sinks.clickhouse import ReadOnlyViolation, StoreError
from streams.sql_socket import bind_private
from streams.web_access import SECURITY_HEADERS, WebAccess, WebExposed
from tests.support.console import market_file, replayed_stack
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

TOKEN = "web-port-test-token"
LIMIT_S = 15.0
# Sixty seconds of sleep in three-second steps (ClickHouse sleeps at most 3 s a block): stopped at LIMIT_S.
SLOW = "SELECT sum(s) AS slept FROM (" + " UNION ALL ".join(["SELECT sleep(3) AS s"] * 40) + ")"


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    """A worker with a console token, fed a market with alerts; its directory open to other users (0755), so
    that only the socket's own mode keeps them out."""
    workdir = Path(tempfile.mkdtemp(prefix="dmm-web-", dir="/tmp"))
    workdir.chmod(0o755)
    settings = stack_settings(workdir).model_copy(
        update={"console_token": SecretStr(TOKEN), "sql": SqlSettings(max_execution_s=LIMIT_S)}
    )
    try:
        with replayed_stack(settings, workdir, market_file) as running:
            yield running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def send(
    stack: EmbeddedStack, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    settings = stack.settings
    connection = http.client.HTTPConnection(settings.web_host, settings.web_port, timeout=60)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.headers), response.read()


def action(key: str, verb: str = "resolve") -> bytes:
    return json.dumps({"dedup_key": key, "action": verb, "actor": "mallory", "note": "pwned"}).encode()


def actions(stack: EmbeddedStack) -> int:
    return int(query_rows(stack.settings, "SELECT count() AS n FROM alert_actions")[0]["n"])


def an_alert(stack: EmbeddedStack) -> str:
    return str(
        query_rows(stack.settings, "SELECT dedup_key FROM alerts FINAL ORDER BY dedup_key LIMIT 1")[0]["dedup_key"]
    )


JSON = {"Content-Type": "application/json"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (JSON, 403),  # no token: what `dmm alerts resolve` sent, and any local user could
        ({**JSON, "Authorization": "Bearer not-the-token"}, 403),
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),  # a page's no-cors fetch
        ({**BEARER, "Content-Type": "text/plain"}, 415),
        ({**BEARER, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({**BEARER, **JSON, "Origin": "http://evil.example"}, 403),  # another site's page, even with the token
        ({**BEARER, **JSON, "Host": "evil.example:6066"}, 421),  # DNS rebinding
    ],
    ids=["no token", "wrong token", "no-cors page", "text/plain", "form", "foreign origin", "foreign host"],
)
def test_a_state_changing_request_without_everything_it_needs_changes_nothing(
    stack: EmbeddedStack, headers: dict[str, str], status: int
) -> None:
    before = actions(stack)
    answered, answer_headers, body = send(stack, "POST", "/api/alert-action", action(an_alert(stack)), headers)
    assert answered == status, body
    assert "error" in json.loads(body)
    assert answer_headers["X-Frame-Options"] == "DENY"
    assert actions(stack) == before


def test_an_unknown_alert_is_404_and_not_recorded(stack: EmbeddedStack) -> None:
    before = actions(stack)
    status, _, body = send(stack, "POST", "/api/alert-action", action("no-such-alert"), {**BEARER, **JSON})
    assert status == 404 and b"no-such-alert" in body
    assert actions(stack) == before


def test_a_huge_or_broken_body_is_refused_with_a_reason_not_a_traceback(stack: EmbeddedStack) -> None:
    before = actions(stack)
    huge = b'{"note": "' + b"x" * (8 * 2**20) + b'"}'
    status, _, body = send(stack, "POST", "/api/alert-action", huge, {**BEARER, **JSON})
    assert status == 413, body

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known by reading
        for _ in range(200):
            yield b"x" * 4096

    connection = http.client.HTTPConnection(stack.settings.web_host, stack.settings.web_port, timeout=60)
    connection.request("POST", "/api/alert-action", body=chunks(), headers={**BEARER, **JSON}, encode_chunked=True)
    assert connection.getresponse().status == 413

    for broken in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"a string"'):
        status, _, body = send(stack, "POST", "/api/alert-action", broken, {**BEARER, **JSON})
        assert status == 400, body
        assert "JSON" in json.loads(body)["error"] and b"Traceback" not in body
    assert actions(stack) == before


def test_with_the_token_from_its_own_page_the_action_is_recorded(stack: EmbeddedStack) -> None:
    key = an_alert(stack)
    origin = f"http://127.0.0.1:{stack.settings.web_port}"
    status, _, body = send(stack, "POST", "/api/alert-action", action(key, "ack"), {**BEARER, **JSON, "Origin": origin})
    assert status == 200, body
    recorded = query_rows(stack.settings, f"SELECT actor FROM alert_actions WHERE dedup_key = '{key}'")
    assert {"actor": "mallory"} in recorded


def test_a_rebound_domain_reads_nothing_and_every_answer_carries_the_security_headers(stack: EmbeddedStack) -> None:
    for path in ("/", "/console/console.js", "/api/console/config", "/api/console/alerts", "/api/status"):
        status, headers, body = send(
            stack, "GET", path, headers={"Host": f"attacker.example:{stack.settings.web_port}"}
        )
        assert status == 421 and b"alerts" not in body, path
        assert {name: headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS
    for path in ("/", "/console/console.js", "/api/console/alerts", "/metrics", "/healthz", "/no-such-page"):
        _, headers, _ = send(stack, "GET", path)
        assert {name: headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS, path
    assert send(stack, "GET", "/metrics", headers={"Host": "10.1.2.3:6066"})[0] == 200  # scrapers address by IP


def test_ad_hoc_sql_is_off_the_web_port(stack: EmbeddedStack, tmp_path: Path) -> None:
    written = tmp_path / "x.txt"
    for body in (
        {"sql": f"SELECT 1 INTO OUTFILE '{written}'"},
        {"sql": "SELECT * FROM file('/etc/hostname', 'LineAsString')"},
    ):
        status, _, answer = send(stack, "POST", "/api/sql", json.dumps(body).encode(), {**BEARER, **JSON})
        assert status in (404, 405) and b"localhost" not in answer
    assert not written.exists()


def test_dmm_sql_goes_through_a_socket_only_the_workers_user_may_use(stack: EmbeddedStack) -> None:
    path = stack.settings.sql_socket
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert query_rows(stack.settings, "SELECT count() > 0 AS some FROM alerts") == [{"some": 1}]
    other_user = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            's.sendall(b\'{"sql": "SELECT count() FROM alerts"}\\n\'); print(s.recv(1000))',
            str(path),
        ],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other_user.returncode != 0 and "PermissionError" in other_user.stderr, other_user


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT 1 INTO OUTFILE '/tmp/dmm-owned.txt'",
        "SELECT * FROM file('/etc/shadow', 'LineAsString')",
        "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1; INSERT INTO alert_actions (dedup_key, action, actor) VALUES ('k', 'resolve', 'mallory')",
        "SELECT * FROM system.tables",
        "SELECT sleepEachRow(2.9) FROM numbers(10) SETTINGS max_block_size = 1",
    ],
)
def test_the_socket_refuses_the_sql_attacks(stack: EmbeddedStack, attack: str) -> None:
    before = actions(stack)
    with pytest.raises(ReadOnlyViolation, match="allowed"):
        query_text(stack.settings, attack)
    assert actions(stack) == before
    assert not Path("/tmp/dmm-owned.txt").exists()


def test_a_slow_query_neither_holds_ingestion_nor_outlives_its_limit(stack: EmbeddedStack, tmp_path: Path) -> None:
    """The issue held ingestion 29 s with one query. Now a batch sent while a slow query runs is stored before
    the query ends, and ClickHouse stops the query at DMM_SQL__MAX_EXECUTION_S."""
    settings = stack.settings
    outcome: list[BaseException | str] = []

    def slow() -> None:
        try:
            outcome.append(query_text(settings, SLOW))
        except StoreError as exc:
            outcome.append(exc)

    query = threading.Thread(target=slow)
    query.start()
    query.join(timeout=1.0)  # let it reach ClickHouse (it then runs for LIMIT_S)
    trades = int(query_rows(settings, "SELECT count() AS n FROM trades")[0]["n"])
    path = tmp_path / "more.jsonl"
    more = MarketSimulator(
        SimulationConfig(seed=17, start=datetime.fromisoformat("2026-11-22T08:00:00+08:00"), duration_s=120, rate=2.0)
    )
    path.write_bytes(b"\n".join(value for _, value in more.messages()) + b"\n")
    with EventProducer(settings.kafka) as producer:
        replay_file(path, producer)
    wait_until_drained(settings, timeout=LIMIT_S * 4)
    stored_more = int(query_rows(settings, "SELECT count() AS n FROM trades")[0]["n"]) > trades
    still_running = query.is_alive()
    query.join()
    assert stored_more and still_running, outcome
    assert isinstance(outcome[0], StoreError) and "TIMEOUT_EXCEEDED" in str(outcome[0])


def test_dmm_alerts_resolve_sends_the_token_and_fails_clearly_without_it(
    stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = an_alert(stack)
    for name, value in {
        "DMM_WEB_PORT": str(stack.settings.web_port),
        "DMM_CLICKHOUSE__CHDB_PATH": str(stack.settings.clickhouse.chdb_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DMM_CONSOLE_TOKEN", raising=False)
    get_settings.cache_clear()
    before = actions(stack)
    refused = CliRunner().invoke(app, ["alerts", "resolve", key, "--by", "ops-li"])
    assert refused.exit_code == 2 and "DMM_CONSOLE_TOKEN" in refused.output, refused.output
    assert actions(stack) == before

    monkeypatch.setenv("DMM_CONSOLE_TOKEN", TOKEN)
    get_settings.cache_clear()
    done = CliRunner().invoke(app, ["alerts", "resolve", key, "--by", "ops-li", "--note", "checked"])
    get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert query_rows(
        stack.settings, f"SELECT action, actor, note FROM alert_actions WHERE dedup_key = '{key}' AND actor = 'ops-li'"
    ) == [{"action": "resolve", "actor": "ops-li", "note": "checked"}]


def test_a_web_host_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(WebExposed, match="set DMM_CONSOLE_TOKEN"):
        WebAccess.from_settings(Settings(web_host="0.0.0.0"))
    exposed = WebAccess.from_settings(Settings(web_host="0.0.0.0", console_token=SecretStr("t")))
    assert exposed.reads_need_token and "127.0.0.1:6066" in exposed.hosts
    local = WebAccess.from_settings(Settings(web_allowed_hosts=["dmm.example.cn:6066"]))
    assert not local.reads_need_token
    assert local.hosts == {"localhost:6066", "127.0.0.1:6066", "[::1]:6066", "dmm.example.cn:6066"}


def test_the_worker_refuses_to_start_exposed_without_a_token(tmp_path: Path) -> None:
    env: dict[str, Any] = {**os.environ, "DMM_WEB_HOST": "0.0.0.0", "DMM_CLICKHOUSE__CHDB_PATH": str(tmp_path / "c")}
    env.pop("DMM_CONSOLE_TOKEN", None)
    worker = subprocess.run(
        [sys.executable, "-m", "dmm", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert worker.returncode != 0
    assert "set DMM_CONSOLE_TOKEN" in worker.stdout + worker.stderr


def test_the_socket_path_is_refused_when_too_long(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        bind_private(tmp_path / ("d" * 120) / "sql.sock")
