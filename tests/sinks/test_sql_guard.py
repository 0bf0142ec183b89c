"""The SQL guard, as an attacker writes statements to `dmm sql`: each attack of issue 25 refused with what is
allowed, and the queries the monitor's own tools and tests send admitted (tables qualified with the database)."""

from __future__ import annotations

import pytest

from sinks.clickhouse import queries
from sinks.clickhouse.sql_guard import OUTPUT_FORMATS, ReadOnlyViolation, guard_select, output_format

ATTACKS = {
    "writes a file": "SELECT 1 INTO OUTFILE 'x.txt'",
    "writes a file, formatted": "SELECT * FROM datamarket.alerts INTO OUTFILE '/tmp/x' FORMAT CSV",
    "reads /etc/shadow": "SELECT * FROM file('/etc/shadow', 'LineAsString')",
    "reads the environment": "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
    "reads a file as a scalar": "SELECT file('/etc/passwd') AS stolen",
    "SSRF": "SELECT * FROM url('http://169.254.169.254/latest/meta-data/', 'LineAsString')",
    "SSRF in a join": "SELECT * FROM datamarket.trades AS t JOIN url('http://internal/', 'CSV') AS u ON 1",
    "SSRF in a subquery": "SELECT * FROM (SELECT * FROM s3('http://bucket/x', 'CSV'))",
    "remote server": "SELECT * FROM remote('10.0.0.1', system.one)",
    "lifts readonly": "SELECT 1 SETTINGS readonly = 0",
    "lifts the time limit": "SELECT count() FROM datamarket.trades SETTINGS max_execution_time = 0",
    "slows down with a tiny block": "SELECT sleepEachRow(2.9) FROM numbers(10) SETTINGS max_block_size = 1",
    "settings in a union branch": "SELECT 1 UNION ALL (SELECT 2 SETTINGS max_threads = 64)",
    "two statements": "SELECT 1; DROP TABLE datamarket.alerts",
    "a write": "INSERT INTO datamarket.alert_actions (dedup_key, action, actor) VALUES ('k', 'resolve', 'x')",
    "DDL": "DROP TABLE datamarket.alerts",
    "SET": "SET readonly = 0",
    "system table": "SELECT * FROM system.tables",
    "system table, quoted": "SELECT * FROM `system`.`processes`",
    "system table in a scalar subquery": "SELECT (SELECT count() FROM system.users) AS n",
    "system table through IN": "SELECT 1 IN system.one",
    "another database": "SELECT * FROM default.secrets",
    "three-part name": "SELECT * FROM a.b.c",
    "merge() over system": "SELECT * FROM merge('system', '.*')",
    "chdb's python()": "SELECT * FROM python('settings')",
    "numbers()": "SELECT * FROM numbers(1000000000)",
    "values()": "SELECT * FROM values('a Int8', 1)",
    "a dictionary": "SELECT dictGet('secrets', 'value', 1)",
    "a Join table by name": "SELECT joinGet('system.x', 'v', 1)",
    "the server's configuration": "SELECT getServerSetting('path')",
    "SHOW": "SHOW TABLES",
    "EXPLAIN": "EXPLAIN SELECT 1",
    "DESCRIBE a table function": "DESCRIBE TABLE file('/etc/shadow')",
    "DESCRIBE a system table": "DESCRIBE system.users",
    "a FORMAT clause": "SELECT 1 FORMAT JSON",
    "nothing": "  ",
    "a parser bomb": "SELECT " + "(" * 5000 + "1" + ")" * 5000,
}


@pytest.mark.parametrize("sql", ATTACKS.values(), ids=ATTACKS.keys())
def test_every_attack_is_refused_saying_what_is_allowed(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation, match="allowed: one SELECT"):
        guard_select(sql, "datamarket")


ADMITTED = {
    "unqualified": ("SELECT count() FROM trades", "SELECT count() FROM datamarket.trades"),
    "qualified, FINAL": ("SELECT * FROM datamarket.trades FINAL", "SELECT * FROM datamarket.trades FINAL"),
    "a CTE keeps its name": (
        "WITH recent AS (SELECT * FROM alerts) SELECT count() FROM recent",
        "WITH recent AS (SELECT * FROM datamarket.alerts) SELECT count() FROM recent",
    ),
    "union": (
        "SELECT 1 AS n UNION ALL SELECT count() FROM alerts",
        "SELECT 1 AS n UNION ALL SELECT count() FROM datamarket.alerts",
    ),
    "subquery in IN": (
        "SELECT * FROM trades WHERE event_id IN (SELECT event_id FROM usage)",
        "SELECT * FROM datamarket.trades WHERE event_id IN (SELECT event_id FROM datamarket.usage)",
    ),
    "ARRAY JOIN": (
        "SELECT p FROM alerts ARRAY JOIN parties AS p",
        "SELECT p FROM datamarket.alerts ARRAY JOIN parties AS p",
    ),
    "DESCRIBE": ("DESCRIBE trades", "DESCRIBE datamarket.trades"),
    "the word SETTINGS in a string": ("SELECT 'x SETTINGS y' AS s", "SELECT 'x SETTINGS y' AS s"),
    "formatDateTime is not FORMAT": (
        "SELECT formatDateTime(max(occurred_at), '%Y') AS y FROM trades",
        "SELECT formatDateTime(max(occurred_at), '%Y') AS y FROM datamarket.trades",
    ),
    "a trailing semicolon": ("SELECT 1;", "SELECT 1"),
}


@pytest.mark.parametrize(("sql", "runs"), ADMITTED.values(), ids=ADMITTED.keys())
def test_queries_of_the_monitors_tables_run_as_the_guard_read_them(sql: str, runs: str) -> None:
    assert guard_select(sql, "datamarket") == runs


def test_the_cli_s_own_questions_pass_the_guard() -> None:
    for sql in (
        queries.EXAMPLE,
        queries.alert_list("datamarket", kind="wash_trading", status="open", limit=5).sql,
        queries.alert_exists("datamarket", "k' OR '1'='1").sql,
        queries.alerts_in_detection_order("datamarket"),
        queries.evidence_stored_at("datamarket", ["SHDEX-T-1"]).sql,
        queries.ingest_span("datamarket"),
    ):
        guard_select(sql, "datamarket")


def test_the_database_is_the_configured_one() -> None:
    assert guard_select("SELECT count() FROM trades", "dm_test") == "SELECT count() FROM dm_test.trades"
    with pytest.raises(ReadOnlyViolation, match="not a table of dm_test"):
        guard_select("SELECT count() FROM datamarket.trades", "dm_test")


def test_the_output_format_comes_from_the_list() -> None:
    assert output_format("JSONEachRow") == "JSONEachRow"
    for refused in ("Parquet", "Native", "JSONEachRow INTO OUTFILE 'x'", ""):
        with pytest.raises(ReadOnlyViolation, match="use one of"):
            output_format(refused)
    assert "PrettyCompactMonoBlock" in OUTPUT_FORMATS
