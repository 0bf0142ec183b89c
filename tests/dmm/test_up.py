"""`dmm up` (what `scripts/up` runs): the whole embedded stack comes up, trades flow, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dmm.broker import free_port
from dmm.query import query_rows, wait_until_ready
from settings import KafkaSettings, Settings

pytestmark = pytest.mark.slow


def test_up_runs_the_stack_with_simulated_traffic_and_stops_cleanly(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"), web_port=free_port())
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
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=90)[0].decode()
    assert up.returncode == 0, output
    assert "http://127.0.0.1:" in output and "stopped" in output
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / ".dmm" / "chdb").is_dir()
