"""One ClickHouse store, two engines: embedded chdb (default) or a server via clickhouse-connect.

Both take the same DDL, the same Arrow batches and the same SQL, so the worker,
tests and CLI never care which one runs. Inserts are columnar (Arrow) and carry a
deterministic `insert_deduplication_token`, so a retried write lands once.

The worker writes, and reads its own state, on one connection (`command`, `rows`, `arrow`). Whatever is read for
someone else (the console, `dmm sql`) goes through `reads(limits)`: each read on a connection of its own with
`readonly = 1` and ClickHouse's limits (`settings.SqlSettings`), so a slow read neither holds the worker's
writes nor waits for them or for another read (chdb 4.4: independent connections to one path run at once; an
INSERT on one went through in milliseconds while a slow SELECT ran on another). A statement someone typed also
goes through `sql_guard` first.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pyarrow as pa

from settings import ClickHouseSettings, SqlSettings
from sinks.clickhouse.sql_guard import guard_select, output_format

# Where inserts are spooled for chdb to read: memory-backed where the machine has it. Files are named after the
# process that spooled them, so what a killed process left behind can be told from what a live one is writing.
SPOOL = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
SPOOL_PREFIX = "dmm-insert-"


class StoreError(RuntimeError):
    """A store operation failed; the message says what was attempted."""


# Values for a statement's `{name:Type}` placeholders. They travel beside the SQL text, never inside it: no text a
# producer, an operator or a caller sent can change what a statement does, however it is quoted.
Parameters = Mapping[str, str | int]


def schema_statements() -> list[str]:
    text = files("sinks").joinpath("clickhouse", "schema.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]


def limit_settings(limits: SqlSettings) -> dict[str, str]:
    """ClickHouse's own limits for a read run for someone else (set before `readonly = 1`, which freezes them)."""
    return {
        "max_execution_time": str(limits.max_execution_s),
        "max_result_rows": str(limits.max_result_rows),
        "max_result_bytes": str(limits.max_result_bytes),
        "result_overflow_mode": "throw",
        "max_memory_usage": str(limits.max_memory_bytes),
    }


class Write(NamedTuple):
    """One table's share of a batch, as the worker stores it."""

    table: str
    batch: pa.Table
    token: str  # insert_deduplication_token: a retried write lands once
    stamp: str | None = None  # a column the store sets to the moment of the write (when the rows were stored)


class Staged(Protocol):
    """A batch's writes, encoded where they were staged (the worker's loop) and written later (in a thread)."""

    @property
    def pending(self) -> str:
        """The table the next `write` starts with (`batch`: all are written at once), for failure reports."""
        ...

    def write(self) -> list[tuple[str, float]]:
        """Write what is not written yet, in order (again after a failure: the tokens make it idempotent);
        returns what was written (a table, or `batch` for all at once) and how long it took, in seconds."""
        ...

    def close(self) -> None:
        """Let go of what staging made (spooled files)."""
        ...


class Reads(Protocol):
    """Reads run for someone else, each on a connection of its own with `readonly = 1` and the limits."""

    database: str

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        """The monitor's own statement (`console_queries`), as rows."""
        ...

    def ad_hoc(self, sql: str, fmt: str, parameters: Parameters | None = None) -> str:
        """A statement someone typed, through `sql_guard` first, as text in `fmt` (one of its `OUTPUT_FORMATS`)."""
        ...


class Store(Protocol):
    database: str

    def apply_schema(self) -> None: ...
    def insert(self, table: str, batch: pa.Table, token: str) -> None: ...
    def stage(self, writes: Sequence[Write]) -> Staged: ...
    def command(self, sql: str, parameters: Parameters | None = None) -> None: ...
    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]: ...
    def arrow(self, sql: str, parameters: Parameters | None = None) -> pa.Table: ...
    def reads(self, limits: SqlSettings) -> Reads: ...
    def close(self) -> None: ...


# The rows of one insert never share a sorting key (the worker drops duplicates before it stores), so the
# Replacing engines need not collapse them as they are written: a quarter of an insert's CPU
# (`optimize_on_insert`; replicas and reads still collapse what several inserts wrote, FINAL or LIMIT 1 BY).
INSERT_SETTINGS = {"optimize_on_insert": "0"}


