"""deploy/clickhouse: the package's schema needs only what the worker is granted, and the grants are least-privilege."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tests.support.deploy_files import DEPLOY, SCHEMA_SQL

CH = DEPLOY / "clickhouse"
GRANTS = CH / "grants.sql"


def split_sql(text: str) -> list[str]:
    """Statements of a SQL file: comments dropped, split on ';' outside string literals."""
    statements, buf, quote = [], [], None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            buf.append(c)
            if c == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
            buf.append(c)
        elif text.startswith("--", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif c == ";":
            statements.append(" ".join("".join(buf).split()))
            buf = []
        else:
            buf.append(c)
        i += 1
    assert quote is None, "unterminated string literal"
    assert not "".join(buf).strip(), f"trailing text without ';': {''.join(buf).strip()!r}"
    return [s for s in statements if s]


def test_schema_needs_only_create_database_create_table_and_granted_column_additions():
    # The worker applies schema.sql with the dmm_worker grants; anything else
    # (other ALTERs, materialized views, dictionaries...) would need grants.sql updated.
    for stmt in split_sql(SCHEMA_SQL.read_text(encoding="utf-8")):
        added = re.match(r"ALTER TABLE (datamarket\.\w+) ADD (COLUMN|INDEX) IF NOT EXISTS ", stmt)
        if added:
            table, privileges = added.group(1), {f"ALTER ADD {added.group(2)}"}
            if re.search(r"\bMODIFY ORDER BY\b", stmt):
                privileges.add("ALTER ORDER BY")
            granted = {p.removesuffix(f" ON {table}") for p in _privileges("dmm_writer") if p.endswith(f" ON {table}")}
            assert privileges <= granted, stmt
            continue
        assert re.match(
            r"CREATE (DATABASE IF NOT EXISTS datamarket$|TABLE IF NOT EXISTS datamarket\.\w+ )", stmt
        ), f"schema.sql statement needs more than CREATE DATABASE/CREATE TABLE on datamarket: {stmt[:80]}"


def statements():
    stmts = split_sql(GRANTS.read_text(encoding="utf-8"))
    assert len(stmts) >= 8
    return stmts


def test_grants_parse_as_statements_on_datamarket_only():
    allowed = re.compile(
        r"^(CREATE DATABASE IF NOT EXISTS datamarket$"
        r"|(CREATE ROLE IF NOT EXISTS|CREATE USER IF NOT EXISTS|CREATE SETTINGS PROFILE IF NOT EXISTS|GRANT) )"
    )
    for stmt in statements():
        assert allowed.match(stmt), f"unexpected statement kind: {stmt[:60]}"
        if stmt.startswith("CREATE DATABASE"):
            continue
        for obj in re.findall(r"\bON\s+(\S+)", stmt):
            assert obj == "datamarket.*" or obj.startswith("datamarket."), f"grant on {obj}: {stmt}"
        assert "*.*" not in stmt
        assert not re.search(r"\bGRANT\s+ALL\b", stmt, re.I)
        assert "WITH GRANT OPTION" not in stmt.upper()


@pytest.mark.integration
def test_grants_are_valid_clickhouse_sql():
    chdb = pytest.importorskip("chdb")
    for stmt in statements():
        literal = stmt.replace("\\", "\\\\").replace("'", "\\'")
        try:
            chdb.query(f"SELECT formatQuery('{literal}')", "TSVRaw")
        except Exception as exc:  # name the statement
            pytest.fail(f"ClickHouse cannot parse {stmt!r}: {exc}")


def _privileges(role: str) -> set[str]:
    privs: set[str] = set()
    for stmt in statements():
        m = re.match(r"GRANT (.+) ON (\S+) TO (\w+)$", stmt)
        if m and m.group(3) == role:
            scope = "" if m.group(2) == "datamarket.*" else f" ON {m.group(2)}"
            privs |= {p.strip() + scope for p in m.group(1).split(",")}
    return privs


def test_worker_gets_exactly_what_it_needs():
    assert _privileges("dmm_writer") == {
        "CREATE DATABASE", "CREATE TABLE", "INSERT", "SELECT",
        *(f"ALTER ADD INDEX ON datamarket.{table}" for table in ("listings", "trades", "usage", "heartbeats")),
        *(
            f"{privilege} ON datamarket.{table}"
            for table in ("rejected_events", "duplicate_events")
            for privilege in ("ALTER ADD COLUMN", "ALTER ORDER BY")
        ),
        *(
            f"ALTER ADD COLUMN ON datamarket.{table}"
            for table in (
                "listings", "trades", "usage", "heartbeats", "rule_changes",
                "market_1m", "market_1h", "market_1d", "console_1d",
            )
        ),
    }
    assert "GRANT dmm_writer TO dmm_worker" in statements()


def test_reader_is_read_only():
    assert _privileges("dmm_read") == {"SELECT"}
    assert "GRANT dmm_read TO dmm_reader" in statements()
    profile = next(s for s in statements() if s.startswith("CREATE SETTINGS PROFILE IF NOT EXISTS dmm_readonly"))
    assert "readonly = 1" in profile
    reader = next(s for s in statements() if s.startswith("CREATE USER IF NOT EXISTS dmm_reader"))
    assert "SETTINGS PROFILE 'dmm_readonly'" in reader


def test_no_password_in_grants():
    for stmt in statements():
        for secret in re.findall(r"\bBY\s+'([^']*)'", stmt):
            assert re.fullmatch(r"__[A-Z0-9_]+__", secret), f"literal secret in grants.sql: {stmt}"


@pytest.mark.integration
def test_initdb_script_is_valid_bash_and_substitutes_every_placeholder():
    script = CH / "initdb" / "10-dmm-users.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    for placeholder in set(re.findall(r"__[A-Z0-9_]+__", GRANTS.read_text(encoding="utf-8"))):
        assert placeholder in text, f"{placeholder} is never substituted"


def test_tls_snippet_is_xml_with_https_8443():
    root = ET.parse(CH / "tls.xml").getroot()
    assert root.tag == "clickhouse"
    assert root.findtext("https_port") == "8443"
    server = root.find("openSSL/server")
    assert server is not None
    assert server.findtext("certificateFile").startswith("/etc/clickhouse-server/certs/")
    assert server.findtext("privateKeyFile").startswith("/etc/clickhouse-server/certs/")
