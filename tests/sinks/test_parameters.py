"""Values someone gave reach ClickHouse as query parameters, never as SQL text: hostile text (quotes,
backslashes, NUL, newlines, placeholders of its own) is stored and matched exactly as given, on every path: the
worker's store, a read of its own, `dmm store-serve` through clickhouse-connect, and the worker's SQL socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import SecretStr

from settings import ClickHouseSettings, SqlSettings
from sinks.clickhouse import console_queries as q
from sinks.clickhouse import queries
from sinks.clickhouse.http_server import serve
from sinks.clickhouse.records import MARKET_PROGRESS_SCHEMA, record_alert_action
from sinks.clickhouse.state import StateReader
from sinks.clickhouse.store import ChdbStore, Parameters, ServerStore, Write
from streams.sql_socket import SqlSocket

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)  # inside the tables' TTL

HOSTILE = [
    "it's",
    "back\\slash",
    "ends with a backslash\\",
    "\\'; DROP TABLE datamarket.alerts; --",
    "nul\x00inside",
    "new\nline\r\ttab",
    "{kind:String}",
    "\\N",
    "引号「」",
    "",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    opened = ChdbStore(tmp_path_factory.mktemp("parameters") / "chdb")
    opened.apply_schema()
    yield opened
    opened.close()


@pytest.mark.parametrize("text", HOSTILE)
def test_a_value_comes_back_as_given_on_the_store_and_on_a_read_of_its_own(store: ChdbStore, text: str) -> None:
    sql, given = "SELECT {text:String} AS text, length({text:String}) AS n", {"text": text}
    expected = [{"text": text, "n": len(text.encode())}]
    assert store.rows(sql, given) == expected
    assert store.reads(SqlSettings()).rows(sql, given) == expected
    assert store.arrow(sql, given).column("text").to_pylist() == [text]


def test_hostile_values_are_stored_and_found_exactly(store: ChdbStore) -> None:
    for n, text in enumerate(HOSTILE):
        store.command(
            "INSERT INTO datamarket.alerts (schema, alert_id, kind, severity, exchange_id, parties, event_ids, score, "
            "detected_at, dedup_key, message, message_zh) VALUES ('dm.alert.v1', {id:String}, 'price_outlier', "
            "'warning', {exchange:String}, [], [], 1.0, now64(3), {key:String}, '', '')",
            {"id": f"a{n}", "exchange": text, "key": f"key:{text}"},
        )
    for text in HOSTILE:
        assert q.alert_exists(store, f"key:{text}")
        if text:  # an empty filter is no filter
            listed = store.rows(*queries.alert_list("datamarket", exchange=text))
            assert [row["dedup_key"] for row in listed] == [f"key:{text}"]
    assert not q.alert_exists(store, "key:' OR '1'='1")
    assert len(store.rows("SELECT dedup_key FROM datamarket.alerts")) == len(HOSTILE)


def test_an_alert_action_with_hostile_text_is_listed_as_written(store: ChdbStore) -> None:
    note = "fixed: it's \\done\\\nnext line\x00"
    record_alert_action(store, "key:it's", "ack", "li'wei\\", note)
    row = store.rows(*queries.alert_list("datamarket", status="acked"))[0]
    assert (row["dedup_key"], row["actor"], row["note"]) == ("key:it's", "li'wei\\", note)


def test_a_log_named_with_hostile_text_keeps_its_own_progress(store: ChdbStore) -> None:
    reader = StateReader(store)
    for topic in ("dm.events", "dm.events'"):
        for topic_id in ("id\\", "id\\'"):
            assert reader.progress(topic, topic_id).marks == {}
    marks = store.rows(
        "SELECT src_topic, topic_id FROM datamarket.processed_batches WHERE src_topic LIKE 'dm.events%' "
        "ORDER BY src_topic, topic_id"
    )
    assert [(row["src_topic"], row["topic_id"]) for row in marks] == [
        ("dm.events", "id\\"),
        ("dm.events", "id\\'"),
        ("dm.events'", "id\\"),
        ("dm.events'", "id\\'"),
    ]


def test_a_spooled_write_with_a_hostile_token_lands_once(store: ChdbStore) -> None:
    row = {"src_topic": "spooled", "topic_id": "t", "src_partition": 0, "applied_offset": 1, "recorded_at": NOW}
    batch = pa.Table.from_pylist([row], schema=MARKET_PROGRESS_SCHEMA)
    for _ in range(2):  # a retried write: the same token
        staged = store.stage([Write("market_progress", batch, "token'\\\n\x00")])
        staged.write()
        staged.close()
    assert store.rows("SELECT count() AS n FROM datamarket.market_progress WHERE src_topic = 'spooled'") == [{"n": 1}]


def test_store_serve_binds_what_clickhouse_connect_sends(store: ChdbStore) -> None:
    served = serve(store, "default", "secret", port=0)
    client = ServerStore(ClickHouseSettings(url=f"http://127.0.0.1:{served.server_port}", password=SecretStr("secret")))
    try:
        sql = "SELECT {text:String} AS text"
        for text in HOSTILE:
            assert client.rows(sql, {"text": text}) == [{"text": text}]
            assert client.reads(SqlSettings()).rows(sql, {"text": text}) == [{"text": text}]
        assert client.arrow("SELECT {n:Int64} + 1 AS n", {"n": 41}).column("n").to_pylist() == [42]
    finally:
        client.close()
        served.shutdown()


def test_the_sql_socket_passes_parameters_on_and_refuses_any_that_are_not_text_or_integers() -> None:
    heard: list[tuple[str, str, Parameters | None]] = []

    async def answer(sql: str, fmt: str, parameters: Parameters | None) -> str:
        heard.append((sql, fmt, parameters))
        return "ok"

    async def ask(request: object) -> dict[str, object]:
        reader = asyncio.StreamReader()
        reader.feed_data(json.dumps(request).encode() + b"\n")
        reader.feed_eof()
        return await SqlSocket(Path("unused"), answer)._reply(reader)

    hostile = {"sql": "SELECT {x:String}", "format": "CSV", "parameters": {"x": "it's\\", "n": 3}}
    assert asyncio.run(ask(hostile)) == {"text": "ok"}
    assert asyncio.run(ask({"sql": "SELECT 1"})) == {"text": "ok"}
    assert heard == [
        ("SELECT {x:String}", "CSV", {"x": "it's\\", "n": 3}),
        ("SELECT 1", "PrettyCompactMonoBlock", None),
    ]
    for parameters in ({"x": [1]}, {"x": None}, {"x": True}, ["x"]):
        assert asyncio.run(ask({"sql": "SELECT 1", "parameters": parameters}))["refused"] is True
