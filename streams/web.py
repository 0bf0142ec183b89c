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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
import pyarrow as pa
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from settings import Settings
from sinks.clickhouse import ReadOnlyViolation, StoreError

if TYPE_CHECKING:
    from streams.app import MonitorWorker

ALERT_ACTIONS = ("ack", "resolve")
ALERT_ACTION_SCHEMA = pa.schema(
    [
        ("dedup_key", pa.string()),
        ("action", pa.string()),
        ("actor", pa.string()),
        ("note", pa.string()),
        ("at", pa.timestamp("ms", tz="UTC")),
    ]
)


def record_alert_action(store: Any, dedup_key: str, action: str, actor: str, note: str) -> dict[str, str]:
    """Append one lifecycle action; shared by the HTTP route and direct store access."""
    if action not in ALERT_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ALERT_ACTIONS)}")
    if not dedup_key or not actor:
        raise ValueError("dedup_key and actor (who) are required")
    at = datetime.now(UTC)
    row = {"dedup_key": dedup_key, "action": action, "actor": actor, "note": note, "at": at}
    store.insert("alert_actions", pa.Table.from_pylist([row], schema=ALERT_ACTION_SCHEMA), f"{dedup_key}|{action}|{at}")
    return {**{k: v for k, v in row.items() if k != "at"}, "at": at.isoformat()}


def register_routes(app: faust.App, settings: Settings, worker: MonitorWorker) -> None:
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
            if row["action"] == "resolve" and worker.pipeline is not None:
                worker.pipeline.ledger.resolved(row["dedup_key"])
            return self.json(row)
