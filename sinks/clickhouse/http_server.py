"""The embedded store behind ClickHouse's HTTP interface, so that several processes share it.

chdb opens a data directory in one process only. `dmm store serve` opens it once and
answers the subset of ClickHouse's HTTP protocol that clickhouse-connect speaks:
statements in the body (or `query`), results in the format the statement names,
settings and query parameters (`param_name`) as URL parameters, errors as HTTP 500 with ClickHouse's `Code: N.
DB::Exception` text. Workers, `dmm sql` and dashboards then point
`DMM_CLICKHOUSE__URL` at it exactly as at a ClickHouse server, which is how several
workers share dm.events on the embedded default.

An `INSERT ... FORMAT X` with its data in the body is spooled to a file and inserted
with `INSERT ... SELECT * FROM file()`, columns named from the data when it is Arrow
(ClickHouse matches Arrow columns by name), the URL's settings applied (so
`insert_deduplication_token` keeps retried writes single). A read-only request
(`readonly` set, as `dmm sql`'s and the console's reads send it) runs on a connection of its
own with `readonly = 1` and the request's limits, so it neither waits for the workers' writes
nor holds them.

Who may call it: whoever knows the shared secret. Whoever reaches this port can do anything
with the store (the workers must write), so binding to 127.0.0.1 is not enough: every local
user, and every web page the operator opens (a browser posts a plain-text body to any
loopback port, or reaches it by DNS rebinding), could otherwise write files through
`INTO OUTFILE` or read any with `file()`. So `serve` takes a password (DMM_CLICKHOUSE__PASSWORD,
which the workers already send, as HTTP Basic auth, as to a ClickHouse server), checks it
before reading a body, and refuses any request bearing an `Origin` header (only browsers send
one; ClickHouse clients do not). It is plain HTTP: keep it on loopback.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

import pyarrow as pa

from sinks.clickhouse.store import ChdbReads, ChdbStore, StoreError

log = logging.getLogger("dmm.store_server")

# URL parameters of the protocol itself, not settings.
PROTOCOL_PARAMS = {
    "query",
    "query_id",
    "database",
    "default_format",
    "user",
    "password",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "enable_http_compression",
    "wait_end_of_query",
    "buffer_size",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "readonly",
}
INSERT_WITH_DATA = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>[\w.`]+)\s*(?P<columns>\([^)]*\))?\s*FORMAT\s+(?P<format>\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
SETTING_NAME = re.compile(r"^\w+$")
PARAMETER = "param_"  # a query parameter's value, in the escaped format chdb binds as it is (`store.escaped`)


class StoreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: ChdbStore, host: str, port: int, user: str, password: str) -> None:
        if not password:
            raise ValueError(
                "dmm store-serve needs a shared secret: set DMM_CLICKHOUSE__PASSWORD (e.g. to the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) for it and for every worker "
                "that connects to it"
            )
        super().__init__((host, port), _Handler)
        self.store = store
        self.credentials = f"{user}:{password}".encode()


def serve(store: ChdbStore, user: str, password: str, host: str = "127.0.0.1", port: int = 8123) -> StoreServer:
    """Start answering on a background thread, to clients sending `user` and `password`; `shutdown()` the
    returned server to stop."""
    server = StoreServer(store, host, port, user, password)
    threading.Thread(target=server.serve_forever, name="store-server", daemon=True).start()
    log.info("embedded store served over HTTP", extra={"url": f"http://{host}:{server.server_port}"})
    return server


class _Handler(BaseHTTPRequestHandler):
    server: StoreServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _answer(self) -> None:
        if self.headers.get("Origin") is not None:
            self._refuse(403, "Code: 497. DB::Exception: browsers may not call the store (Origin). (ACCESS_DENIED)")
            return
        if not self._authenticated():
            self._refuse(
                401,
                "Code: 516. DB::Exception: the store wants the shared secret (DMM_CLICKHOUSE__USER / "
                "DMM_CLICKHOUSE__PASSWORD, as HTTP Basic auth). (AUTHENTICATION_FAILED)",
            )
            return
        params = dict(parse_qsl(urlparse(self.path).query, keep_blank_values=True))
        body = self._body()
        bound = {k.removeprefix(PARAMETER): v for k, v in params.items() if k.startswith(PARAMETER)} or None
        settings = {
            k: v
            for k, v in params.items()
            if k not in PROTOCOL_PARAMS and not k.startswith(PARAMETER) and SETTING_NAME.match(k)
        }
        read_only = params.get("readonly", "0") != "0"
        try:
            query = params.get("query", "")
            insert = INSERT_WITH_DATA.match(query) if query and body else None
            if insert is not None:
                if read_only:
                    raise StoreError("Code: 164. DB::Exception: INSERT in a read-only request. (READONLY)")
                self._insert(insert, body, settings)
                self._reply(200, b"", "TabSeparated")
                return
            sql = f"{query}\n{body.decode('utf-8')}" if query else body.decode("utf-8")
            found = TRAILING_FORMAT.search(sql)
            fmt = found.group(1) if found else params.get("default_format", "TabSeparated")
            statement = sql[: found.start()] if found else sql
            if read_only:
                output = ChdbReads(self.server.store, settings).raw(statement, fmt, bound)
            else:
                output = self.server.store.raw(statement, fmt, bound)
            self._reply(200, output, fmt)
        except (StoreError, ValueError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
            self._reply(500, f"Code: 1000. DB::Exception: {exc}\n".encode(), "TabSeparated")

    def _authenticated(self) -> bool:
        """HTTP Basic auth (what clickhouse-connect sends) or ClickHouse's X-ClickHouse-User / -Key headers."""
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
        else:
            given = f"{self.headers.get('X-ClickHouse-User', '')}:{self.headers.get('X-ClickHouse-Key', '')}".encode()
        return hmac.compare_digest(given, self.server.credentials)

    def _refuse(self, status: int, message: str) -> None:
        """Answer without reading the body, and close the connection (the body is still on it)."""
        self.close_connection = True
        self._reply(status, f"{message}\n".encode(), "TabSeparated")

    def _body(self) -> bytes:
        """The request body, whole: sized, or chunked (a streaming client's inserts)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline().strip():  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    def _insert(self, insert: re.Match[str], body: bytes, settings: dict[str, str]) -> None:
        fmt = insert.group("format")
        named = insert.group("columns")
        columns = [name.strip(" `") for name in named.strip("()").split(",")] if named else None
        if columns is None and fmt.lower() in ("arrow", "arrowstream"):
            reader = pa.ipc.open_stream if fmt.lower() == "arrowstream" else pa.ipc.open_file
            columns = reader(pa.BufferReader(body)).schema.names
        self.server.store.insert_data(insert.group("table"), columns, body, fmt, settings)

    def _reply(self, status: int, payload: bytes, fmt: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("X-ClickHouse-Timezone", "UTC")
        self.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        if status != 200:
            self.send_header("X-ClickHouse-Exception-Code", payload.split(b".", 1)[0].removeprefix(b"Code: ").decode())
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
