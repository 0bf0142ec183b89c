"""`dmm sql`: one read-only query against the monitor's store (embedded or server)."""

from __future__ import annotations

import typer

from dmm.cli.app import app, err_console
from dmm.query import query_text
from settings import get_settings
from sinks.clickhouse import ReadOnlyViolation, StoreError, queries


@app.command()
def sql(
    statement: str = typer.Argument(..., help=f'e.g. "{queries.EXAMPLE}"'),
    fmt: str = typer.Option("PrettyCompactMonoBlock", "--format", "-f", help="any ClickHouse output format, e.g. JSONEachRow, CSV"),
) -> None:
    """Run one read-only SQL statement; works while the worker runs (it goes through the worker)."""
    try:
        text = query_text(get_settings(), statement, fmt)
    except (ReadOnlyViolation, StoreError, RuntimeError) as exc:
        err_console.print(f"[red]query failed:[/] {exc}")
        raise typer.Exit(2) from exc
    print(text, end="" if text.endswith("\n") or not text else "\n")
