"""`dmm worker`: run the Faust worker in the foreground (production entry point)."""

from __future__ import annotations

import logging.config
from pathlib import Path

import typer

from dmm.cli.app import app, err_console
from dmm.logs import logging_config
from settings import get_settings
from sinks import prometheus as metrics


@app.command()
def worker() -> None:
    """Consume dm.events, store to ClickHouse, raise alerts, serve /metrics until stopped."""
    from faust import Worker

    from streams.app import create_app
    from streams.web_access import WebExposed

    settings = get_settings()
    config = logging_config(settings.log_json, settings.log_level)
    logging.config.dictConfig(config)
    metrics.WORKER_RESTARTS.set(settings.supervisor_restarts)
    try:
        faust_app = create_app(settings)
    except WebExposed as exc:
        err_console.print(f"[red]the worker will not start:[/] {exc}")
        raise typer.Exit(2) from exc
    # Faust creates its data directory without parents: on a clean directory (a fresh
    # container, a first run) it would exit at once, and a supervisor would loop on it.
    Path(faust_app.conf.datadir).mkdir(parents=True, exist_ok=True)
    Worker(
        faust_app, loglevel=settings.log_level, logging_config=config, quiet=True
    ).execute_from_commandline()
