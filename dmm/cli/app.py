"""The `dmm` command-line application object and its shared console."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="dmm",
    help="Data Market Monitor: live surveillance of the national data market.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Data Market Monitor: live surveillance of the national data market."""
