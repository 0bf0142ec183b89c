"""deploy/grafana: dashboards are valid and only query what exists.

Prometheus expressions may use only the worker's metrics (sinks/prometheus.py)
and the recording rules of rules.yml; ClickHouse panels only tables and
columns of schema.sql, and each query must run on the embedded ClickHouse
(chdb) against that schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sinks.clickhouse.first_seen import first_seen_rows
from tests.support.deploy_files import (
    DEPLOY,
    SCHEMA_SQL,
    defined_metrics,
    known_promql_names,
    promql_metric_names,
    recording_rules,
    rule_exprs,
    schema_tables,
    sql_tables,
    sql_unknown_identifiers,
)

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UIDS = {"prometheus": "prometheus", "grafana-clickhouse-datasource": "clickhouse"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows


def targets(kind: str):
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p.get("targets", []):
                if t.get("datasource", p.get("datasource", {})).get("type") == kind:
                    yield path.name, p["title"], t


def test_both_dashboards_exist():
    titles = {load(p)["title"] for p in DASHBOARDS}
    assert {"Data market — regulator view", "Monitor — pipeline health"} <= titles


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid(path):
    d = load(path)
    assert d["uid"] and d["title"] and d["panels"]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            ds = t.get("datasource") or p.get("datasource")
            assert DATASOURCE_UIDS.get(ds["type"]) == ds["uid"], f"{p['title']}: unknown datasource {ds}"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24


def test_datasources_are_provisioned():
    text = (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text(encoding="utf-8")
    for type_, uid in DATASOURCE_UIDS.items():
        assert re.search(rf"uid: {uid}\s*\n\s*type: {re.escape(type_)}\b", text), (type_, uid)
    assert "username: dmm_reader" in text


def test_prometheus_exprs_use_known_metrics():
    known = known_promql_names()
    seen = 0
    for name, title, t in targets("prometheus"):
        seen += 1
        unknown = promql_metric_names(t["expr"]) - known
        assert not unknown, f"{name} / {title}: {t['expr']!r} uses unknown metrics {sorted(unknown)}"
    assert seen >= 20


def test_pipeline_dashboard_covers_every_worker_metric():
    used: set[str] = set()
    for _, _, t in targets("prometheus"):
        used |= promql_metric_names(t["expr"])
    # expand recording rules into the metrics they are computed from
    records = dict(zip(recording_rules(), rule_exprs()[: len(recording_rules())], strict=True))
    for name in list(used):
        if name in records:
            used |= promql_metric_names(records[name])
    for metric, kind in defined_metrics().items():
        base = metric.removesuffix("_total")
        assert any(u == base or u.startswith(base + "_") for u in used), f"no panel shows {metric} ({kind})"


def ch_queries():
    return [(f"{name} / {title}", t["rawSql"]) for name, title, t in targets("grafana-clickhouse-datasource")]


def test_clickhouse_panels_reference_existing_tables_and_columns():
    tables = schema_tables()
    queries = ch_queries()
    assert len(queries) >= 10
    for where, sql in queries:
        used = sql_tables(sql)
        assert used, f"{where}: no datamarket table"
        assert used <= set(tables), f"{where}: unknown tables {used - set(tables)}"
        unknown = sql_unknown_identifiers(sql)
        assert not unknown, f"{where}: unknown columns/identifiers {sorted(unknown)}"


def test_regulator_dashboard_reads_clickhouse():
    reg = next(load(p) for p in DASHBOARDS if load(p)["uid"] == "dmm-regulator")
    sqls = " ".join(t["rawSql"] for p in panels(reg) for t in p.get("targets", []) if "rawSql" in t)
    for needed in ("market_1m", "venue", "high_quality", "sector", "datamarket.trades", "buyer_id", "seller_id"):
        assert needed in sqls


def expand_macros(sql: str, exchange: str | None) -> str:
    """What the ClickHouse plugin sends, for a fixed range and interval."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 r"\1 >= toDateTime(1767225600) AND \1 <= toDateTime(1767312000)", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)", sql)
    if exchange is None:
        sql = re.sub(r"\$__conditionalAll\(([^$]*?\(\$\{exchange:singlequote\}\)), \$exchange\)", "1=1", sql)
    else:
        sql = re.sub(r"\$__conditionalAll\(([^$]*?)\(\$\{exchange:singlequote\}\), \$exchange\)",
                     rf"\1('{exchange}')", sql)
    assert "$" not in sql, sql
    return sql


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory):
    session_mod = pytest.importorskip("chdb.session")
    s = session_mod.Session(str(tmp_path_factory.mktemp("chdb")))
    for stmt in SCHEMA_SQL.read_text(encoding="utf-8").split(";"):
        body = "\n".join(line for line in stmt.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            s.query(body)
    s.query(
        "INSERT INTO datamarket.trades (exchange_id, event_id, occurred_at, trade_id, product_id, buyer_id, "
        "seller_id, price, quantity, amount, currency, venue, purpose, sector, category, source, high_quality, "
        "late, src_partition, src_offset, ingested_at) VALUES "
        "('SZDE','e1','2026-01-01 10:00:00','t1','P1','B1','S1',10,2,20,'CNY','on_exchange','commercial',"
        "'finance','dataset','public',1,0,0,1,now())"
    )
    s.query(
        "INSERT INTO datamarket.market_1m (window_start, exchange_id, sector, category, source, venue, high_quality, "
        "trades, traded_amount, quantity, data_bytes, buyers, sellers, usage_calls, usage_bytes, new_listings, "
        "updated_at) VALUES ('2026-01-01 10:00:00','SZDE','finance','dataset','public','on_exchange',1,"
        "1,20,2,0,1,1,0,0,0,now()), ('2026-01-01 10:00:00','BJDE','finance','dataset','public','on_exchange',0,"
        "1,60,2,0,1,1,0,0,0,now())"
    )
    s.query(  # a product listed three times on two exchanges: one new product, not three listings
        "INSERT INTO datamarket.listings (exchange_id, event_id, occurred_at, action, product_id, seller_id, "
        "high_quality, ingested_at) VALUES ('SZDE','l1','2026-01-01 09:00:00','list','P1','S1',0,now()), "
        "('BJDE','l2','2026-01-01 11:00:00','list','P1','S1',0,now()), "
        "('SZDE','l3','2026-01-01 12:00:00','list','P1','S1',0,now()), "
        "('SZDE','l4','2025-12-01 00:00:00','list','P0','S9',0,now())"
    )
    s.query(f"INSERT INTO datamarket.first_seen SELECT kind, id, exchange_id, min(first), max(fed_through) "
            f"FROM ({first_seen_rows('datamarket', '1')}) GROUP BY kind, id, exchange_id")
    yield s
    s.close()


@pytest.mark.integration
@pytest.mark.parametrize("exchange", [None, "SZDE"], ids=["all", "one-exchange"])
def test_clickhouse_panels_run_on_the_schema(chdb_session, exchange):
    for where, sql in ch_queries():
        try:
            chdb_session.query(expand_macros(sql, exchange), "CSV")
        except Exception as exc:  # report which panel
            pytest.fail(f"{where}: {exc}\n{expand_macros(sql, exchange)}")
    var = next(v for p in DASHBOARDS for v in load(p)["templating"]["list"] if v["name"] == "exchange")
    assert str(chdb_session.query(var["query"], "CSV")).split() == ['"BJDE"', '"SZDE"']
    # the numbers come out right, not just the syntax
    stat = dict(ch_queries())
    amount = next(sql for where, sql in stat.items() if where.endswith("/ Traded amount / 成交额"))
    share = next(sql for where, sql in stat.items() if "High-quality dataset share of traded value / " in where)
    expect_amount, expect_share = ("80", "0.25") if exchange is None else ("20", "1")
    assert str(chdb_session.query(expand_macros(amount, exchange), "CSV")).strip() == expect_amount
    assert str(chdb_session.query(expand_macros(share, exchange), "CSV")).strip() == expect_share
    # distinct products first listed in the range (P1, however often listed), parties first seen in it (B1, S1)
    products = next(sql for where, sql in stat.items() if "/ New products / 新上架产品" in where)
    parties = next(sql for where, sql in stat.items() if "/ New participants (all exchanges) / " in where)
    assert str(chdb_session.query(expand_macros(products, exchange), "CSV")).strip() == "1"
    summed = f"SELECT sum(new_participants) FROM ({expand_macros(parties, exchange)})"
    assert str(chdb_session.query(summed, "CSV")).strip() == "2"


def test_the_checkers_catch_mistakes():
    assert promql_metric_names('sum by (kind) (rate(dmm_bogus_total{kind="x", i=~"$instance"}[$__rate_interval]))') == {
        "dmm_bogus_total"
    }
    assert promql_metric_names("a:b:rate5m > 1e3 and on (instance) up offset 5m") == {"a:b:rate5m", "up"}
    assert sql_unknown_identifiers(
        "SELECT $__timeInterval(window_start) AS time, sum(traded_amnt) FROM datamarket.market_1m FINAL "
        "WHERE $__timeFilter(window_start) GROUP BY time"
    ) == {"traded_amnt"}
    assert sql_unknown_identifiers("SELECT buyer_id FROM datamarket.market_1m") == {"buyer_id"}
