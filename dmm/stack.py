"""The embedded stack: Tansu broker + topics + a worker process on the embedded store (or several: `WorkerGroup`).

Used by `dmm up`, the benchmark, `dmm eval` and the end-to-end tests, so they all
run exactly what production runs (a separate `dmm worker` process), only wired to
local parts. Every child dies with the process that started it (`dmm.children`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

from pydantic import SecretStr

from dmm.broker import EmbeddedBroker, free_port
from dmm.children import spawn, stop_all
from dmm.query import WorkerUnavailable, wait_until_ready, worker_status
from settings import Settings, settings_env
from sinks.clickhouse import StoreError, open_store
from streams.kafka_client import ensure_topics

# A worker killed with its parent is a crash it is built for (replay from the last commit, nothing lost or
# doubled); on SIGTERM it would try to commit to a broker that is going down with it.
_WORKER_ON_PARENT_DEATH = signal.SIGKILL
# The store server closes the store on SIGTERM at once (its clients, the workers, are gone by then).
_STORE_ON_PARENT_DEATH = signal.SIGTERM
_STORE_STOP_GRACE_S = 10.0


class StoreInUse(RuntimeError):
    """Another live stack holds this embedded store."""


class StoreClaim:
    """One stack's exclusive claim on an embedded store: an `flock` on a file beside the store.

    The stack's children inherit the locked descriptor, so the claim lasts until the last of them is gone
    (a `dmm up` killed while its worker still writes holds the store until the worker dies too), and the
    kernel drops it whatever way they end: no stale lock file to clean up by hand."""

    def __init__(self, chdb_path: Path) -> None:
        self.store = chdb_path
        self.path = chdb_path.parent / f"{chdb_path.name}.lock"
        self.descriptor: int | None = None

    def acquire(self) -> StoreClaim:
        """Claim the store, or raise StoreInUse saying who holds it and what to do."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise StoreInUse(
                f"the embedded store {self.store} is in use by another `dmm up` (pid {holder}) or the processes "
                f"it started: stop that one first (Ctrl-C in its terminal, or `kill {holder}`), or start this one "
                "with another --workdir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self.descriptor = descriptor
        return self

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> StoreClaim:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


class EmbeddedStack:
    """Broker, topics and one worker; on the embedded store, it claims the store first (`StoreClaim`).

    `claim`: one the caller holds already (`dmm up` claims before it writes anything beside the store).
    `stop_grace_s`: how long `stop` lets the worker flush and commit before it SIGKILLs it."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        start_broker: bool = True,
        claim: StoreClaim | None = None,
        stop_grace_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        host, _, port = settings.kafka.bootstrap.partition(",")[0].rpartition(":")
        self.broker = EmbeddedBroker(host=host, port=int(port), log_dir=workdir) if start_broker else None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_started = 0.0  # time.monotonic() of the latest start_worker
        self.worker_log = workdir / "worker.log"
        self.claim = claim
        self._own_claim = claim is None and settings.clickhouse.url is None
        self.stop_grace_s = stop_grace_s

    def __enter__(self) -> EmbeddedStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_claim:
            self.claim = StoreClaim(self.settings.clickhouse.chdb_path).acquire()
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
            self.worker = spawn(
                [sys.executable, "-m", "dmm", "worker"],
                on_parent_death=_WORKER_ON_PARENT_DEATH,
                log=log,
                env=env,
                pass_fds=self.claimed_fds,
            )
        self.worker_started = time.monotonic()
        if wait:
            try:
                wait_until_ready(self.settings, timeout=120, alive=self.worker_alive)
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError(f"{exc}\n--- worker log tail ---\n{self.worker_log_tail()}") from exc

    @property
    def claimed_fds(self) -> tuple[int, ...]:
        """The store claim's descriptor, for every child to hold (see `StoreClaim`)."""
        return () if self.claim is None or self.claim.descriptor is None else (self.claim.descriptor,)

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def kill_worker(self) -> None:
        """SIGKILL: a crash at an arbitrary moment, nothing flushed."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()

    def stop_worker(self, timeout: float = 60) -> int | None:
        """SIGTERM: graceful stop (flush, ack, commit); SIGKILL if it does not exit in time."""
        return stop_all([(self.worker, signal.SIGTERM)], timeout)[0]

    def stop(self) -> None:
        """The worker first (it commits through the broker), at most `stop_grace_s`; then the broker."""
        try:
            self.stop_worker(self.stop_grace_s)
            if self.broker is not None:
                self.broker.stop()
        finally:
            if self._own_claim and self.claim is not None:
                self.claim.release()

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

    def __init__(self, settings: Settings, workdir: Path, workers: int, stop_grace_s: float = 60.0) -> None:
        self.workdir = workdir
        self.stop_grace_s = stop_grace_s
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
        url = self.settings.clickhouse.url
        assert url is not None  # set above: the group's workers reach the store through this server
        port = url.rpartition(":")[2]
        with self.store_log.open("ab") as log:
            self.server = spawn(
                [sys.executable, "-m", "dmm", "store-serve", "--port", port],
                on_parent_death=_STORE_ON_PARENT_DEATH,
                log=log,
                env=env,
            )
        self._wait_for_store(timeout)
        for stack in self.stacks:
            stack.workdir.mkdir(parents=True, exist_ok=True)
            stack.start_worker(wait=False)
        self._wait_until_sharing(timeout)
        return self.settings

    def stop(self) -> None:
        """Every worker at once (SIGTERM, together at most `stop_grace_s`, then SIGKILL), then the store server
        they write through."""
        stop_all([(stack.worker, signal.SIGTERM) for stack in self.stacks], self.stop_grace_s)
        stop_all([(self.server, signal.SIGTERM)], _STORE_STOP_GRACE_S)

    def _wait_for_store(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = urlparse(self.settings.clickhouse.url or "")
        host, port = url.hostname or "127.0.0.1", url.port or 8123
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"dmm store-serve exited:\n{self.store_log.read_text(errors='replace')[-2000:]}")
            try:  # listening first: clickhouse-connect logs a warning for every refused connection
                socket.create_connection((host, port), timeout=1).close()
                open_store(self.settings.clickhouse, read_only=True).close()
                return
            except (OSError, StoreError):
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
