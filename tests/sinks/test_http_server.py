"""`dmm store-serve`'s HTTP interface, spoken to by the production client (clickhouse-connect via `ServerStore`)
and by a bare HTTP client streaming a chunked insert."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from urllib.parse import quote

import pyarrow as pa
import pytest

from settings import ClickHouseSettings
from sinks.clickhouse.http_server import StoreServer, serve
from sinks.clickhouse.store import ChdbStore, ReadOnlyViolation, ServerStore, StoreError


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    store = ChdbStore(tmp_path_factory.mktemp("served") / "chdb")
    served = serve(store, port=0)
    yield served
    served.shutdown()
    store.close()


@pytest.fixture(scope="module")
def client(server: StoreServer) -> Iterator[ServerStore]:
    store = ServerStore(ClickHouseSettings(url=f"http://127.0.0.1:{server.server_port}"))
    store.apply_schema()
    yield store
    store.close()


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


def test_read_only_requests_run_one_read_only_statement_and_errors_say_what_failed(
    client: ServerStore, server: StoreServer
) -> None:
    with pytest.raises(ReadOnlyViolation):
        client.text("DROP TABLE datamarket.alerts", "TSV")
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port)
    connection.request("POST", "/?readonly=2", body=b"DROP TABLE datamarket.alerts")  # past the client's own check
    response = connection.getresponse()
    assert response.status == 500 and b"READONLY" in response.read()
    with pytest.raises(StoreError, match="no_such_table"):
        client.rows("SELECT * FROM datamarket.no_such_table")


def test_a_chunked_insert_is_read_whole(server: StoreServer, client: ServerStore) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port)
    query = quote("INSERT INTO datamarket.rule_changes (change, accepted, actor) FORMAT JSONEachRow")
    connection.putrequest("POST", f"/?query={query}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for line in (
        b'{"change": "{}", "accepted": 1, "actor": "a"}\n',
        b'{"change": "{}", "accepted": 0, "actor": "b"}\n',
    ):
        connection.send(b"%x\r\n%s\r\n" % (len(line), line))
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 200
    assert client.rows("SELECT actor FROM datamarket.rule_changes ORDER BY actor") == [{"actor": "a"}, {"actor": "b"}]
