"""Who may do what on the worker's web port: checked once for every request, before any route runs.

The port is reachable by more than the operator's own tools: every web page the operator opens can send it
requests (a cross-site `fetch` with `mode: "no-cors"` still delivers a POST), and a page on a domain that
resolves to 127.0.0.1 (DNS rebinding) can even read the answers. So:

- `Host` must name this server (`web_host:web_port`, localhost when that is loopback, or one of
  `DMM_WEB_ALLOWED_HOSTS`), else 421: a rebound domain gets nothing. `/metrics` and `/healthz` answer any
  `Host`: scrapers and probes address the worker by IP, and they change nothing.
- A foreign `Origin` (another site's page) is refused with 403, on every route.
- Every request that changes something (any method but GET/HEAD) must carry `Authorization: Bearer
  <DMM_CONSOLE_TOKEN>` (403 without; with no token configured, nothing can be changed) and
  `Content-Type: application/json` (415: a cross-site form or no-cors fetch cannot send that type), with a
  body of at most `BODY_MAX` bytes (413), which must be a JSON object (400, saying so; never a traceback).
- Beyond loopback, the console's data (`/api/*` reads) needs the token too: the market's figures are not
  for whoever reaches the port. On loopback they stay open, as the console's pages are (the pages carry no
  data; the browser keeps the token in sessionStorage, from the URL fragment `dmm up` prints).
- Every answer carries a Content-Security-Policy fitted to the console's own files (scripts, styles and
  requests to this origin only, no framing), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
  `Referrer-Policy: no-referrer`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from settings import Settings
from streams.console.surveillance import Refused, authorize

log = logging.getLogger("dmm.web")

BODY_MAX = 64 * 1024
OPEN_TO_ANY_HOST = ("/metrics", "/healthz")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
READING = ("GET", "HEAD")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class WebExposed(RuntimeError):
    """The web port would be reachable beyond this machine with nothing to tell the operator from anyone."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebAccess:
    hosts: frozenset[str]  # `Host` header values this server answers to
    origins: frozenset[str]  # `Origin` values of its own pages
    token: SecretStr | None  # DMM_CONSOLE_TOKEN
    reads_need_token: bool  # beyond loopback

    @classmethod
    def from_settings(cls, settings: Settings) -> WebAccess:
        """The policy for `settings`; a non-loopback web host without a token refuses to start."""
        host, port = settings.web_host, settings.web_port
        token = settings.console_token if settings.console_token and settings.console_token.get_secret_value() else None
        loopback = is_loopback(host)
        if not loopback and token is None:
            raise WebExposed(
                f"DMM_WEB_HOST={host} would expose the console and its alert actions beyond this machine with no "
                "token: set DMM_CONSOLE_TOKEN to a long random secret (e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or bind to 127.0.0.1"
            )
        wildcard = host in ("0.0.0.0", "::", "")  # every address, loopback included (where local tools call)
        names = set(LOOPBACK_NAMES if loopback or wildcard else ())
        if not wildcard:
            names.add(f"[{host}]" if ":" in host else host)
        hosts = {f"{name}:{port}" for name in names} | set(settings.web_allowed_hosts)
        if port == 80:
            hosts |= names
        origins = {f"{scheme}://{name}" for name in hosts for scheme in ("http", "https")}
        return cls(frozenset(hosts), frozenset(origins), token, reads_need_token=not loopback)

    def check(self, request: web.Request) -> None:
        """Refused (with the status to answer) unless the request may proceed to its route."""
        if request.path not in OPEN_TO_ANY_HOST and request.host not in self.hosts:
            raise Refused(
                421,
                f"this server answers as {', '.join(sorted(self.hosts))}, not {request.host!r} "
                "(to add a name: DMM_WEB_ALLOWED_HOSTS)",
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.origins:
            raise Refused(403, f"requests from pages of {origin} are refused")
        if request.method not in READING:
            authorize(self.token, request.headers.get("Authorization"))
            if request.content_type != "application/json":
                raise Refused(415, "send the body as JSON, with Content-Type: application/json")
            if (request.content_length or 0) > BODY_MAX:
                raise Refused(413, f"the body is larger than {BODY_MAX} bytes")
        elif self.reads_need_token and request.path.startswith("/api/"):
            authorize(self.token, request.headers.get("Authorization"))


def access_middleware(access: WebAccess) -> Middleware:
    """The aiohttp middleware applying `access` to every request and the security headers to every answer."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            access.check(request)
            response = await handler(request)
        except Refused as refused:
            response = web.json_response({"error": str(refused)}, status=refused.status)
        except web.HTTPException as http_error:  # aiohttp's own 404, 405...
            response = web.json_response({"error": http_error.reason}, status=http_error.status)
        except Exception:
            log.exception("web request failed", extra={"path": request.path})
            response = web.json_response({"error": "the request failed; the worker's log says why"}, status=500)
        response.headers.update(SECURITY_HEADERS)
        return response

    return guarded


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, read up to `BODY_MAX` bytes (also when sent in chunks), or refused."""
    body = bytearray()
    while chunk := await request.content.read(BODY_MAX + 1 - len(body)):
        body += chunk
        if len(body) > BODY_MAX:
            raise Refused(413, f"the body is larger than {BODY_MAX} bytes")
    try:
        parsed = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not valid JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise Refused(400, "the body must be a JSON object")
    return parsed
