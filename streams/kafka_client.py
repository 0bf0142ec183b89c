"""Connection options for both Kafka clients, and creation of the monitor's topics.

Both option builders return the broker password in clear text (the clients need
it): pass the dicts straight to a client constructor and never log them.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from aiokafka.helpers import create_ssl_context
from kafka import KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError, RetriableError, TopicAlreadyExistsError, for_code

from settings import KafkaSettings

log = logging.getLogger(__name__)

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class _NoClientConfig(logging.Filter):
    """kafka-python's admin client logs its whole configuration, SASL password included, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Starting KafkaAdminClient with configuration")


logging.getLogger("kafka.admin.client").addFilter(_NoClientConfig())


def _bootstrap_servers(kafka: KafkaSettings) -> list[str]:
    return [server.strip() for server in kafka.bootstrap.split(",") if server.strip()]


def _sasl_options(kafka: KafkaSettings) -> dict[str, Any]:
    """SASL keywords; both clients name them alike (kafka-python uses the `plain_` names for SCRAM too)."""
    options: dict[str, Any] = {}
    if kafka.sasl_mechanism is not None:
        options["sasl_mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username is not None:
        options["sasl_plain_username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any kafka-python client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap_servers(kafka),
        "security_protocol": kafka.security_protocol,
        **_sasl_options(kafka),
    }
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(kafka, name)
        if path is not None:
            options[name] = str(path)
    return options


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients, which take one `ssl_context` instead of TLS file paths."""
    options: dict[str, Any] = {
        "bootstrap_servers": _bootstrap_servers(kafka),
        "security_protocol": kafka.security_protocol,
        **_sasl_options(kafka),
    }
    if kafka.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(kafka)
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """System CAs unless `ssl_cafile` is set; a client certificate when `ssl_certfile` is set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
    )
    return context


def monitor_topics(kafka: KafkaSettings) -> dict[str, int]:
    """Every topic the monitor uses, with its partition count when the monitor creates it."""
    return {
        kafka.events_topic: kafka.events_partitions,
        kafka.alerts_topic: 1,
        kafka.rejected_topic: 1,
        kafka.rules_topic: 1,
    }


def ensure_topics(kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Create the monitor's topics that are missing; retry while the broker is still starting.

    Existing topics are left as they are (their partition count is not checked).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _create_missing(kafka, max(1.0, deadline - time.monotonic()))
            return
        except (RetriableError, KafkaConnectionError) as exc:
            if time.monotonic() >= deadline:
                raise KafkaError(
                    f"could not create topics on {kafka.bootstrap} within {timeout_s:.0f}s ({exc}): "
                    "is the broker running, and is DMM_KAFKA__BOOTSTRAP right?"
                ) from exc
            log.info("broker %s not ready yet (%s); retrying", kafka.bootstrap, type(exc).__name__)
            time.sleep(0.5)


def _create_missing(kafka: KafkaSettings, timeout_s: float) -> None:
    admin = KafkaAdminClient(
        **client_options(kafka), client_id="dmm-admin", bootstrap_timeout_ms=int(timeout_s * 1000)
    )
    try:
        wanted = monitor_topics(kafka)
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": partitions, "replication_factor": kafka.replication_factor}
            for name, partitions in wanted.items()
            if name not in existing
        }
        if not missing:
            return
        result = admin.create_topics(missing, raise_errors=False)
        for topic in result["topics"]:
            if topic["error_code"] == 0:
                continue
            error = for_code(topic["error_code"])
            if error is not TopicAlreadyExistsError:  # another process may have just created it
                raise error(f"creating topic {topic['name']}: {topic.get('error_message') or error.description}")
        admin.wait_for_topics(list(missing), timeout_ms=int(timeout_s * 1000))
        log.info("created topics %s on %s", sorted(missing), kafka.bootstrap)
    finally:
        admin.close()


def topic_id(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> str:
    """The topic's UUID: it changes when the topic is recreated (or an in-memory broker restarts).

    The worker ties its progress marks to it, so offsets of a new log are never mistaken for offsets it
    already processed. A describe answered with an error (the topic not known to that broker yet) is asked
    again, never taken for "no id": the marks of every log without one are shared. Empty only if the broker
    answers without error and without an id (Kafka before 2.8).
    """
    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(**client_options(kafka), client_id="dmm-admin", bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        while True:
            described = admin.describe_topics([topic])[0]
            if described["error_code"] == 0:
                found = str(described.get("topic_id") or "")
                return "" if found.strip("0-") == "" else found  # the null UUID is no id either
            if time.monotonic() > deadline:
                error = for_code(described["error_code"])
                raise error(f"describing topic {topic} on {kafka.bootstrap}: {error.description}")
            time.sleep(0.2)
    finally:
        admin.close()
