"""`dmm sql` into a running worker on the embedded store, through a Unix socket beside the store, not the web port.

chdb opens a data directory in one process only, so while a worker runs, ad-hoc SQL must go through it. On the
web port, anyone who reaches that port could query the whole store: every local user, and every web page the
operator opens. A Unix socket says who may connect with its file permissions, as PostgreSQL's and Docker's do:
it is created mode 0600 (before it listens, so there is no moment it is open to others), and a peer of
another OS user is refused as well (SO_PEERCRED): only the worker's own user, who can read the store's files
anyway. The statement still goes through `sinks.clickhouse.sql_guard` and ClickHouse's limits.

Protocol: one JSON line `{"sql": ..., "format": ..., "parameters": {name: value}}` (at most `REQUEST_MAX` bytes;
`parameters`, the values of the statement's `{name:Type}` placeholders, may be left out), answered by one JSON
object, `{"text": ...}` or `{"error": ..., "refused": true|false}`, then the connection closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mode import Service

from sinks.clickhouse import Parameters, ReadOnlyViolation, StoreError

REQUEST_MAX = 64 * 1024
DEFAULT_FORMAT = "PrettyCompactMonoBlock"
Answer = Callable[[str, str, Parameters | None], Awaitable[str]]


class SqlSocket(Service):
    """Serves `answer(sql, format, parameters)` on the socket at `path` while the worker runs."""

    def __init__(self, path: Path, answer: Answer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self._answer = answer
        self._server: asyncio.AbstractServer | None = None

    async def on_start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, sock=bind_private(self.path), limit=REQUEST_MAX)

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer.get_extra_info("socket")):
                reply: dict[str, Any] = {"error": "only the worker's OS user may query it", "refused": True}
            else:
                reply = await self._reply(reader)
            writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass  # the client went away
        finally:
            writer.close()

    async def _reply(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            request = json.loads(await reader.readline())
            sql, fmt = str(request["sql"]), str(request.get("format") or DEFAULT_FORMAT)
            parameters = _parameters(request.get("parameters") or {})
        except (ValueError, KeyError, TypeError, AttributeError, asyncio.LimitOverrunError):
            return {
                "error": f'expected one JSON line {{"sql": ..., "format": ..., "parameters": {{...}}}} of at most '
                f"{REQUEST_MAX} bytes",
                "refused": True,
            }
        try:
            return {"text": await self._answer(sql, fmt, parameters or None)}
        except ReadOnlyViolation as exc:
            return {"error": str(exc), "refused": True}
        except StoreError as exc:
            return {"error": str(exc), "refused": False}


def _parameters(given: dict[str, object]) -> dict[str, str | int]:
    """The request's placeholder values: names to texts or integers (anything else is refused: ValueError)."""
    values: dict[str, str | int] = {}
    for name, value in given.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValueError(f"parameter {name!r} is neither text nor an integer")
        values[str(name)] = value
    return values


def bind_private(path: Path) -> socket.socket:
    """A Unix socket bound at `path`, mode 0600 before it listens; a stale file from a killed worker is replaced,
    a live one (another worker on this store) is not."""
    if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes on Linux, 104 on macOS
        raise ValueError(
            f"the SQL socket path {path} is too long for a Unix socket: use a shorter DMM_CLICKHOUSE__CHDB_PATH"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(str(path)) == 0:
                raise RuntimeError(f"another worker answers on {path}: one worker per embedded store")
        path.unlink()
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        bound.bind(str(path))
        os.chmod(path, 0o600)
    except OSError:
        bound.close()
        raise
    return bound


def _same_user(peer: socket.socket | None) -> bool:
    """Is the peer this process's OS user (where the system tells: Linux's SO_PEERCRED)?"""
    if peer is None or not hasattr(socket, "SO_PEERCRED"):
        return peer is not None
    _pid, uid, _gid = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return bool(uid == os.getuid())
