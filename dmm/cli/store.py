"""`dmm store-serve`: share the embedded store between processes (several workers, `dmm sql`, dashboards)."""

from __future__ import annotations

import logging.config
import signal
import threading

import typer

from dmm.cli.app import app, console, err_console
from dmm.logs import logging_config
from settings import get_settings
from sinks.clickhouse import StoreError
from sinks.clickhouse.http_server import serve
from sinks.clickhouse.store import ChdbStore


@app.command("store-serve")
def store_serve(
    port: int = typer.Option(8123, help="HTTP port (ClickHouse's own default)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; the embedded store has no users: keep it local"),
) -> None:
    """Open the embedded store once and serve it over ClickHouse's HTTP interface until stopped.

    Then run each worker with DMM_CLICKHOUSE__URL=http://127.0.0.1:PORT (one consumer group shares dm.events)."""
    settings = get_settings()
    logging.config.dictConfig(logging_config(settings.log_json, settings.log_level))
    clickhouse = settings.clickhouse
    try:
        store = ChdbStore(clickhouse.chdb_path, clickhouse.database)
        store.apply_schema()
    except StoreError as exc:
        err_console.print(f"[red]cannot serve the embedded store:[/] {exc}")
        raise typer.Exit(2) from exc
    server = serve(store, host, port)
    url = f"http://{host}:{server.server_port}"
    console.print(f"[green]serving[/] {clickhouse.chdb_path} at {url}  (workers: DMM_CLICKHOUSE__URL={url})")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    store.close()
    console.print("store closed")
