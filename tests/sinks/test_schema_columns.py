"""Each table's columns are spelled twice: in the DDL (`schema.sql`) and as the Arrow schema the worker inserts.
They must agree column by column (names, order, types ClickHouse converts without loss), for every table."""

from __future__ import annotations

import re
from importlib.resources import files

import pyarrow as pa
import pytest

from sinks.clickhouse.batches import SCHEMAS
from sinks.clickhouse.records import ALERT_ACTION_SCHEMA, MARKET_PROGRESS_SCHEMA, RULE_CHANGE_SCHEMA
from sinks.clickhouse.windows import MARKET_1D, MARKET_1H, MARKET_1M

ARROW: dict[str, pa.Schema] = {
    **SCHEMAS,
    "market_1m": MARKET_1M,
    "market_1h": MARKET_1H,
    "market_1d": MARKET_1D,
    "alert_actions": ALERT_ACTION_SCHEMA,
    "rule_changes": RULE_CHANGE_SCHEMA,
    "market_progress": MARKET_PROGRESS_SCHEMA,
}

SCALARS: dict[str, tuple[pa.DataType, ...]] = {
    "String": (pa.string(), pa.binary()),
    "UInt8": (pa.uint8(),),
    "UInt32": (pa.uint32(),),
    "UInt64": (pa.uint64(),),
    "Int32": (pa.int32(),),
    "Int64": (pa.int64(),),
    "Float64": (pa.float64(),),
    "Date": (pa.date32(),),
    "DateTime('UTC')": (pa.timestamp("s", tz="UTC"),),
    "DateTime64(3, 'UTC')": (pa.timestamp("ms", tz="UTC"),),
    "DateTime64(6, 'UTC')": (pa.timestamp("us", tz="UTC"),),
    "Decimal(38, 2)": (pa.decimal128(38, 2),),
}


def ddl_text() -> str:
    text = files("sinks").joinpath("clickhouse", "schema.sql").read_text(encoding="utf-8")
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def ddl_columns(text: str) -> dict[str, list[tuple[str, str]]]:
    """Per CREATE TABLE, its columns as (name, ClickHouse type), in order (indexes and comments left out)."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for found in re.finditer(r"CREATE TABLE IF NOT EXISTS datamarket\.(\w+)\s*\(", text):
        body, depth = [], 1
        for char in text[found.end() :]:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
            body.append(char)
        columns = []
        for entry in _split_top_level("".join(body)):
            entry = re.sub(r"\s+COMMENT\s+'(?:[^'\\]|\\.)*'$", "", entry.strip())
            if entry and not entry.startswith("INDEX "):
                name, kind = entry.split(None, 1)
                columns.append((name, kind.strip()))
        tables[found.group(1)] = columns
    return tables


def _split_top_level(body: str) -> list[str]:
    parts, current, depth, quoted = [], [], 0, False
    for char in body:
        quoted ^= char == "'"
        if not quoted:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == "," and depth == 0:
                parts.append("".join(current))
                current = []
                continue
        current.append(char)
    return [*parts, "".join(current)]


def arrow_types(kind: str) -> tuple[pa.DataType, ...]:
    """The Arrow types an insert may give a column of ClickHouse type `kind` (Nullable and LowCardinality are
    the same Arrow type: every Arrow field may hold nulls, and dictionary encoding is ClickHouse's business)."""
    wrapped = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", kind)
    if wrapped:
        return arrow_types(wrapped.group(1))
    array = re.fullmatch(r"Array\((.*)\)", kind)
    if array:
        return tuple(pa.list_(item) for item in arrow_types(array.group(1)))
    return SCALARS[kind]


def disagreements(ddl: dict[str, list[tuple[str, str]]], arrow: dict[str, pa.Schema]) -> list[str]:
    found = [f"{table}: in schema.sql only" for table in sorted(ddl.keys() - arrow.keys())]
    found += [f"{table}: Arrow schema only" for table in sorted(arrow.keys() - ddl.keys())]
    for table in sorted(ddl.keys() & arrow.keys()):
        columns, schema = ddl[table], arrow[table]
        if [name for name, _ in columns] != schema.names:
            found.append(f"{table}: columns {[name for name, _ in columns]} in schema.sql, {schema.names} in Arrow")
            continue
        for (name, kind), arrow_field in zip(columns, schema, strict=True):
            if arrow_field.type not in arrow_types(kind):
                found.append(f"{table}.{name}: {kind} in schema.sql, {arrow_field.type} in Arrow")
    return found


WRITTEN_BY_SQL_ONLY = {  # INSERT ... SELECT, never an Arrow batch
    "first_seen",  # from the event tables (sinks/clickhouse/first_seen.py)
    "console_1d",  # from market_1d (sinks/clickhouse/windows.py)
    "public_1d",  # from trades and usage (sinks/clickhouse/windows.py)
    "public_1mo",  # from public_1d (sinks/clickhouse/windows.py)
}


def test_every_table_has_the_same_columns_in_the_ddl_and_in_arrow() -> None:
    ddl = ddl_columns(ddl_text())
    assert len(ddl) == 18, sorted(ddl)
    assert ddl.keys() >= WRITTEN_BY_SQL_ONLY
    assert disagreements({t: c for t, c in ddl.items() if t not in WRITTEN_BY_SQL_ONLY}, ARROW) == []


def test_columns_added_to_old_stores_are_the_tables_own() -> None:
    """`ALTER TABLE ... ADD COLUMN` brings a store created before to the table as created now: same type, and
    after the column it follows in the CREATE."""
    text = ddl_text()
    ddl = ddl_columns(text)
    added = re.findall(r"ALTER TABLE datamarket\.(\w+) ADD COLUMN IF NOT EXISTS (\w+) (.+?)(?: AFTER (\w+))?[,;]", text)
    assert len(added) == 13
    for table, name, kind, after in added:
        names = [column for column, _ in ddl[table]]
        assert (name, kind.strip()) in ddl[table], f"{table}.{name}"
        position = names.index(name)
        assert names[position - 1] == after if after else position == len(names) - 1, f"{table}.{name}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda ddl, arrow: ddl["trades"].append(("fee", "Decimal(38, 2)")), "trades: columns"),
        (lambda ddl, arrow: arrow.update(usage=arrow["usage"].append(pa.field("fee", pa.uint64()))), "usage: columns"),
        (lambda ddl, arrow: ddl["alerts"].reverse(), "alerts: columns"),
        (lambda ddl, arrow: arrow.update(market_1m=arrow["market_1m"].set(7, pa.field("trades", pa.int32()))),
         "market_1m.trades: UInt64 in schema.sql, int32 in Arrow"),
        (lambda ddl, arrow: ddl.update(fees=[("fee", "UInt64")]), "fees: in schema.sql only"),
        (lambda ddl, arrow: arrow.pop("rule_changes"), "rule_changes: in schema.sql only"),
    ],
)
def test_a_column_on_one_side_only_is_found(change, expected) -> None:
    ddl, arrow = ddl_columns(ddl_text()), dict(ARROW)
    change(ddl, arrow)
    assert any(found.startswith(expected) for found in disagreements(ddl, arrow)), disagreements(ddl, arrow)
