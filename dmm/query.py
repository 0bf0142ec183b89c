"""Reach the monitor's store from the CLI, whether or not a worker holds it.

The embedded store (chdb) can be opened by one process at a time, so while a worker runs, `dmm sql` and
`dmm alerts list` go through its SQL socket (`streams.sql_socket`: only the worker's OS user may connect) and
alert actions through its web port with the console token; otherwise (or with a ClickHouse server) the store
is opened directly. Either way an ad-hoc statement passes `sinks.clickhouse.sql_guard` and runs with
ClickHouse's limits (`settings.sql`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from settings import Settings
from sinks.clickhouse import Parameters, ReadOnlyViolation, StoreError, open_store
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.records import record_alert_action
from streams.kafka_client import client_options

SOCKET_SLACK_S = 30.0  # beyond the limit ClickHouse puts on the query: the answer's way back


class UnknownAlert(LookupError):
    """No alert has that dedup_key (the worker answered 404, or the store has none)."""


class WorkerUnavailable(ConnectionError):
    """No worker answers (on the configured web port, or on the store's SQL socket)."""


def console_token(settings: Settings) -> str | None:
    """DMM_CONSOLE_TOKEN, else the one `dmm up` generated beside the store."""
    if settings.console_token is not None and settings.console_token.get_secret_value():
        return settings.console_token.get_secret_value()
    try:
        return settings.console_token_file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _call(settings: Settings, path: str, body: dict[str, Any] | None = None, timeout: float = 30) -> bytes:
    url = f"{settings.web_url}{path}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    token = console_token(settings)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: bytes = response.read()
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")
        with contextlib.suppress(ValueError, AttributeError):  # not JSON, or not an object: the text as it came
            detail = json.loads(detail).get("error", detail)
        if exc.code == 404:
            raise UnknownAlert(detail) from exc
        raise RuntimeError(detail) from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WorkerUnavailable(f"no worker at {url}: {exc}") from exc


def worker_metrics(settings: Settings, timeout: float = 3.0) -> dict[str, float]:
    """The worker's /metrics as {'name{label="v",...}': value}, plus per-name sums under the bare name."""
    text = _call(settings, "/metrics", timeout=timeout).decode()
    out: dict[str, float] = defaultdict(float)  # a name not reported reads as 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
            out[sample.name] += sample.value
    return out


def query_text(
    settings: Settings, sql: str, fmt: str = "PrettyCompactMonoBlock", parameters: Parameters | None = None
) -> str:
    """Run one query (`sql_guard` says which), with the values of its placeholders; through the worker when it
    runs on the embedded store."""
    if settings.clickhouse.url is None:
        try:
            return _ask_worker(settings, sql, fmt, parameters)
        except WorkerUnavailable:
            pass
    store = open_store(settings.clickhouse, read_only=True)
    try:
        return store.reads(settings.sql).ad_hoc(sql, fmt, parameters)
    finally:
        store.close()


def _ask_worker(settings: Settings, sql: str, fmt: str, parameters: Parameters | None) -> str:
    """The answer of the worker's SQL socket."""
    path = settings.sql_socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(settings.sql.max_execution_s + SOCKET_SLACK_S)
            connection.connect(str(path))
            request = {"sql": sql, "format": fmt, "parameters": dict(parameters or {})}
            connection.sendall(json.dumps(request).encode() + b"\n")
            with connection.makefile("rb") as answer:
                reply = json.loads(answer.read())
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise WorkerUnavailable(f"no worker answers on {path}") from exc
    except PermissionError as exc:
        raise RuntimeError(f"cannot connect to the worker's SQL socket {path}: only the worker's OS user may") from exc
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"the worker's SQL socket {path} did not answer: {exc}") from exc
    if "text" in reply:
        return str(reply["text"])
    if reply.get("refused"):
        raise ReadOnlyViolation(reply.get("error", "refused"))
    raise StoreError(reply.get("error", "the query failed"))


def query_rows(settings: Settings, sql: str, parameters: Parameters | None = None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in query_text(settings, sql, "JSONEachRow", parameters).splitlines() if line]


