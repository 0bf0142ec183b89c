"""`dmm schema`: print or write the contract's JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer

from dmm.cli.app import app, console
from models.schema import contract_schema_json


@app.command()
def schema(
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
) -> None:
    """Export the JSON Schema of the dm.v1 events and the alert."""
    text = contract_schema_json()
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"[green]wrote[/] {output}")
