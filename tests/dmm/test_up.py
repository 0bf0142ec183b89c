"""`dmm up` (what `scripts/up` runs): the whole embedded stack comes up, trades flow, Ctrl-C stops it all; the
console's address it prints carries a token it generated, kept for `dmm alerts` in a file only its user reads."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dmm.broker import free_port, port_is_free
from dmm.query import UnknownAlert, alert_action, query_rows, wait_until_ready
from dmm.simulator import KINDS
from settings import ClickHouseSettings, KafkaSettings, Settings

pytestmark = pytest.mark.slow


def test_up_runs_the_stack_with_simulated_traffic_and_stops_cleanly(tmp_path: Path) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
        clickhouse=ClickHouseSettings(chdb_path=tmp_path / ".dmm" / "chdb"),  # where `dmm up` in tmp_path puts it
        web_port=free_port(),
    )
    env = {**os.environ, "DMM_KAFKA__BOOTSTRAP": settings.kafka.bootstrap, "DMM_WEB_PORT": str(settings.web_port)}
    up = subprocess.Popen(
        [sys.executable, "-m", "dmm", "up", "--time-scale", "20", "--rate", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(settings, timeout=120, alive=lambda: up.poll() is None)
        deadline = time.monotonic() + 60
        trades = 0
        while trades == 0:
            assert time.monotonic() < deadline, "no simulated trade reached the store"
            time.sleep(1)
            trades = int(query_rows(settings, "SELECT count() AS n FROM datamarket.trades")[0]["n"])
        children = psutil.Process(up.pid).children(recursive=True)
        assert {p.name() for p in children} >= {"tansu"}
        token_file = tmp_path / ".dmm" / "console-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        with pytest.raises(UnknownAlert, match="no alert with dedup_key"):  # accepted by the worker: the token works
            alert_action(settings, "no-such-alert", "ack", "ops-li")
        refused = settings.model_copy(update={"clickhouse": ClickHouseSettings(chdb_path=tmp_path / "elsewhere")})
        with pytest.raises(RuntimeError, match="token"):  # without it, the worker takes no action
            alert_action(refused, "no-such-alert", "ack", "ops-li")
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=90)[0].decode()
    assert up.returncode == 0, output
    assert "stopped" in output
    printed = re.search(r"http://127\.0\.0\.1:\d+/#token=(\S+)", output)
    assert printed and printed.group(1) == token_file.read_text().strip(), output
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / ".dmm" / "chdb").is_dir()


@pytest.mark.integration
def test_up_keeps_everything_in_its_workdir_refuses_a_second_up_and_leaves_nothing_when_killed(tmp_path: Path) -> None:
    cwd, workdir = tmp_path / "cwd", tmp_path / "wd"
    cwd.mkdir()
    settings = Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
        clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"),
        web_port=free_port(),
    )
    env = {**os.environ, "DMM_KAFKA__BOOTSTRAP": settings.kafka.bootstrap, "DMM_WEB_PORT": str(settings.web_port)}
    env.pop("DMM_CLICKHOUSE__CHDB_PATH", None)
    command = [sys.executable, "-m", "dmm", "up", "--no-simulate", "--workdir", str(workdir)]

    first = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(settings, timeout=120, alive=lambda: first.poll() is None)
        kept = {path.name for path in workdir.iterdir()}
        assert {"chdb", "console-token", "sql.sock", "ops.key", "faust", "worker.log"} <= kept, kept
        assert any(name.startswith("tansu-") for name in kept), kept
        assert list(cwd.iterdir()) == []
        token = (workdir / "console-token").read_text()

        other_ports = {**env, "DMM_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}", "DMM_WEB_PORT": str(free_port())}
        second = subprocess.run(command, cwd=cwd, env=other_ports, capture_output=True, timeout=120, check=False)
        said = " ".join((second.stdout + second.stderr).decode().split())
        assert second.returncode == 1, said
        assert f"{workdir / 'chdb'} is in use by another `dmm up` (pid {first.pid})" in said, said
        assert (workdir / "console-token").read_text() == token, "the refused `dmm up` must touch nothing"

        children = psutil.Process(first.pid).children(recursive=True)
        assert {"tansu", "python"} <= {p.name().rstrip("0123456789.") for p in children}, children
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    deadline = time.monotonic() + 10
    while (left := [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert left == [], "children outlived a killed `dmm up`"
    ports = [int(settings.kafka.bootstrap.rpartition(":")[2]), settings.web_port]
    while (taken := [port for port in ports if not port_is_free("127.0.0.1", port)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert taken == [], subprocess.run(["ss", "-tanp"], capture_output=True, text=True, check=False).stdout

    again = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(settings, timeout=120, alive=lambda: again.poll() is None)
    finally:
        began = time.monotonic()
        again.send_signal(signal.SIGINT)
        output = again.communicate(timeout=30)[0].decode()
        print(f"`dmm up` stopped {time.monotonic() - began:.1f} s after SIGINT")
    assert again.returncode == 0, output
    assert "stopped" in output
    assert list(cwd.iterdir()) == []


def test_up_with_the_all_scenario_shows_every_alert_kind(tmp_path: Path) -> None:
    """`dmm up --scenario all` injects every alert kind into the live market: the worker stores an alert of each.
    At --time-scale 60 the scenario's 45 minutes of event time play in under a minute of wall time."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
        clickhouse=ClickHouseSettings(chdb_path=tmp_path / ".dmm" / "chdb"),
        web_port=free_port(),
    )
    env = {**os.environ, "DMM_KAFKA__BOOTSTRAP": settings.kafka.bootstrap, "DMM_WEB_PORT": str(settings.web_port)}
    up = subprocess.Popen(
        [sys.executable, "-m", "dmm", "up", "--scenario", "all", "--time-scale", "60", "--rate", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    kinds: set[str] = set()
    try:
        wait_until_ready(settings, timeout=120, alive=lambda: up.poll() is None)
        deadline = time.monotonic() + 600
        while kinds != set(KINDS):
            assert up.poll() is None, "dmm up exited"
            assert time.monotonic() < deadline, f"only {sorted(kinds)} alerted"
            time.sleep(2)
            rows = query_rows(settings, "SELECT DISTINCT toString(kind) AS kind FROM datamarket.alerts")
            kinds = {row["kind"] for row in rows}
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=90)[0].decode()
    assert up.returncode == 0, output
    assert "injecting 8 alert kinds" in output, output
