"""The embedded stack: Tansu broker + topics + a worker process on the embedded store (or several: `WorkerGroup`).

Used by `dmm up`, the benchmark, `dmm eval` and the end-to-end tests, so they all
run exactly what production runs (a separate `dmm worker` process), only wired to
local parts.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from dmm.broker import EmbeddedBroker, free_port
from dmm.query import WorkerUnavailable, wait_until_ready, worker_status
from settings import Settings, settings_env
from sinks.clickhouse import StoreError, open_store
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


class WorkerGroup:
    """Several `dmm worker` processes in one consumer group on the embedded store, shared through
    `dmm store-serve` (chdb opens a data directory in one process only). The broker is the caller's.

    Each worker gets its own web port and Faust directory; all of them, and `settings` as returned by
    `start`, reach the store at the server's URL with its shared secret (DMM_CLICKHOUSE__PASSWORD, generated
    when unset)."""

    def __init__(self, settings: Settings, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        self.store_log = workdir / "store.log"
        password = settings.clickhouse.password.get_secret_value() or secrets.token_urlsafe(32)
        self.settings = settings.model_copy(
            update={
                "clickhouse": settings.clickhouse.model_copy(
                    update={"url": f"http://127.0.0.1:{free_port()}", "password": SecretStr(password)}
                )
            }
        )
        self._chdb_path = settings.clickhouse.chdb_path
        self.stacks = [
            EmbeddedStack(
                self.settings.model_copy(
                    update={
                        "web_port": free_port(),
                        "clickhouse": self.settings.clickhouse.model_copy(
                            update={"chdb_path": workdir / f"worker-{n}" / "chdb"}  # Faust's directory beside it
                        ),
                    }
                ),
                workdir / f"worker-{n}",
                start_broker=False,
            )
            for n in range(1, workers + 1)
        ]
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def worker_settings(self) -> list[Settings]:
        return [stack.settings for stack in self.stacks]

    def start(self, timeout: float = 120) -> Settings:
        """The store server, then every worker at once; returns once they share the partitions."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings), "DMM_CLICKHOUSE__CHDB_PATH": str(self._chdb_path)}
        env.pop("DMM_CLICKHOUSE__URL", None)  # the server opens the embedded store itself
        port = self.settings.clickhouse.url.rpartition(":")[2]  # type: ignore[union-attr]
        with self.store_log.open("ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "dmm", "store-serve", "--port", port],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_for_store(timeout)
        for stack in self.stacks:
            stack.workdir.mkdir(parents=True, exist_ok=True)
            stack.start_worker(wait=False)
        self._wait_until_sharing(timeout)
        return self.settings

    def stop(self) -> None:
        for stack in self.stacks:
            stack.stop_worker()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def _wait_for_store(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"dmm store-serve exited:\n{self.store_log.read_text(errors='replace')[-2000:]}")
            try:
                open_store(self.settings.clickhouse, read_only=True).close()
                return
            except StoreError:
                time.sleep(0.2)
        raise TimeoutError(f"dmm store-serve did not answer within {timeout:.0f}s")

    def _wait_until_sharing(self, timeout: float) -> None:
        """Every worker ready and owning partitions of its own, together all of them."""
        deadline = time.monotonic() + timeout
        owned: list[set[int]] = []
        while time.monotonic() < deadline:
            for stack in self.stacks:
                if stack.worker is not None and stack.worker.poll() is not None:
                    raise RuntimeError(f"a worker exited during start-up:\n{stack.worker_log_tail()}")
            try:
                statuses = [worker_status(settings) for settings in self.worker_settings]
            except (WorkerUnavailable, RuntimeError, ValueError):
                time.sleep(0.5)
                continue
            owned = [{int(p) for p in status.get("partitions") or {}} for status in statuses]
            together = set().union(*owned)
            if (
                all(status.get("ready") for status in statuses)
                and all(owned)
                and sum(map(len, owned)) == len(together) == self.settings.kafka.events_partitions
            ):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the workers did not come to share the partitions within {timeout:.0f}s: {owned}")
