"""`dmm worker` started where nothing exists yet (a fresh container, a first run) creates what it needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dmm.broker import free_port
from settings import KafkaSettings

pytestmark = pytest.mark.slow


def test_worker_in_an_empty_directory_becomes_healthy(kafka: KafkaSettings, tmp_path: Path) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DMM_KAFKA__BOOTSTRAP": kafka.bootstrap,
        "DMM_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DMM_WEB_PORT": str(port),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "dmm", "worker"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        status = _wait_for_health(f"http://127.0.0.1:{port}/healthz", alive=lambda: worker.poll() is None)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=90)[0].decode(errors="replace")
    assert status == 200, output[-3000:]
    assert worker.returncode == 0, output[-3000:]
    assert (workdir / ".dmm" / "chdb").is_dir() and (workdir / ".dmm" / "faust").is_dir()


def _wait_for_health(url: str, alive: Callable[[], bool], timeout: float = 120) -> int | None:
    """The first 200 from /healthz, or None if the process died or the deadline passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    return None
