"""chdb in a child process of its own: the embedded store's engine, out of the worker's address space.

In the worker's own process, chdb's inserts and background merges slow its Python threefold
while they run (a Python loop ran at 34-46 % of its speed beside a thread inserting, on CPU all
along: it is not the GIL, and the same work in another process costs it 15 %). The worker's
loop is all Python, so the engine runs here instead. The data never crosses the pipe on the
way in: batches are spooled as Arrow files (`sinks.clickhouse.store.Spooled`) that ClickHouse
reads by path. Statements go down the pipe, results come back up.

Framing, both ways: a 1-byte kind and a 4-byte (request) or 8-byte (reply) big-endian length
before each part. The child exits when its parent goes: at end of input, or within 0.2 s if
the parent is killed while a statement runs.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

_REQUEST = struct.Struct(">BII")  # kind, format length, statement length
_REPLY = struct.Struct(">BQ")  # status, payload length
_QUERY, _CLOSE = 1, 2
_OK, _FAILED = 0, 1
_LOCKED_WAIT_S = 1.0
_CHILD = "import sys; from sinks.clickhouse.chdb_process import serve; serve(sys.argv[1])"


class EngineError(RuntimeError):
    """The engine refused a statement (the message is chdb's), or is gone."""


class ChdbProcess:
    """A chdb session at `path`, run by a child process: `query` as `chdb.session.Session.query`, returning
    the output's bytes (Arrow file bytes for `ArrowTable`: see `ChdbStore.arrow`). Not thread-safe: the
    store serialises its statements."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._start()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self._send = self._process.stdin
        self._receive = self._process.stdout
        try:
            self._read_reply()  # opened, or why not
        except EngineError:
            self.close()
            raise

    def query(self, sql: str, fmt: str) -> bytes:
        """A statement's output in `fmt`. If the engine died (the statement that killed it failed), the next
        statement starts it again: the caller sees an outage, not a store gone for good."""
        if self._process.poll() is not None:
            self._start()
        encoded_fmt, encoded_sql = fmt.encode(), sql.encode()
        self._write(_REQUEST.pack(_QUERY, len(encoded_fmt), len(encoded_sql)) + encoded_fmt + encoded_sql)
        return self._read_reply()

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._write(_REQUEST.pack(_CLOSE, 0, 0))
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()

    def _write(self, data: bytes) -> None:
        try:
            self._send.write(data)  # type: ignore[union-attr]
        except OSError as exc:
            raise self._gone() from exc

    def _read_reply(self) -> bytes:
        header = _read_exactly(self._receive, _REPLY.size)  # type: ignore[arg-type]
        if header is None:
            raise self._gone()
        status, length = _REPLY.unpack(header)
        payload = _read_exactly(self._receive, length) if length else b""  # type: ignore[arg-type]
        if payload is None:
            raise self._gone()
        if status != _OK:
            raise EngineError(payload.decode("utf-8", errors="replace"))
        return payload

    def _gone(self) -> EngineError:
        """The engine ended under a statement (which may or may not have run): once it is reaped, the next
        statement starts another."""
        try:
            code: int | str = self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        return EngineError(f"the embedded store's process ended (exit status {code}); the next statement restarts it")


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """`size` bytes, or None at end of input."""
    parts, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _die_with_parent() -> None:
    """Exit as soon as the parent is gone, even in the middle of a statement (a watch every 0.2 s: the
    kernel's death signal follows the parent's *thread*, and the store may be opened from any thread)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _open(path: str) -> Any:
    """chdb's session at `path`. A killed worker's engine lets go of the directory up to 0.2 s after it: the
    restarted worker's tries for a second (chdb's complaints muted but for the last try's)."""
    from chdb import session

    deadline = time.monotonic() + _LOCKED_WAIT_S
    while time.monotonic() < deadline:
        stderr, muted = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(muted, 2)
        try:
            return session.Session(path)
        except Exception:  # noqa: BLE001 - chdb raises a bare RuntimeError on a locked path; tried again
            time.sleep(0.1)
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
            os.close(muted)
    return session.Session(path)


def serve(path: str) -> None:
    """The child's loop: statements in, outputs out, until the parent closes or goes."""
    _die_with_parent()
    # The protocol has the pipes to itself: whatever the engine prints goes to stderr (the worker's log).
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    threading.current_thread().name = "chdb-engine"

    def reply(status: int, payload: bytes) -> None:
        replies.write(_REPLY.pack(status, len(payload)))
        if payload:
            replies.write(payload)

    try:
        engine = _open(path)
    except Exception as exc:  # noqa: BLE001 - why it cannot open goes to the parent
        reply(_FAILED, str(exc).encode())
        return
    reply(_OK, b"")
    while True:
        header = _read_exactly(requests, _REQUEST.size)
        if header is None:
            break
        kind, fmt_length, sql_length = _REQUEST.unpack(header)
        if kind == _CLOSE:
            break
        fmt = (_read_exactly(requests, fmt_length) or b"").decode()
        sql = (_read_exactly(requests, sql_length) or b"").decode()
        try:
            result = engine.query(sql, "Arrow" if fmt == "ArrowTable" else fmt)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the caller's error, not the engine's end
            reply(_FAILED, str(exc).encode())
            continue
        reply(_OK, result.bytes() if result is not None else b"")
    engine.close()  # type: ignore[attr-defined]
