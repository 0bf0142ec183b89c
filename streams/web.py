"""The worker's endpoints: HTTP on Faust's web server (bound to `web_host:web_port`), and the SQL socket.

- `/metrics`: Prometheus exposition.
- `/healthz`: 200 once state is restored and consuming, 503 before.
- `/api/status`: per-partition progress, pending acks, dirty windows (tests and `dmm` wait on it).
- `/api/alert-action`: records an alert acknowledgement or resolution (`dmm alerts`, the console), with the
  console token; an alert that does not exist is 404, not recorded.
- the console (`streams.console`).
- `dmm sql`: not on the web port but on a Unix socket beside the embedded store (`streams.sql_socket` says
  why); with a ClickHouse server, `dmm sql` reads the server itself.

Every request passes `streams.web_access` first (Host, Origin, token, content type, body size, security
headers). Reads for someone else run on their own executors, each on a connection of its own with ClickHouse's
limits (`Store.reads`): the threads that write the worker's batches (asyncio's default executor) are never
taken by them, and the console's reads never wait behind an ad-hoc query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, cast

import faust
from aiohttp import web
from faust.web import Request, Response, View
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from settings import Settings
from sinks.clickhouse import Parameters, Reads, StoreError
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.records import record_alert_action
from streams.console import register_console
from streams.console.surveillance import Refused, action_request
from streams.sql_socket import SqlSocket
from streams.view import WorkerView
from streams.web_access import WebAccess, access_middleware, json_body

AD_HOC_READS = 2  # `dmm sql`: an operator or two at a time
CONSOLE_READS = 4  # each console view refreshes every 5 s: a few tabs at once
T = TypeVar("T")


class ReadLanes:
    """Where reads for someone else run: the store's limited connections, on executors of their own."""

    def __init__(self, settings: Settings, worker: WorkerView) -> None:
        self._settings = settings
        self._worker = worker
        self._reads: Reads | None = None
        self.console = ThreadPoolExecutor(CONSOLE_READS, thread_name_prefix="console-read")
        self.ad_hoc = ThreadPoolExecutor(AD_HOC_READS, thread_name_prefix="sql-read")

    @property
    def reads(self) -> Reads:
        if self._reads is None:  # the worker opens its store on first use
            self._reads = self._worker.store.reads(self._settings.sql)
        return self._reads

    async def run_console(self, build: Callable[..., T], *args: Any) -> T:
        """`build(reads, *args)`: the console's questions, and whether an alert exists."""
        return await asyncio.get_running_loop().run_in_executor(self.console, partial(build, self.reads, *args))

    async def run_ad_hoc(self, sql: str, fmt: str, parameters: Parameters | None = None) -> str:
        read = partial(self.reads.ad_hoc, sql, fmt, parameters)
        return await asyncio.get_running_loop().run_in_executor(self.ad_hoc, read)


def register_routes(app: faust.App, settings: Settings, worker: WorkerView) -> None:
    """Mount every endpoint; a web host beyond loopback without a console token refuses to start (`WebExposed`)."""
    access = WebAccess.from_settings(settings)
    cast(AiohttpWeb, app.web).web_app.middlewares.append(access_middleware(access))
    lanes = ReadLanes(settings, worker)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            status = worker.status()
            return self.json(status, status=200 if status.get("ready") else 503)

    @app.page("/api/status")
    class Status(View):
        async def get(self, request: Request) -> Response:
            return self.json(worker.status())

    @app.page("/api/alert-action")
    class AlertAction(View):
        async def post(self, request: Request) -> Response:
            key, action, actor, note = action_request(await json_body(cast(web.Request, request)))
            if not await lanes.run_console(q.alert_exists, key):
                raise Refused(404, f"no alert with dedup_key {key!r} (see `dmm alerts list`)")
            try:
                row = await asyncio.to_thread(record_alert_action, worker.store, key, action, actor, note)
            except StoreError as exc:
                return self.json({"error": str(exc)}, status=503)
            if action == "resolve":
                worker.alert_resolved(key)
            return self.json(row)

    register_console(app, settings, worker, lanes.run_console)
    if settings.clickhouse.url is None:
        # Faust starts a service given as an instance as well as a class (`App._prepare_subservice`); its
        # annotation names only the class.
        app.service(cast(type[SqlSocket], SqlSocket(settings.sql_socket, lanes.run_ad_hoc, loop=app.loop)))