class InOrder:
    """Staged writes that a store makes one table at a time: what is written leaves, so a retry goes on from
    the table that failed."""

    def __init__(self, store: Store, writes: Sequence[Write]) -> None:
        self.store = store
        self.unwritten = list(writes)

    @property
    def pending(self) -> str:
        return self.unwritten[0].table if self.unwritten else ""

    def write(self) -> list[tuple[str, float]]:
        took = []
        while self.unwritten:
            table, batch, token, stamp = self.unwritten[0]
            started = time.perf_counter()
            self.store.insert(table, _stamped(batch, stamp) if stamp else batch, token)
            took.append((table, time.perf_counter() - started))
            self.unwritten.pop(0)
        return took

    def close(self) -> None:
        self.unwritten = []


class Spooled:
    """A batch's tables spooled as Arrow files when staged, then written by one multi-statement query.

    The thread that writes needs the GIL twice (the query in, its result out) instead of a dozen times per
    table (spooling, file handling, one query each): while the worker's loop runs Python, each time costs it
    up to a switch interval (5 ms), which made a 20,000-event batch's write ~5x slower than it is alone.
    A failed statement leaves the earlier ones written; the retry writes all again and their tokens drop what
    was written. The stamp comes from ClickHouse (`now64`) as the statement runs."""

    def __init__(self, store: ChdbStore, writes: Sequence[Write]) -> None:
        self.store = store
        self.files: list[str] = []
        statements = []
        self.parameters: dict[str, str] = {}
        for index, (table, batch, token, stamp) in enumerate(writes):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_table(batch)
            descriptor, name = tempfile.mkstemp(dir=SPOOL, prefix=_spool_prefix(), suffix=".arrow")
            with os.fdopen(descriptor, "wb") as spool:
                spool.write(sink.getvalue())
            self.files.append(name)
            statement, parameters = _insert_from_file(
                f"{store.database}.{table}",
                batch.column_names,
                {"insert_deduplication_token": token, **INSERT_SETTINGS},
                name,
                "ArrowStream",
                f"* REPLACE (now64(3) AS `{stamp}`)" if stamp else "*",
                suffix=f"_{index}",  # one query holds every table's statement: each its own parameters
            )
            statements.append(statement)
            self.parameters.update(parameters)
        self.sql = ";\n".join(statements)

    pending = "batch"

    def write(self) -> list[tuple[str, float]]:
        if not self.files:
            return []
        started = time.perf_counter()
        self.store.command(self.sql, self.parameters)
        return [("batch", time.perf_counter() - started)]

    def close(self) -> None:
        for name in self.files:
            Path(name).unlink(missing_ok=True)
        self.files = []


def _insert_from_file(
    target: str,
    columns: list[str] | None,
    settings: Mapping[str, str],
    path: str,
    fmt: str,
    selected: str = "*",
    suffix: str = "",
) -> tuple[str, dict[str, str]]:
    """The statement inserting a spooled file's rows, encoded in `fmt` (into `columns` in their order, else the
    table's), with its parameters (their names end in `suffix`)."""
    names = "(" + ", ".join(f"`{name}`" for name in columns) + ")" if columns else ""
    assigned, parameters = _assignments(settings, suffix)
    clause = f"SETTINGS {assigned}" if settings else ""
    parameters |= {f"path{suffix}": path, f"format{suffix}": fmt}
    source = f"file({{path{suffix}:String}}, {{format{suffix}:String}})"
    return f"INSERT INTO {target} {names} {clause} SELECT {selected} FROM {source}", parameters


def _assignments(settings: Mapping[str, str], suffix: str = "") -> tuple[str, dict[str, str]]:
    """`name = {placeholder}, ...` for a SETTINGS clause or a SET statement, with the values as parameters (the
    names are ClickHouse's setting names: `\\w+`, checked where they come from outside)."""
    placeholders = {name: f"setting_{index}{suffix}" for index, name in enumerate(settings)}
    assigned = ", ".join(f"{name} = {{{placeholder}:String}}" for name, placeholder in placeholders.items())
    return assigned, {placeholders[name]: value for name, value in settings.items()}


def _spool_prefix() -> str:
    return f"{SPOOL_PREFIX}{os.getpid()}-"


