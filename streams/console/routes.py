"""Mount the console on the worker's Faust web server: the page, its assets and its JSON API.

Every store read runs through `read` (the web layer's console lane: a thread of its own, a connection of its own
with `readonly = 1` and ClickHouse's limits), so a slow query never stalls ingestion, on the event loop or in
the store. Ack / resolve go to `/api/alert-action` (`streams.web`), like `dmm alerts`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

import faust
from faust.web import Request, Response, View

from models.registry import exchanges, sectors
from settings import Settings
from sinks.clickhouse import StoreError
from streams.console.encode import plain
from streams.console.feeds import feeds_view
from streams.console.market import period_view
from streams.console.periods import BadRange
from streams.console.surveillance import (
    KINDS,
    SEVERITIES,
    STATUSES,
    Refused,
    alert_filter,
    alerts_view,
)
from streams.view import WorkerView

STATIC = files("streams").joinpath("console", "static")
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
NO_STORE = {"Cache-Control": "no-store"}
ALERT_LIMIT_MAX = 1000
Read = Callable[..., Awaitable[dict[str, Any]]]  # read(build, *args): build(reads, *args) off the event loop


def static_asset(name: str) -> tuple[str, str] | None:
    """(text, content type) of a shipped asset, or None: only plain names of known types are served."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in CONTENT_TYPES:
        return None
    asset = STATIC.joinpath(name)
    return (asset.read_text(encoding="utf-8"), CONTENT_TYPES[suffix]) if asset.is_file() else None


def register_console(app: faust.App, settings: Settings, worker: WorkerView, read: Read) -> None:
    """Add `/`, `/console/{name}` and `/api/console/*` to the worker's web server."""

    def silent_after_s() -> int:
        return int(worker.rules().exchange_silent_s)

    async def answer(view: View, build: Callable[..., dict[str, Any]], *args: Any) -> Response:
        """One view's JSON, built from the store off the event loop."""
        try:
            return view.json(plain(await read(build, *args)), headers=NO_STORE)
        except BadRange as exc:
            return view.json({"error": str(exc)}, status=400)
        except StoreError as exc:
            return view.json({"error": str(exc)}, status=503)

    @app.page("/")
    class Index(View):
        async def get(self, request: Request) -> Response:
            text, content_type = static_asset("index.html") or ("", "text/html")
            return self.text(text, content_type=content_type, headers=NO_STORE)

    @app.page("/console/{name}")
    class Asset(View):
        async def get(self, request: Request, name: str) -> Response:
            found = static_asset(name)
            if found is None:
                return self.json({"error": f"no asset {name}"}, status=404)
            return self.text(found[0], content_type=found[1])

    @app.page("/api/console/config")
    class Config(View):
        async def get(self, request: Request) -> Response:
            token = settings.console_token
            return self.json(
                {
                    "actions_enabled": bool(token and token.get_secret_value()),
                    "exchanges": {c: {"zh": e.name_zh, "en": e.name_en} for c, e in exchanges().items()},
                    "sectors": {c: {"zh": s.name_zh, "en": s.name_en} for c, s in sectors().items()},
                    "kinds": list(KINDS),
                    "severities": list(SEVERITIES),
                    "statuses": list(STATUSES),
                    "silent_after_s": silent_after_s(),
                }
            )

    @app.page("/api/console/market")
    class Market(View):
        async def get(self, request: Request) -> Response:
            first, last = request.query.get("from"), request.query.get("to")
            return await answer(self, period_view, first, last, settings.allowed_lateness_s)

    @app.page("/api/console/feeds")
    class Feeds(View):
        async def get(self, request: Request) -> Response:
            return await answer(self, feeds_view, silent_after_s())

    @app.page("/api/console/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            try:
                where = alert_filter(dict(request.query), set(exchanges()))
                limit = min(max(int(request.query.get("limit", "200")), 1), ALERT_LIMIT_MAX)
            except Refused as exc:
                return self.json({"error": str(exc)}, status=exc.status)
            except ValueError:
                return self.json({"error": "limit must be a whole number"}, status=400)
            return await answer(self, alerts_view, where, limit)
