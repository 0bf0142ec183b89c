"""`dmm replay FILE`: publish a JSONL file to dm.events, one message per line, byte for byte.

Lines are not validated: garbage and blank lines are published too, so a replay
exercises the monitor's rejection path exactly as a live exchange would.
"""

from __future__ import annotations

from pathlib import Path

import typer
from kafka.errors import KafkaError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from dmm.cli.app import app, console, err_console
from dmm.producer import DeliveryError, EventProducer
from dmm.replay import replay_file
from settings import get_settings


# The contract's key field per event type.
@app.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL file, one event per line"),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="broker host:port list (default: DMM_KAFKA__BOOTSTRAP)"
    ),
) -> None:
    """Publish each line of FILE byte for byte to dm.events, keyed as the contract says."""
    kafka = get_settings().kafka
    if bootstrap is not None:
        kafka = kafka.model_copy(update={"bootstrap": bootstrap})
    progress = Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    try:
        with EventProducer(kafka) as producer, progress:
            task = progress.add_task(file.name, total=file.stat().st_size)
            sent = replay_file(file, producer, lambda n: progress.advance(task, n))
    except DeliveryError as exc:
        err_console.print(f"[red]replay failed:[/] {exc}")
        err_console.print(f"Check that the broker at {kafka.bootstrap} is up and writable, then replay again.")
        raise typer.Exit(1) from exc
    except KafkaError as exc:
        err_console.print(f"[red]cannot publish to {kafka.bootstrap}:[/] {exc}")
        err_console.print("Start the stack with `dmm up`, or point --bootstrap / DMM_KAFKA__BOOTSTRAP at the broker.")
        raise typer.Exit(1) from exc
    console.print(f"[green]sent[/] {sent} message(s) from {file} to {kafka.events_topic} on {kafka.bootstrap}")
