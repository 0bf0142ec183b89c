"""`dmm replay FILE`: publish a JSONL file to dm.events, one message per line, byte for byte.

Lines are not validated: garbage and blank lines are published too, so a replay
exercises the monitor's rejection path exactly as a live exchange would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from kafka.errors import KafkaError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from dmm.cli.app import app, console, err_console
from dmm.producer import DeliveryError, EventProducer
from settings import get_settings

# The contract's key field per event type.
_KEY_FIELD = {"listing": "product_id", "trade": "product_id", "usage": "product_id", "heartbeat": "exchange_id"}
_PROGRESS_EVERY_BYTES = 1 << 20


def line_key(line: bytes) -> bytes | None:
    """The contract key of a line that parses as a JSON object with the right string field, else None."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly nested
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return None
    field = _KEY_FIELD.get(obj["type"])
    value = obj.get(field) if field is not None else None
    if not isinstance(value, str):
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        return None


def replay_file(path: Path, producer: EventProducer, on_progress: Callable[[int], None] | None = None) -> int:
    """Publish every line of `path` (without its trailing b"\\n") and flush; return how many were delivered.

    `on_progress` receives byte counts read so far, in increments. Raises DeliveryError if any message was lost.
    """
    count = 0
    unreported = 0
    with path.open("rb") as lines:
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            producer.publish_raw(line, line_key(line))
            count += 1
            unreported += len(raw)
            if on_progress is not None and unreported >= _PROGRESS_EVERY_BYTES:
                on_progress(unreported)
                unreported = 0
    if on_progress is not None and unreported:
        on_progress(unreported)
    producer.flush()
    return count


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
