"""Surveillance alerts to an HTTP webhook (a pager, a chat bridge), without ever slowing ingestion.

The worker hands each alert's dm.alerts JSON to `AlertWebhook.forward`, which only
appends it to a bounded in-memory queue; one daemon thread POSTs the queue in
order, retrying a failed delivery with exponential backoff. A webhook that is slow
or down therefore costs memory up to `queue_max` alerts, never batch latency: when
the queue is full the oldest waiting alert is dropped and counted. Delivery is
at-least-once per attempt and best-effort overall; dm.alerts and datamarket.alerts
stay the record, and the alert's `dedup_key` lets a receiver drop repeats.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque

from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_result, wait_exponential

from settings import Settings
from sinks import prometheus as metrics

log = logging.getLogger(__name__)

# Status codes worth another try; any other 4xx means the request itself is wrong.
_RETRYABLE_4XX = frozenset({408, 425, 429})


class AlertWebhook:
    """A bounded queue of alerts and one thread that POSTs them, with retries."""

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        queue_max: int = 1000,
        retries: int = 5,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json", "User-Agent": "dmm-alert-webhook"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._queue: deque[bytes] = deque()
        self._queue_max = queue_max
        self._retries = retries
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._lock = threading.Condition()
        self._closing = False
        self._deadline = float("inf")  # monotonic time after which close() abandons what is left
        self._thread = threading.Thread(target=self._run, name="dmm-alert-webhook", daemon=True)
        self._thread.start()

    def forward(self, alert_json: bytes) -> None:
        """Queue one alert for delivery; returns at once, dropping the oldest queued alert if full."""
        with self._lock:
            if self._closing:
                metrics.ALERT_WEBHOOK_DROPPED.inc()
                return
            if len(self._queue) >= self._queue_max:
                self._queue.popleft()
                metrics.ALERT_WEBHOOK_DROPPED.inc()
            self._queue.append(alert_json)
            self._lock.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for at most `timeout` seconds, then stop; what is left is counted as dropped."""
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._lock.notify_all()
        self._thread.join(timeout + self._timeout_s)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue or time.monotonic() >= self._deadline:
                    metrics.ALERT_WEBHOOK_DROPPED.inc(len(self._queue))
                    self._queue.clear()
                    return
                body = self._queue.popleft()
            delivered = self._deliver(body)
            if delivered:
                metrics.ALERT_WEBHOOK_DELIVERED.inc()
            elif delivered is False:
                metrics.ALERT_WEBHOOK_FAILED.inc()
            else:  # shutting down in the middle of retries
                metrics.ALERT_WEBHOOK_DROPPED.inc()

    def _deliver(self, body: bytes) -> bool | None:
        """True once the webhook accepts `body`; False after the last retry; None if close() cut it short."""
        retrying = Retrying(
            retry=retry_if_result(lambda outcome: outcome[0] is not None and outcome[1]),  # failed, may help
            stop=self._stop_retrying,
            wait=wait_exponential(multiplier=self._backoff_s, max=self._backoff_max_s),
            sleep=self._pause,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        error, retryable = retrying(self._post, body)
        if error is None:
            return True
        attempts = int(retrying.statistics["attempt_number"])
        if retryable and attempts <= self._retries:
            return None  # close() came first
        log.warning("alert webhook gave up", extra={"url": self.url, "attempts": attempts, "error": error})
        return False

    def _stop_retrying(self, state: RetryCallState) -> bool:
        """After the last retry, or once close()'s deadline has passed."""
        return state.attempt_number > self._retries or time.monotonic() >= self._deadline

    def _pause(self, seconds: float) -> None:
        """Back off between attempts, at most until close()'s deadline."""
        with self._lock:
            wait = min(seconds, self._deadline - time.monotonic())
            if wait > 0:
                self._lock.wait_for(lambda: time.monotonic() >= self._deadline, timeout=wait)

    def _post(self, body: bytes) -> tuple[str | None, bool]:
        """One POST: (None, _) on a 2xx, else (what went wrong, whether a retry may help)."""
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
                return None, False
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}", exc.code >= 500 or exc.code in _RETRYABLE_4XX
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout, reset
            return str(getattr(exc, "reason", exc))[:200], True


def alert_webhook(settings: Settings) -> AlertWebhook | None:
    """The forwarder `DMM_ALERT_WEBHOOK_*` describe, or None when no URL is set."""
    if not settings.alert_webhook_url:
        return None
    return AlertWebhook(
        settings.alert_webhook_url,
        token=settings.alert_webhook_token,
        queue_max=settings.alert_webhook_queue_max,
        retries=settings.alert_webhook_retries,
        timeout_s=settings.alert_webhook_timeout_s,
    )
