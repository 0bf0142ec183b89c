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

from dmm.broker import free_port
from dmm.query import UnknownAlert, alert_action, query_rows, wait_until_ready
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
