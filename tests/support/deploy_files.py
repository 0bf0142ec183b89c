"""The deploy/ tests' readers of the deploy files: metric names, rule names, PromQL and SQL identifiers."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_PY = ROOT / "sinks" / "prometheus.py"
SCHEMA_SQL = ROOT / "sinks" / "clickhouse" / "schema.sql"
RULES_YML = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST_YML = DEPLOY / "prometheus" / "rules_test.yml"

# Series Prometheus itself adds to every scrape target.
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# What prometheus_client's default registry adds on Linux (the worker serves the default registry).
PROCESS_COLLECTOR = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
}


@lru_cache
def defined_metrics() -> dict[str, str]:
    """Metric name -> kind, parsed from the prometheus_client constructors in sinks/prometheus.py."""
    text = PROMETHEUS_PY.read_text(encoding="utf-8")
    found = re.findall(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text)
    assert found, "no metric constructors found in sinks/prometheus.py"
    return {name: kind for kind, name in found}


@lru_cache
def exposed_series_names() -> frozenset[str]:
    """Every series name the worker exposes (prometheus_client's naming rules)."""
    names: set[str] = set()
    for name, kind in defined_metrics().items():
        if kind == "Counter":
            base = name[: -len("_total")] if name.endswith("_total") else name
            names |= {base + "_total", base + "_created"}
        elif kind in ("Histogram", "Summary"):
            names |= {name + "_sum", name + "_count", name + "_created"}
            if kind == "Histogram":
                names.add(name + "_bucket")
        else:
            names.add(name)
    return frozenset(names)


@lru_cache
def recording_rules() -> tuple[str, ...]:
    """Recording rule names, in file order."""
    return tuple(re.findall(r"^\s*-\s*record:\s*(\S+)\s*$", RULES_YML.read_text(encoding="utf-8"), re.M))


@lru_cache
def alerting_rules() -> tuple[str, ...]:
    return tuple(re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", RULES_YML.read_text(encoding="utf-8"), re.M))


def rule_exprs() -> list[str]:
    """The `expr:` of every rule in rules.yml (plain, quoted, or folded/literal block)."""
    lines = RULES_YML.read_text(encoding="utf-8").splitlines()
    exprs: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value in (">", "|", ">-", "|-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            value = " ".join(block)
        exprs.append(value.strip("'\""))
    return exprs


PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric (series) names an expression selects. Not a full parser: enough for our dashboards and rules."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    s = re.sub(r"\{[^{}]*\}", " ", s)  # label matchers (may contain $vars)
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors / subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)  # Grafana variables
    s = re.sub(r"\boffset\s+-?\d+[smhdwy]\b", " ", s)
    s = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", s)  # numbers
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if re.match(r"\s*\(", s[m.end():]):
            continue  # function or aggregation
        if m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def known_promql_names() -> set[str]:
    return set(exposed_series_names()) | set(recording_rules()) | PROMETHEUS_BUILTIN | PROCESS_COLLECTOR


@lru_cache
def schema_tables() -> dict[str, frozenset[str]]:
    """Table -> columns, parsed from schema.sql."""
    text = SCHEMA_SQL.read_text(encoding="utf-8")
    tables: dict[str, frozenset[str]] = {}
    for name, body in re.findall(
        r"CREATE TABLE IF NOT EXISTS datamarket\.(\w+)\s*\((.*?)\)\s*ENGINE", text, re.S
    ):
        cols = re.findall(r"^\s*(\w+)\s+\S", body, re.M)
        tables[name] = frozenset(cols)
    assert tables, "no tables parsed from schema.sql"
    return tables


SQL_KEYWORDS = {
    "select", "from", "where", "and", "or", "not", "group", "by", "order", "as", "asc", "desc", "limit",
    "final", "union", "all", "in", "is", "null", "distinct", "on", "join", "left", "right", "inner", "outer",
    "having", "with", "case", "when", "then", "else", "end", "like", "between", "interval", "second",
    "minute", "hour", "day", "true", "false", "datamarket",
}


def sql_tables(sql: str) -> set[str]:
    return set(re.findall(r"\bdatamarket\.(\w+)", sql))


def sql_unknown_identifiers(sql: str) -> set[str]:
    """Identifiers in a dashboard query that are neither columns of its tables, aliases, functions nor keywords."""
    tables = sql_tables(sql)
    columns: set[str] = set()
    for t in tables:
        columns |= schema_tables().get(t, frozenset())
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)
    s = re.sub(r"\$\{[^}]*\}", " ", s)  # ${var:format}
    s = re.sub(r"\$__\w+", " ", s)  # macro names; their arguments stay and are checked
    s = re.sub(r"\$\w+", " ", s)  # $var
    s = re.sub(r"\bdatamarket\.\w+", " ", s)
    aliases = set(re.findall(r"\bAS\s+(\w+)", s, re.I))
    unknown = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_]\w*", s):
        word = m.group(0)
        if re.match(r"\s*\(", s[m.end():]):
            continue  # function call
        if word.lower() in SQL_KEYWORDS or word in aliases or word in columns:
            continue
        unknown.add(word)
    return unknown
