"""`dmm replay FILE`: publish a JSONL file to dm.events, one message per line, byte for byte.

Lines are not validated: garbage and blank lines are published too, so a replay
exercises the monitor's rejection path exactly as a live exchange would. With
`--keys` each line is signed as its exchange would sign it (contract, Amendment 1).
"""

from __future__ import annotations

from pathlib import Path

import typer
from kafka.errors import KafkaError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from dmm.cli.app import app, console, err_console
from dmm.producer import DeliveryError, EventProducer
from dmm.replay import replay_file
from models.keys import KeysFileError, load_keys
from settings import get_settings


@app.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL file, one event per line"),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="broker host:port list (default: DMM_KAFKA__BOOTSTRAP)"
    ),
    keys_file: Path | None = typer.Option(
        None,
        "--keys",
        exists=True,
        dir_okay=False,
        readable=True,
        help="keys file (exchange_id,key_id,secret): sign each line with the first key of its exchange; a line "
        "that is no JSON object or names an exchange without a key goes unsigned",
    ),
) -> None:
    """Publish each line of FILE byte for byte to dm.events, keyed as the contract says (signed with --keys)."""
    try:
        keys = load_keys(keys_file) if keys_file is not None else None
    except KeysFileError as exc:
        err_console.print(f"[red]cannot sign:[/] {exc}")
        raise typer.Exit(2) from exc
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
            sent = replay_file(file, producer, lambda n: progress.advance(task, n), keys)
    except DeliveryError as exc:
        err_console.print(f"[red]replay failed:[/] {exc}")
        err_console.print(f"Check that the broker at {kafka.bootstrap} is up and writable, then replay again.")
        raise typer.Exit(1) from exc
    except KafkaError as exc:
        err_console.print(f"[red]cannot publish to {kafka.bootstrap}:[/] {exc}")
        err_console.print("Start the stack with `dmm up`, or point --bootstrap / DMM_KAFKA__BOOTSTRAP at the broker.")
        raise typer.Exit(1) from exc
    signed = f", signed with the keys of {keys_file}" if keys_file is not None else ""
    console.print(f"[green]sent[/] {sent} message(s) from {file} to {kafka.events_topic} on {kafka.bootstrap}{signed}")