def sweep_spool(spool: Path = SPOOL) -> int:
    """Remove the files spooled by processes that are gone (a killed worker leaves a batch's files behind, in
    memory where the spool is /dev/shm); returns how many."""
    removed = 0
    for path in spool.glob(f"{SPOOL_PREFIX}*-*"):
        pid = path.name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_running(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def process_running(pid: int) -> bool:
    """Whether process `pid` is alive (one of another user counts): what it left behind is still its own."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _stamped(batch: pa.Table, column: str) -> pa.Table:
    """`batch` with `column` set to now."""
    index = batch.schema.get_field_index(column)
    now = pa.array([datetime.now(UTC)] * batch.num_rows, batch.schema.field(index).type)
    return batch.set_column(index, batch.schema.field(index), now)


# The embedded store keeps parts under 16 MiB (every batch's inserts, and what their first merges make) in one
# file each ("packed" part storage), not ~14: a batch's five or six inserts made ~75 files, and where creating a
# file is slow (this VM's /tmp: 0.54 ms, against 0.02 in the working directory) that file-system work was a
# quarter of the worker's CPU at 10k events/s. Larger parts stay one file per column, for reads. Not in the
# shared DDL: ClickHouse servers from before packed parts were open-sourced (mid-2026) cannot read them.
PACKED_PARTS = "min_bytes_for_full_part_storage = 16777216"


class _Chdb(Protocol):
    """What the store uses of a chdb session or connection: chdb's functions carry no annotations, so they are
    typed here, once (`_open_chdb`)."""

    def query(self, sql: str, fmt: str, /, *, params: dict[str, str] | None) -> Any:
        """The statement's result (`.bytes()`; an Arrow table for `ArrowTable`), None for no output."""
        ...

    def close(self) -> None: ...


def _open_chdb(path: Path, *, session: bool) -> _Chdb:
    """A chdb session on `path` (the store's own: one per process) or a connection beside it (a read's)."""
    import chdb
    from chdb import session as sessions

    opened: Callable[[str], _Chdb] = sessions.Session if session else chdb.connect
    return opened(str(path))


def escaped(parameters: Parameters | None) -> dict[str, str] | None:
    """Parameters as chdb binds them: text in ClickHouse's escaped format, as the HTTP interface's `param_` values
    (clickhouse-connect encodes them so for a server). A backslash, tab, newline or NUL left as it is would change
    or end the value (chdb reads a NUL as the end); nothing in it can become SQL."""
    if not parameters:
        return None
    return {name: str(value).translate(_ESCAPES) for name, value in parameters.items()}


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


class ChdbStore:
    """ClickHouse in-process on a local data directory. One process may open it at a time."""

    def __init__(self, path: Path, database: str = "datamarket", read_only: bool = False) -> None:
        """`read_only`: the whole session runs with `readonly = 1`, as a SELECT-only user would."""
        path.mkdir(parents=True, exist_ok=True)
        sweep_spool()
        self.path = path
        self.database = database
        self._lock = threading.Lock()
        try:
            self._session = _open_chdb(path, session=True)
        except Exception as exc:  # chdb raises a bare RuntimeError on a locked path
            raise StoreError(
                f"cannot open the embedded store at {path}: {exc}. Another dmm process (a running worker?) "
                "may hold it; use `dmm sql` (it goes through the worker) or stop that process."
            ) from exc
        if read_only:
            self._run("SET readonly = 1")

    def apply_schema(self) -> None:
        for statement in schema_statements():
            self.command(statement)
        tables = self.rows(
            "SELECT name FROM system.tables WHERE database = {database:String} AND engine LIKE '%MergeTree'",
            {"database": self.database},
        )
        for table in tables:  # a store created before gets them too
            self.command(f"ALTER TABLE {self.database}.`{table['name']}` MODIFY SETTING {PACKED_PARTS}")

    def insert(self, table: str, batch: pa.Table, token: str) -> None:
        staged = Spooled(self, [Write(table, batch, token)])
        try:
            staged.write()
        finally:
            staged.close()

    def stage(self, writes: Sequence[Write]) -> Staged:
        return Spooled(self, writes)

    def insert_data(
        self, target: str, columns: list[str] | None, data: bytes | pa.Buffer, fmt: str, settings: Mapping[str, str]
    ) -> None:
        """Rows encoded in `fmt` (into `columns` in their order, else the table's), spooled to a file that
        ClickHouse reads without Python: the Python() table function holds the GIL while it reads, stalling
        the worker's event loop (about a tenth of it while a batch is written)."""
        with tempfile.NamedTemporaryFile(dir=SPOOL, prefix=_spool_prefix()) as spooled:
            spooled.write(data)
            spooled.flush()
            statement, parameters = _insert_from_file(target, columns, settings, spooled.name, fmt)
            self._run(statement, parameters)

    def command(self, sql: str, parameters: Parameters | None = None) -> None:
        self._run(sql, parameters)

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        out = self._run(sql, parameters, fmt="JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line]

    def arrow(self, sql: str, parameters: Parameters | None = None) -> pa.Table:
        with self._lock:
            try:
                return self._session.query(sql, "ArrowTable", params=escaped(parameters))
            except Exception as exc:
                raise StoreError(f"{exc} (while running: {sql[:200]})") from exc

    def reads(self, limits: SqlSettings) -> ChdbReads:
        return ChdbReads(self, limit_settings(limits))

    def raw(self, sql: str, fmt: str, escaped_parameters: dict[str, str] | None = None) -> bytes:
        """One statement's output, as bytes in `fmt` (the HTTP interface passes it on untouched), its parameters
        as that interface takes them (`escaped`)."""
        with self._lock:
            try:
                result = self._session.query(sql, fmt, params=escaped_parameters)
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        return _bytes(result)

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def _run(self, sql: str, parameters: Parameters | None = None, fmt: str = "CSV") -> str:
        with self._lock:
            try:
                result = self._session.query(sql, fmt, params=escaped(parameters))
            except Exception as exc:
                raise StoreError(f"{exc} (while running: {sql[:200]})") from exc
        return _bytes(result).decode("utf-8", errors="replace")


def _bytes(result: Any) -> bytes:
    """A chdb result's output (none: no bytes)."""
    output: bytes = result.bytes() if result is not None else b""
    return output


class ChdbReads:
    """Each read on a new connection to the store's path (about a millisecond to open beside the worker's):
    `settings` set, then `readonly = 1`, which freezes them, then the statement. Nothing is shared with the
    worker's connection or another read, so nothing waits for them. Valid while the store is open."""

    def __init__(self, store: ChdbStore, settings: dict[str, str]) -> None:
        self.database = store.database
        self._path = store.path
        self._settings = settings

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        out = self.raw(sql, "JSONEachRow", escaped(parameters)).decode("utf-8")
        return [json.loads(line) for line in out.splitlines() if line]

    def ad_hoc(self, sql: str, fmt: str, parameters: Parameters | None = None) -> str:
        statement = guard_select(sql, self.database)
        return self.raw(statement, output_format(fmt), escaped(parameters)).decode("utf-8", errors="replace")

    def raw(self, sql: str, fmt: str, escaped_parameters: dict[str, str] | None = None) -> bytes:
        """The statement's output in `fmt`, as ClickHouse wrote it (what `dmm store-serve` passes on), its
        parameters as the HTTP interface takes them (`escaped`)."""
        connection = _open_chdb(self._path, session=False)
        try:
            if self._settings:
                assigned, values = _assignments(self._settings)
                connection.query(f"SET {assigned}", "CSV", params=escaped(values))
            connection.query("SET readonly = 1", "CSV", params=None)
            result = connection.query(sql, fmt, params=escaped_parameters)
        except Exception as exc:
            raise StoreError(f"{exc} (while running: {sql[:200]})") from exc
        finally:
            connection.close()
        return _bytes(result)


class ServerStore:
    """A ClickHouse server over HTTP(S) via clickhouse-connect (TLS, user/password)."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.database = settings.database
        self._client = _connect(settings)
        self._settings = settings
        self._lock = threading.Lock()
        self._reads_client: Any = None  # for `reads`: its own connections, never behind the writer's lock
        self._reader_is_read_only: bool | None = None  # is the user SELECT-only? Found out on the first `reads`
        self._reads_client_made = threading.Lock()

    def apply_schema(self) -> None:
        for statement in schema_statements():
            self.command(statement)

    def insert(self, table: str, batch: pa.Table, token: str) -> None:
        with self._lock:
            try:
                self._client.insert_arrow(
                    f"{self.database}.{table}", batch, settings={"insert_deduplication_token": token, **INSERT_SETTINGS}
                )
            except Exception as exc:
                raise StoreError(f"insert into {table} failed: {exc}") from exc

    def stage(self, writes: Sequence[Write]) -> Staged:
        return InOrder(self, writes)

    def command(self, sql: str, parameters: Parameters | None = None) -> None:
        with self._lock:
            try:
                self._client.command(sql, parameters=parameters)
            except Exception as exc:
                raise StoreError(f"{exc} (while running: {sql[:200]})") from exc

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                out = self._client.raw_query(sql, parameters=parameters, fmt="JSONEachRow")
            except Exception as exc:
                raise StoreError(f"{exc} (while running: {sql[:200]})") from exc
        return [json.loads(line) for line in out.decode("utf-8").splitlines() if line]

    def arrow(self, sql: str, parameters: Parameters | None = None) -> pa.Table:
        with self._lock:
            try:
                return self._client.query_arrow(sql, parameters=parameters)
            except Exception as exc:
                raise StoreError(f"{exc} (while running: {sql[:200]})") from exc

    def reads(self, limits: SqlSettings) -> ServerReads:
        """A SELECT-only user (readonly = 1 in its profile, as deploy/clickhouse/grants.sql makes `dmm_reader`)
        may change no setting at all: its profile's limits apply instead."""
        with self._reads_client_made:
            if self._reads_client is None:
                client = _connect(self._settings)
                try:
                    self._reader_is_read_only = str(client.command("SELECT getSetting('readonly')")) != "0"
                except Exception as exc:
                    raise StoreError(f"cannot connect to ClickHouse at {_redact(self._settings.url)}: {exc}") from exc
                self._reads_client = client
        limits_set = None if self._reader_is_read_only else {**limit_settings(limits), "readonly": "1"}
        return ServerReads(self._reads_client, self.database, limits_set)

    def close(self) -> None:
        self._client.close()
        if self._reads_client is not None:
            self._reads_client.close()


class ServerReads:
    """Reads on a client of their own (clickhouse-connect without sessions: its requests run side by side), each
    request with `settings` (the limits and `readonly = 1`; None for a SELECT-only user)."""

    def __init__(self, client: Any, database: str, settings: dict[str, str] | None) -> None:
        self.database = database
        self._client = client
        self._settings = settings

    def rows(self, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._text(sql, "JSONEachRow", parameters).splitlines() if line]

    def ad_hoc(self, sql: str, fmt: str, parameters: Parameters | None = None) -> str:
        return self._text(guard_select(sql, self.database), output_format(fmt), parameters)

    def _text(self, sql: str, fmt: str, parameters: Parameters | None) -> str:
        try:
            result: bytes = self._client.raw_query(sql, parameters=parameters, fmt=fmt, settings=self._settings)
        except Exception as exc:
            raise StoreError(f"{exc} (while running: {sql[:200]})") from exc
        return result.decode("utf-8", errors="replace")


def _connect(settings: ClickHouseSettings) -> Any:
    """A clickhouse-connect client of the server `settings` name (the writer's and the readers' alike)."""
    import clickhouse_connect

    try:
        return clickhouse_connect.get_client(
            dsn=settings.url,
            username=settings.user,
            password=settings.password.get_secret_value(),
            verify=settings.verify_tls,
            ca_cert=str(settings.ca_cert) if settings.ca_cert else None,
            autogenerate_session_id=False,
        )
    except Exception as exc:
        raise StoreError(f"cannot connect to ClickHouse at {_redact(settings.url)}: {exc}") from exc


def open_store(settings: ClickHouseSettings, read_only: bool = False) -> Store:
    """The server named by `settings.url`, else the embedded store at `settings.chdb_path`. The worker applies
    the schema; a reader (`read_only`: `dmm sql` without a worker, dashboards) creates nothing and needs only
    SELECT."""
    if settings.url:
        store: Store = ServerStore(settings)
    else:
        store = ChdbStore(settings.chdb_path, settings.database, read_only=read_only)
    if not read_only:
        store.apply_schema()
    return store


def _redact(url: str | None) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url or "")
