"""The worker's HTTP endpoints (on Faust's web server, bound to `web_host:web_port`).

- `/metrics`: Prometheus exposition.
- `/healthz`: 200 once state is restored and consuming, 503 before.
- `/api/status`: per-partition progress, pending acks, dirty windows (tests and `dmm` wait on it).
- `/api/sql`: one read-only statement against the store. The embedded store can be
  opened by one process only, so `dmm sql` goes through here while the worker runs.
- `/api/alert-action`: records an alert acknowledgement or resolution (`dmm alerts`).
"""

from __future__ import annotations

import asyncio
import json

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from settings import Settings
from sinks.clickhouse import ReadOnlyViolation, StoreError
from sinks.clickhouse.records import record_alert_action
from streams.console import register_console
from streams.view import WorkerView


def register_routes(app: faust.App, settings: Settings, worker: WorkerView) -> None:
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

    @app.page("/api/sql")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            body = json.loads(await self.read_request_content(request) or b"{}")
            sql, fmt = str(body.get("sql", "")), str(body.get("format", "PrettyCompactMonoBlock"))
            try:
                text = await asyncio.to_thread(worker.store.text, sql, fmt)
            except ReadOnlyViolation as exc:
                return self.error(400, str(exc))
            except StoreError as exc:
                return self.error(422, str(exc))
            return self.text(text)

    @app.page("/api/alert-action")
    class AlertAction(View):
        async def post(self, request: Request) -> Response:
            body = json.loads(await self.read_request_content(request) or b"{}")
            try:
                row = await asyncio.to_thread(
                    record_alert_action,
                    worker.store,
                    str(body.get("dedup_key", "")),
                    str(body.get("action", "")),
                    str(body.get("actor", "")),
                    str(body.get("note", "")),
                )
            except ValueError as exc:
                return self.error(400, str(exc))
            except StoreError as exc:
                return self.error(503, str(exc))
            if row["action"] == "resolve":
                worker.alert_resolved(row["dedup_key"])
            return self.json(row)

    register_console(app, settings, worker)
