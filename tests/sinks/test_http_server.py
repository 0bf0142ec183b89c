"""`dmm store-serve`'s HTTP interface, spoken to by the production client (clickhouse-connect via `ServerStore`)
and by a bare HTTP client: chunked inserts, and what someone who reaches the port without the secret, or a
browser, gets (nothing)."""

from __future__ import annotations

import base64
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pyarrow as pa
import pytest
from pydantic import SecretStr

from settings import ClickHouseSettings, SqlSettings
from sinks.clickhouse.http_server import StoreServer, serve
from sinks.clickhouse.sql_guard import ReadOnlyViolation
from sinks.clickhouse.store import ChdbStore, ServerStore, StoreError

pytestmark = pytest.mark.integration

PASSWORD = "store-secret"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"default:{PASSWORD}".encode()).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    store = ChdbStore(tmp_path_factory.mktemp("served") / "chdb")
    served = serve(store, "default", PASSWORD, port=0)
    yield served
    served.shutdown()
    store.close()


@pytest.fixture(scope="module")
def client(server: StoreServer) -> Iterator[ServerStore]:
    store = ServerStore(ClickHouseSettings(url=f"http://127.0.0.1:{server.server_port}", password=SecretStr(PASSWORD)))
    store.apply_schema()
    yield store
    store.close()


def post(server: StoreServer, body: bytes, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    connection.request("POST", path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_an_arrow_insert_lands_once_per_deduplication_token_and_reads_back(client: ServerStore) -> None:
    at = pa.array([time.time_ns() // 1000], pa.timestamp("us", "UTC"))  # a stored time inside the table's TTL
    batch = pa.table(
        {
            "exchange_id": ["SHDEX"],
            "event_id": ["SHDEX-H-1"],
            "occurred_at": at,
            "seq": pa.array([7], pa.uint64()),
            "ingested_at": at,
        }
    )
    for _ in range(2):  # a retry of the same write
        client.insert("heartbeats", batch, token="batch-7")
    rows = client.rows("SELECT exchange_id, event_id, seq FROM datamarket.heartbeats")
    assert rows == [{"exchange_id": "SHDEX", "event_id": "SHDEX-H-1", "seq": 7}]
    assert client.arrow("SELECT count() AS n FROM datamarket.heartbeats").column("n").to_pylist() == [1]


def test_read_only_requests_run_read_only_and_errors_say_what_failed(client: ServerStore, server: StoreServer) -> None:
    with pytest.raises(ReadOnlyViolation):
        client.reads(SqlSettings()).ad_hoc("DROP TABLE datamarket.alerts", "TSV")
    status, answer = post(server, b"DROP TABLE datamarket.alerts", "/?readonly=1", AUTH)  # past the client's guard
    assert status == 500 and b"READONLY" in answer
    assert client.rows("SELECT count() AS n FROM datamarket.alerts") == [{"n": 0}]  # still there
    with pytest.raises(StoreError, match="no_such_table"):
        client.rows("SELECT * FROM datamarket.no_such_table")


def test_a_chunked_insert_is_read_whole(server: StoreServer, client: ServerStore) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port)
    query = quote("INSERT INTO datamarket.rule_changes (change, accepted, actor) FORMAT JSONEachRow")
    connection.putrequest("POST", f"/?query={query}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Authorization", AUTH["Authorization"])
    connection.endheaders()
    for line in (
        b'{"change": "{}", "accepted": 1, "actor": "a"}\n',
        b'{"change": "{}", "accepted": 0, "actor": "b"}\n',
    ):
        connection.send(b"%x\r\n%s\r\n" % (len(line), line))
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 200
    assert client.rows("SELECT actor FROM datamarket.rule_changes ORDER BY actor") == [{"actor": "a"}, {"actor": "b"}]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"default:guess").decode()},
        {"X-ClickHouse-User": "default", "X-ClickHouse-Key": ""},
    ],
    ids=["no secret", "wrong secret", "empty key"],
)
def test_without_the_secret_nothing_runs(
    server: StoreServer, client: ServerStore, tmp_path: Path, headers: dict[str, str]
) -> None:
    """What any local user, or a page in the operator's browser (a no-cors POST of plain text), could send."""
    written = tmp_path / "written.txt"
    status, answer = post(server, f"SELECT 'owned' INTO OUTFILE '{written}'".encode(), "/", headers)
    assert status == 401 and b"AUTHENTICATION_FAILED" in answer
    status, answer = post(server, b"SELECT * FROM file('/etc/hostname', 'LineAsString')", "/", headers)
    assert status == 401 and answer.count(b"\n") == 1  # the refusal, no file content
    status, _ = post(
        server,
        b"INSERT INTO datamarket.alert_actions (dedup_key, action, actor) VALUES ('k', 'resolve', 'mallory')",
        "/",
        headers,
    )
    assert status == 401
    assert not written.exists()
    assert client.rows("SELECT count() AS n FROM datamarket.alert_actions") == [{"n": 0}]


def test_a_browser_is_refused_even_with_the_secret(server: StoreServer, client: ServerStore) -> None:
    status, _ = post(
        server,
        b"INSERT INTO datamarket.alert_actions (dedup_key, action, actor) VALUES ('k', 'resolve', 'mallory')",
        "/",
        {**AUTH, "Origin": "http://evil.example"},
    )
    assert status == 403
    assert client.rows("SELECT count() AS n FROM datamarket.alert_actions") == [{"n": 0}]


def test_a_slow_read_only_request_neither_holds_writes_nor_outlives_its_limit(
    server: StoreServer, client: ServerStore
) -> None:
    """The read runs on a connection of its own with the request's limits: an insert sent while it runs is
    stored before it ends, and ClickHouse stops it at max_execution_time."""
    client.command(
        "INSERT INTO datamarket.rule_changes (change, accepted, actor) SELECT '{}', 1, 'slow' FROM numbers(10)"
    )
    happened: list[str] = []
    outcome: dict[str, tuple[int, bytes]] = {}

    def slow() -> None:
        params = urlencode({"readonly": "1", "max_execution_time": "1"})
        sql = b"SELECT sleepEachRow(0.25) AS slow_read FROM datamarket.rule_changes WHERE actor = 'slow'"
        outcome["read"] = post(server, sql, f"/?{params}", AUTH)
        happened.append("read ended")

    reader = threading.Thread(target=slow)
    reader.start()
    while not client.rows("SELECT count() AS n FROM system.processes WHERE query LIKE '%AS slow_read%'")[0]["n"]:
        assert reader.is_alive(), outcome
    client.command("INSERT INTO datamarket.rule_changes (change, accepted, actor) VALUES ('{}', 1, 'during')")
    happened.append("inserted")
    reader.join()
    assert happened == ["inserted", "read ended"]
    status, answer = outcome["read"]
    assert status == 500 and b"TIMEOUT_EXCEEDED" in answer
