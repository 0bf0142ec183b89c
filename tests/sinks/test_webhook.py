"""AlertWebhook against a real local HTTP server: retries, order, drops, and a caller that never waits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from dmm.broker import free_port
from settings import Settings
from sinks.webhook import AlertWebhook, alert_webhook

ALERT = (Path(__file__).parents[1] / "fixtures" / "alert.json").read_bytes()
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 10.0}


@dataclass
class Hook:
    """What the webhook saw; `respond(n)` gives the status of the n-th request (0-based)."""

    respond: Callable[[int], int]
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    accepted: list[bytes] = field(default_factory=list)
    done: threading.Condition = field(default_factory=threading.Condition)

    def wait_accepted(self, n: int) -> list[bytes]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.accepted) >= n, timeout=60), self.requests
            return list(self.accepted)


@contextmanager
def _serve(hook: Hook) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.done:
                n = len(hook.requests)
                hook.requests.append((body, dict(self.headers)))
            status = hook.respond(n)
            self.send_response(status)
            self.end_headers()
            with hook.done:
                if status == 200:
                    hook.accepted.append(body)
                hook.done.notify_all()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _count(what: str) -> float:
    return REGISTRY.get_sample_value(f"dmm_alert_webhook_{what}_total") or 0.0


@pytest.fixture
def counts() -> Callable[[], dict[str, float]]:
    """The three counters, relative to the start of the test."""
    start = {what: _count(what) for what in ("delivered", "failed", "dropped")}
    return lambda: {what: _count(what) - value for what, value in start.items()}


def test_retries_server_errors_until_delivered_once(counts):
    hook = Hook(respond=lambda n: 500 if n < 2 else 200)
    with _serve(hook) as url:
        forwarder = AlertWebhook(url, token=SecretStr("s3cret"), **FAST)
        forwarder.forward(ALERT)
        assert hook.wait_accepted(1) == [ALERT]
        forwarder.close()
    assert [body for body, _ in hook.requests] == [ALERT] * 3
    headers = hook.requests[-1][1]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer s3cret"
    assert counts() == {"delivered": 1, "failed": 0, "dropped": 0}


def test_gives_up_after_the_last_retry_and_on_a_client_error(counts):
    hook = Hook(respond=lambda n: 503 if n < 3 else 400)
    with _serve(hook) as url:
        forwarder = AlertWebhook(url, retries=2, **FAST)
        forwarder.forward(b'{"n": 1}')  # 503, 503, 503: gives up after 2 retries
        forwarder.forward(b'{"n": 2}')  # 400: not retried
        forwarder.close(timeout=30)
    assert [body for body, _ in hook.requests] == [b'{"n": 1}'] * 3 + [b'{"n": 2}']
    assert counts() == {"delivered": 0, "failed": 2, "dropped": 0}


def test_a_stuck_webhook_never_blocks_forward_and_the_oldest_waiting_alerts_are_dropped(counts):
    release = threading.Event()
    first_arrived = threading.Event()

    def respond(n: int) -> int:
        if n == 0:
            first_arrived.set()
            release.wait(60)  # the webhook hangs on the first alert
        return 200

    hook = Hook(respond=respond)
    with _serve(hook) as url:
        forwarder = AlertWebhook(url, queue_max=3, **FAST)
        forwarder.forward(b"0")
        assert first_arrived.wait(60)
        for n in range(1, 7):  # 6 more while "0" is in flight: the queue keeps the newest 3
            forwarder.forward(str(n).encode())
        assert counts()["dropped"] == 3
        release.set()
        assert hook.wait_accepted(4) == [b"0", b"4", b"5", b"6"]
        forwarder.close()
    assert counts() == {"delivered": 4, "failed": 0, "dropped": 3}


def test_a_dead_url_costs_the_caller_nothing_and_close_gives_up(counts):
    forwarder = AlertWebhook(f"http://127.0.0.1:{free_port()}/nobody", retries=1000, **FAST)
    for n in range(50):
        forwarder.forward(str(n).encode())
    forwarder.close(timeout=0.2)
    assert not forwarder._thread.is_alive()
    assert counts()["delivered"] == 0
    assert counts()["dropped"] + counts()["failed"] == 50
    forwarder.forward(b"after close")  # refused quietly, counted
    assert counts()["dropped"] + counts()["failed"] == 51


def test_settings_build_the_forwarder_only_when_a_url_is_set():
    assert alert_webhook(Settings(alert_webhook_url=None)) is None
    forwarder = alert_webhook(Settings(alert_webhook_url="http://127.0.0.1:9/x", alert_webhook_queue_max=7))
    assert forwarder is not None
    try:
        assert (forwarder.url, forwarder._queue_max) == ("http://127.0.0.1:9/x", 7)
    finally:
        forwarder.close(timeout=0)
