"""`dmm sql`: one query against the monitor's store (embedded or server).

While a worker holds the embedded store, the query goes through its SQL socket (only the worker's OS user may
connect); otherwise the store is opened directly. Either way `sinks.clickhouse.sql_guard` says what may run
(one SELECT of the monitor's tables, or DESCRIBE of one) and ClickHouse's limits (DMM_SQL__*) stop it.
"""

from __future__ import annotations

import typer

from dmm.cli.app import app, err_console
from dmm.cli.terminal import markup_safe, printable
from dmm.query import query_text
from settings import get_settings
from sinks.clickhouse import ReadOnlyViolation, StoreError, queries
from sinks.clickhouse.sql_guard import OUTPUT_FORMATS


@app.command()
def sql(
    statement: str = typer.Argument(..., help=f'e.g. "{queries.EXAMPLE}"'),
    fmt: str = typer.Option(
        "PrettyCompactMonoBlock", "--format", "-f", help=f"output format: {', '.join(OUTPUT_FORMATS)}"
    ),
) -> None:
    """Run one query (a SELECT of the monitor's tables); works while the worker runs (it goes through it)."""
    try:
        text = query_text(get_settings(), statement, fmt)
    except ReadOnlyViolation as exc:
        err_console.print(f"[red]refused:[/] {markup_safe(exc)}")
        raise typer.Exit(2) from exc
    except (StoreError, RuntimeError) as exc:
        err_console.print(f"[red]query failed:[/] {markup_safe(exc)}")
        raise typer.Exit(2) from exc
    shown = printable(text, keep_lines=True)
    print(shown, end="" if shown.endswith("\n") or not shown else "\n")