def alert_action(settings: Settings, dedup_key: str, action: str, actor: str, note: str = "") -> dict[str, Any]:
    """Acknowledge or resolve an alert, recording who and when: through the worker (with the console token)
    when it holds the embedded store, else straight to the store. An alert that does not exist is refused
    (ValueError), not recorded."""
    body = {"dedup_key": dedup_key, "action": action, "actor": actor, "note": note}
    if settings.clickhouse.url is None:
        try:
            recorded: dict[str, Any] = json.loads(_call(settings, "/api/alert-action", body))
            return recorded
        except WorkerUnavailable:
            pass
    store = open_store(settings.clickhouse)
    try:
        if not q.alert_exists(store, dedup_key):
            raise UnknownAlert(f"no alert with dedup_key {dedup_key!r} (see `dmm alerts list`)")
        return record_alert_action(store, dedup_key, action, actor, note)
    finally:
        store.close()


def _end_offsets(settings: Settings) -> dict[int, int]:
    """The broker's end offset of every dm.events partition, now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**client_options(settings.kafka))
    try:
        topic = settings.kafka.events_topic
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def worker_status(settings: Settings) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(_call(settings, "/api/status", timeout=5))
    return status


def wait_until_ready(
    settings: Settings, timeout: float = 120, alive: Callable[[], bool] = lambda: True
) -> dict[str, Any]:
    """Block until the worker has restored its state and owns partitions of dm.events."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the worker process exited during start-up")
        try:
            status = worker_status(settings)
            if status.get("ready") and status.get("partitions"):
                return status
        except (WorkerUnavailable, RuntimeError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"the worker did not become ready within {timeout:.0f}s ({last})")


def wait_until_drained(
    settings: Settings, timeout: float = 300, settle: float = 1.0, workers: Sequence[Settings] = ()
) -> dict[str, Any]:
    """Block until every message on dm.events (as the broker has it now) is processed, stored, flushed and
    committed, by the worker or by all of `workers` together (their partitions combined, and the market stage
    of whichever runs it caught up with every partition). The end offsets come from the broker, not from the
    workers' last fetches, which may predate the newest messages. Returns the (first) worker's status."""
    deadline = time.monotonic() + timeout
    everyone = list(workers) or [settings]
    statuses: list[dict[str, Any]] = []
    ends = _end_offsets(settings)
    while time.monotonic() < deadline:
        try:
            statuses = [worker_status(each) for each in everyone]
        except (WorkerUnavailable, RuntimeError, ValueError):  # starting, or a rebalance in progress
            time.sleep(0.5)
            continue
        # The broker's answer may trail what was just produced; the workers' fetches see further.
        for status in statuses:
            for p, part in (status.get("partitions") or {}).items():
                ends[int(p)] = max(ends.get(int(p), 0), part.get("highwater") or 0)
        if _drained(statuses, ends):
            time.sleep(settle)
            again = [worker_status(each) for each in everyone]
            if _drained(again, ends) and [s.get("partitions") for s in again] == [
                s.get("partitions") for s in statuses
            ]:
                return again[0]
        time.sleep(0.3)
    raise TimeoutError(f"the worker(s) did not drain dm.events within {timeout:.0f}s; last status: {statuses}")


def _drained(statuses: list[dict[str, Any]], ends: dict[int, int]) -> bool:
    processed: dict[int, int] = {}
    for status in statuses:
        if not status.get("ready") or status.get("pending_acks") != 0 or status.get("dirty_windows") != 0:
            return False
        processed.update({int(p): part.get("processed", -1) for p, part in (status.get("partitions") or {}).items()})
    market = [s["market_applied"] for s in statuses if s.get("market_stage")]
    applied = {int(p): offset for p, offset in (market[0] if market else {}).items()}
    return bool(processed) and all(
        processed.get(p, -1) >= end - 1 and (not market or applied.get(p, -1) >= end - 1)
        for p, end in ends.items()
        if end > 0
    )
