"""`dmm store-serve`: share the embedded store between processes (several workers, `dmm sql`, dashboards).

Its clients prove they may use it with a shared secret, DMM_CLICKHOUSE__PASSWORD (see
`sinks.clickhouse.http_server` for why loopback alone is not enough)."""

from __future__ import annotations

import logging.config
import signal
import threading

import typer
from rich.markup import escape

from dmm.cli.app import app, console, err_console
from dmm.logs import logging_config
from settings import get_settings
from sinks.clickhouse import StoreError
from sinks.clickhouse.http_server import serve
from sinks.clickhouse.store import ChdbStore


@app.command("store-serve")
def store_serve(
    port: int = typer.Option(8123, help="HTTP port (ClickHouse's own default)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; plain HTTP with a shared secret: keep it local"),
) -> None:
    """Open the embedded store once and serve it over ClickHouse's HTTP interface until stopped.

    Then run each worker with DMM_CLICKHOUSE__URL=http://127.0.0.1:PORT and the same DMM_CLICKHOUSE__PASSWORD
    (one consumer group shares dm.events)."""
    settings = get_settings()
    logging.config.dictConfig(logging_config(settings.log_json, settings.log_level))
    clickhouse = settings.clickhouse
    password = clickhouse.password.get_secret_value()
    if not password:
        err_console.print(
            "[red]dmm store-serve needs a shared secret:[/] set DMM_CLICKHOUSE__PASSWORD (e.g. to the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`) here and for every worker using it"
        )
        raise typer.Exit(2)
    try:
        store = ChdbStore(clickhouse.chdb_path, clickhouse.database)
        store.apply_schema()
    except StoreError as exc:
        err_console.print(f"[red]cannot serve the embedded store:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    server = serve(store, clickhouse.user, password, host, port)
    url = f"http://{host}:{server.server_port}"
    console.print(f"[green]serving[/] {clickhouse.chdb_path} at {url}  (workers: DMM_CLICKHOUSE__URL={url})")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    store.close()
    console.print("store closed")
