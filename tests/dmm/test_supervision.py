"""`dmm up` supervises its worker: a killed worker comes back, the broker stays up, nothing is lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest

from dmm.broker import free_port
from dmm.query import wait_until_drained, wait_until_ready
from dmm.simulator import MarketSimulator, SimulationConfig
from dmm.supervisor import Backoff, describe_exit
from settings import KafkaSettings, Settings
from tests.support.simulated_runs import START

EVENT_TABLES = {"listing": "listings", "trade": "trades", "usage": "usage", "heartbeat": "heartbeats"}


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(first_s=1, max_s=30, stable_s=60)
    assert [backoff.after(uptime_s=2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after(uptime_s=61) == 1
    assert backoff.after(uptime_s=2) == 2


def test_exit_descriptions_name_the_signal_or_the_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(70) == "exited with code 70"


@pytest.mark.slow
def test_up_restarts_a_killed_worker_and_keeps_every_message(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"), web_port=free_port())
    env = {
        **os.environ,
        "DMM_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "DMM_WEB_PORT": str(settings.web_port),
        # `dmm sql` reaches the worker through the socket beside its store: the same store, from any directory
        "DMM_CLICKHOUSE__CHDB_PATH": str(tmp_path / ".dmm" / "chdb"),
    }
    lines = [message.value for message in MarketSimulator(SimulationConfig(seed=4, start=START, duration_s=600.0))]
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_bytes(b"".join(line + b"\n" for line in lines[: len(lines) // 2]))
    after.write_bytes(b"".join(line + b"\n" for line in lines[len(lines) // 2 :]))

    up = subprocess.Popen(
        [sys.executable, "-m", "dmm", "up", "--no-simulate"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(settings, timeout=120, alive=lambda: up.poll() is None)
        _dmm(env, "replay", str(before))
        wait_until_drained(settings)
        first = _worker_of(up.pid)
        broker = [p for p in psutil.Process(up.pid).children(recursive=True) if p.name() == "tansu"]
        assert _restarts_metric(settings) == 0

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        _dmm(env, "replay", str(after))  # while the worker is down or restarting: the broker keeps it
        second = _wait_for_new_worker(up, first.pid)
        wait_until_ready(settings, timeout=120, alive=second.is_running)
        wait_until_drained(settings)

        assert _restarts_metric(settings) == 1
        assert all(p.is_running() for p in broker), "the broker must stay up while the worker restarts"
        stored = _stored(env)
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=90)[0].decode(errors="replace")
    assert up.returncode == 0, output
    said = " ".join(output.split())  # the console wraps long lines
    assert f"worker (pid {first.pid}) killed by SIGKILL" in said and "restart 1 in 1 s" in said, output
    assert f"worker back: pid {second.pid}, restart 1" in said, output
    expected = Counter(EVENT_TABLES[json.loads(line)["type"]] for line in lines)
    assert stored == {table: (n, n) for table, n in expected.items()} | {"duplicate_events": (0, 0)}


def _dmm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dmm", *args], env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    return done.stdout.decode()


def _worker_of(up_pid: int) -> psutil.Process:
    workers = [p for p in psutil.Process(up_pid).children() if "worker" in p.cmdline()]
    assert len(workers) == 1, workers
    return workers[0]


def _wait_for_new_worker(up: subprocess.Popen[bytes], old_pid: int, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.poll() is None, "dmm up exited instead of restarting its worker"
        workers = [p for p in psutil.Process(up.pid).children() if "worker" in p.cmdline() and p.pid != old_pid]
        if workers:
            return workers[0]
        time.sleep(0.2)
    raise AssertionError(f"no new worker within {timeout:.0f} s")


def _restarts_metric(settings: Settings) -> float:
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values = [line.split()[1] for line in text.splitlines() if line.startswith("dmm_worker_restarts ")]
    assert len(values) == 1, text
    return float(values[0])


def _stored(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(rows, distinct event identities) per table, read with `dmm sql` through the running worker."""
    sql = " UNION ALL ".join(
        f"SELECT '{table}' AS t, count() AS rows, uniqExact(exchange_id, event_id) AS ids FROM datamarket.{table}"
        for table in [*EVENT_TABLES.values(), "duplicate_events"]
    )
    rows = [json.loads(line) for line in _dmm(env, "sql", sql, "--format", "JSONEachRow").splitlines() if line]
    return {row["t"]: (int(row["rows"]), int(row["ids"])) for row in rows}
