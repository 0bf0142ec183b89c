"""The embedded stack: Tansu broker + topics + a worker process on the embedded store.

Used by `dmm up`, the benchmark, `dmm eval` and the end-to-end tests, so they all
run exactly what production runs (a separate `dmm worker` process), only wired to
local parts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from dmm.broker import EmbeddedBroker
from dmm.query import wait_until_ready
from settings import Settings, settings_env
from streams.kafka_client import ensure_topics


class EmbeddedStack:
    def __init__(self, settings: Settings, workdir: Path, start_broker: bool = True) -> None:
        self.settings = settings
        self.workdir = workdir
        host, _, port = settings.kafka.bootstrap.partition(",")[0].rpartition(":")
        self.broker = EmbeddedBroker(host=host, port=int(port), log_dir=workdir) if start_broker else None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_started = 0.0  # time.monotonic() of the latest start_worker
        self.worker_log = workdir / "worker.log"

    def __enter__(self) -> EmbeddedStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.broker is not None:
                self.broker.start()
            ensure_topics(self.settings.kafka)
            self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start_worker(self, wait: bool = True, restarts: int = 0) -> None:
        """Start `dmm worker` as a child process (logs appended to workdir/worker.log).

        `restarts` is how many times a supervisor has restarted it; the worker shows it in /metrics.
        """
        env = {**os.environ, **settings_env(self.settings), "DMM_SUPERVISOR_RESTARTS": str(restarts)}
        with self.worker_log.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "dmm", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.worker_started = time.monotonic()
        if wait:
            try:
                wait_until_ready(self.settings, timeout=120, alive=lambda: self.worker.poll() is None)
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError(f"{exc}\n--- worker log tail ---\n{self.worker_log_tail()}") from exc

    def kill_worker(self) -> None:
        """SIGKILL: a crash at an arbitrary moment, nothing flushed."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()

    def stop_worker(self, timeout: float = 60) -> int | None:
        """SIGTERM: graceful stop (flush, ack, commit); SIGKILL if it does not exit in time."""
        if self.worker is None or self.worker.poll() is not None:
            return self.worker.returncode if self.worker else None
        self.worker.send_signal(signal.SIGTERM)
        try:
            return self.worker.wait(timeout)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            return self.worker.wait()

    def stop(self) -> None:
        self.stop_worker()
        if self.broker is not None:
            self.broker.stop()

    def worker_log_tail(self, lines: int = 40) -> str:
        if not self.worker_log.exists():
            return ""
        return "\n".join(self.worker_log.read_text(errors="replace").splitlines()[-lines:])
