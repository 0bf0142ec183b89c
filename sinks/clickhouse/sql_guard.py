"""What an ad-hoc statement (`dmm sql`, a read-only request to `dmm store-serve`) may be: one query of the
monitor's own tables, read by a real SQL parser (sqlglot's ClickHouse dialect), not by a regular expression.

Admitted: one SELECT (WITH, UNION / INTERSECT / EXCEPT of SELECTs, subqueries, joins, ARRAY JOIN), whose every
table is in the monitor's database (an unqualified name is qualified with it; a CTE's name stays as it is), and
`DESCRIBE` of one such table (what `system.columns` would tell, which is refused). Refused: any other statement
(SHOW, EXISTS, EXPLAIN, SET, INSERT, DDL...), more than one statement, `INTO OUTFILE`, a `SETTINGS` clause
(the monitor sets the limits), a `FORMAT` clause (the caller picks one of `OUTPUT_FORMATS`), any function in
FROM position (file, url, s3, remote, numbers, python, merge, view, values...), `IN table_name`, and the scalar
functions that reach past the tables (`file`, dictionaries, Join tables, the server's configuration).

ClickHouse runs the statement as the guard read it, written back from its syntax tree: the guard and ClickHouse
can never disagree about what it says (a comment or quoting trick that one parser reads otherwise than the
other). The cost: an expression without an alias may come back under its canonical spelling (`if(a, b, c)` as
`CASE WHEN ...`); an alias names the column as you choose.

The guard is one of three layers: each read also runs on a connection of its own with `readonly = 1` and the
limits of `settings.SqlSettings`. Verified with chdb 4.4: `readonly = 1` refuses writes, DDL, settings changes
and file()/url() in FROM, but *not* `INTO OUTFILE` (it wrote the file), the scalar `file()` (it read any file),
`merge()`, `view()`, `values()` or reading `system.*`; only the parser stops those.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

ALLOWED = (
    "one SELECT (WITH / UNION of SELECTs allowed) of {database} tables, or DESCRIBE {database}.table; "
    "no SETTINGS, FORMAT, INTO OUTFILE or table functions"
)
MAX_SQL_CHARS = 64 * 1024
# Text formats the caller may ask for (a FORMAT clause in the statement is refused).
OUTPUT_FORMATS = (
    "PrettyCompactMonoBlock",
    "PrettyCompact",
    "Pretty",
    "PrettySpace",
    "Vertical",
    "Markdown",
    "TabSeparated",
    "TabSeparatedWithNames",
    "TSV",
    "TSVWithNames",
    "CSV",
    "CSVWithNames",
    "JSON",
    "JSONCompact",
    "JSONEachRow",
    "JSONCompactEachRow",
)
# Scalar functions that readonly = 1 lets through and that read beyond the monitor's tables: files, dictionaries
# (external sources), Join-engine tables named by a string, the server's configuration.
REFUSED_FUNCTIONS = re.compile(
    r"^(file|dict(get|has|isin)\w*|joinget\w*|getserversetting|getmergetreesetting|getmacro)$", re.IGNORECASE
)


class ReadOnlyViolation(ValueError):
    """An ad-hoc statement the guard refuses; the message says what is allowed."""


def output_format(fmt: str) -> str:
    """`fmt` if it is one the caller may ask for, else refused with the list."""
    if fmt not in OUTPUT_FORMATS:
        raise ReadOnlyViolation(f"output format {fmt!r} is not offered; use one of: {', '.join(OUTPUT_FORMATS)}")
    return fmt


def guard_select(sql: str, database: str) -> str:
    """The statement as ClickHouse will run it (tables qualified, written back from the parsed tree), or
    `ReadOnlyViolation` saying why not and what is allowed."""
    allowed = ALLOWED.format(database=database)
    if len(sql) > MAX_SQL_CHARS:
        raise ReadOnlyViolation(f"the statement is longer than {MAX_SQL_CHARS} characters; allowed: {allowed}")
    try:
        statements = [s for s in sqlglot.parse(sql, read="clickhouse") if s is not None]
    except (ParseError, TokenError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadOnlyViolation(f"cannot read the statement ({reason}); allowed: {allowed}") from exc
    if len(statements) != 1:
        raise ReadOnlyViolation(f"{len(statements)} statements given; allowed: {allowed}")
    (statement,) = statements
    if isinstance(statement, exp.Describe):
        _check_described(statement, database, allowed)
    elif isinstance(statement, exp.Query):
        _check_query(statement, database, allowed)
    else:
        kind = statement.key.upper() if not isinstance(statement, exp.Command) else str(statement.this).upper()
        raise ReadOnlyViolation(f"{kind} is not a query; allowed: {allowed}")
    return statement.sql(dialect="clickhouse")


def _check_described(statement: exp.Describe, database: str, allowed: str) -> None:
    target = statement.this
    if not isinstance(target, exp.Table) or not isinstance(target.this, exp.Identifier):
        raise ReadOnlyViolation(f"DESCRIBE names one table; allowed: {allowed}")
    _check_table(target, database, allowed)


def _check_query(statement: exp.Query, database: str, allowed: str) -> None:
    for node in statement.walk():
        if isinstance(node, exp.Into):
            raise ReadOnlyViolation(f"INTO is not allowed; allowed: {allowed}")
        clauses = node.args if isinstance(node, exp.Query) else {}  # formatDateTime has a `format` too
        if clauses.get("settings"):
            raise ReadOnlyViolation(f"a SETTINGS clause is not allowed (the monitor sets limits); allowed: {allowed}")
        if clauses.get("format"):
            raise ReadOnlyViolation(
                f"a FORMAT clause is not allowed: ask for a format ({', '.join(OUTPUT_FORMATS)}); allowed: {allowed}"
            )
        if isinstance(node, exp.From | exp.Join):
            _check_source(node, allowed)
        elif isinstance(node, exp.Table):
            _check_table(node, database, allowed)
        elif isinstance(node, exp.In) and node.args.get("field") is not None:
            raise ReadOnlyViolation(f"IN names a table: write IN (SELECT ... FROM {database}.t); allowed: {allowed}")
        elif isinstance(node, exp.Func) and REFUSED_FUNCTIONS.match(_function_name(node)):
            raise ReadOnlyViolation(
                f"function {_function_name(node)}() reads beyond the monitor's tables; allowed: {allowed}"
            )
        elif isinstance(node, exp.Command):
            raise ReadOnlyViolation(f"{str(node.this).upper()} is not a query; allowed: {allowed}")


def _check_source(clause: exp.From | exp.Join, allowed: str) -> None:
    """FROM and JOIN read a table or a subquery (ARRAY JOIN an expression): never a function or VALUES."""
    source = clause.this
    if isinstance(clause, exp.Join) and clause.args.get("kind") == "ARRAY":
        return
    if isinstance(source, exp.Final):
        source = source.this
    if isinstance(source, exp.Subquery):
        return
    if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
        name = _function_name(source.this) if isinstance(source, exp.Table) else source.key
        raise ReadOnlyViolation(f"reading from {name}() is not allowed (no table functions); allowed: {allowed}")


def _check_table(table: exp.Table, database: str, allowed: str) -> None:
    """A table of `database`; an unqualified one (not a CTE's name) is qualified so that it cannot resolve
    anywhere else."""
    if not isinstance(table.this, exp.Identifier):
        raise ReadOnlyViolation(f"reading from {_function_name(table.this)}() is not allowed; allowed: {allowed}")
    if table.args.get("catalog") is not None:
        raise ReadOnlyViolation(f"{table.sql(dialect='clickhouse')} is not a table of {database}; allowed: {allowed}")
    if not table.db:
        if not _names_a_cte(table):
            table.set("db", exp.to_identifier(database))
        return
    if table.db != database:
        raise ReadOnlyViolation(
            f"{table.sql(dialect='clickhouse')} is not a table of {database} (system and other databases are "
            f"not offered); allowed: {allowed}"
        )


def _names_a_cte(table: exp.Table) -> bool:
    """Does an enclosing query define a CTE of this name (what ClickHouse reads instead of a table)?"""
    scope = table.parent
    while scope is not None:
        if isinstance(scope, exp.Query) and any(cte.alias == table.name for cte in scope.ctes):
            return True
        scope = scope.parent
    return False


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    return node.sql_name() if isinstance(node, exp.Func) else node.key
