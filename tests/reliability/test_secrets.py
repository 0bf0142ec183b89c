"""Credentials reach the clients that need them, and nowhere else (logs, /metrics, error messages)."""

from __future__ import annotations

import base64
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import faust
import pytest
from pydantic import SecretStr

from dmm.query import query_rows
from dmm.stack import EmbeddedStack
from settings import ClickHouseSettings, KafkaSettings
from sinks.clickhouse.store import ServerStore, StoreError
from streams.app import broker_credentials
from streams.kafka_client import aiokafka_options, client_options
from tests.support.stack import settings_for

CANARY_KAFKA = "kafka-canary-7f3a9c"
CANARY_CLICKHOUSE = "clickhouse-canary-b41e02"


def scram_tls(tmp_path: Path) -> KafkaSettings:
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    return KafkaSettings(
        bootstrap="kafka-1.example:9093,kafka-2.example:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="dmm-worker",
        sasl_password=SecretStr(CANARY_KAFKA),
        ssl_cafile=ca,
    )


def test_kafka_sasl_scram_and_tls_pass_through_to_every_client(tmp_path: Path) -> None:
    kafka = scram_tls(tmp_path)
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "dmm-worker" and credentials.password == CANARY_KAFKA
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL" and isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED and credentials.ssl_context.check_hostname
    assert CANARY_KAFKA not in repr(credentials)
    sync = client_options(kafka)
    assert sync["security_protocol"] == "SASL_SSL" and sync["sasl_mechanism"] == "SCRAM-SHA-512"
    assert sync["sasl_plain_username"] == "dmm-worker" and sync["sasl_plain_password"] == CANARY_KAFKA
    assert sync["ssl_cafile"] == str(kafka.ssl_cafile)
    assert sync["bootstrap_servers"] == ["kafka-1.example:9093", "kafka-2.example:9093"]
    asynchronous = aiokafka_options(kafka)
    assert asynchronous["sasl_plain_password"] == CANARY_KAFKA
    assert isinstance(asynchronous["ssl_context"], ssl.SSLContext)
    # TLS without SASL, and plain text: nothing invented.
    tls_only = broker_credentials(KafkaSettings(security_protocol="SSL", ssl_cafile=kafka.ssl_cafile))
    assert isinstance(tls_only, faust.SSLCredentials)
    assert broker_credentials(KafkaSettings()) is None
    # The settings object itself never prints the secret.
    assert CANARY_KAFKA not in repr(kafka) and CANARY_KAFKA not in str(kafka.model_dump())


class _CaptureClickHouse(BaseHTTPRequestHandler):
    """A local HTTP endpoint standing in for a ClickHouse server: records what the client sends, then fails."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"Code: 516. DB::Exception: test endpoint refuses everything")

    do_GET = do_POST = _handle

    def log_message(self, *args: object) -> None:
        return None


def test_clickhouse_user_and_password_reach_the_wire_but_not_the_error() -> None:
    """ServerStore against a capturing endpoint (no ClickHouse server can run here): credentials are
    sent as the client's auth headers; the StoreError the worker would log does not contain them."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CaptureClickHouse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = ClickHouseSettings(
            url=f"http://127.0.0.1:{server.server_address[1]}", user="dmm", password=SecretStr(CANARY_CLICKHOUSE)
        )
        with pytest.raises(StoreError) as failure:
            ServerStore(settings)
    finally:
        server.shutdown()
    assert _CaptureClickHouse.seen, "the client never reached the endpoint"
    sent = " ".join(str(r["headers"]) + r["path"] for r in _CaptureClickHouse.seen)
    basic = base64.b64encode(f"dmm:{CANARY_CLICKHOUSE}".encode()).decode()
    assert CANARY_CLICKHOUSE in sent or basic in sent, sent
    assert CANARY_CLICKHOUSE not in str(failure.value) and basic not in str(failure.value)


def test_clickhouse_tls_settings_pass_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test double: clickhouse_connect.get_client is replaced by a recorder (no TLS ClickHouse here)."""
    import clickhouse_connect

    captured: dict[str, Any] = {}

    class Client:
        def close(self) -> None:
            return None

    def fake_get_client(**kwargs: Any) -> Client:
        captured.update(kwargs)
        return Client()

    monkeypatch.setattr(clickhouse_connect, "get_client", fake_get_client)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ServerStore(
        ClickHouseSettings(
            url="https://ch.example:8443", user="dmm", password=SecretStr(CANARY_CLICKHOUSE), ca_cert=ca
        )
    ).close()
    assert captured["dsn"] == "https://ch.example:8443" and captured["username"] == "dmm"
    assert captured["password"] == CANARY_CLICKHOUSE
    assert captured["verify"] is True and captured["ca_cert"] == str(ca)


@pytest.mark.slow
def test_secrets_never_reach_logs_or_metrics(tmp_path: Path) -> None:
    """A real worker (debug logging) configured with canary passwords: they appear nowhere it writes.

    Kafka stays PLAINTEXT against Tansu (only the password field is set); the ClickHouse password
    is set while the embedded store is used.
    """
    base = settings_for(tmp_path)
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"sasl_username": "dmm", "sasl_password": SecretStr(CANARY_KAFKA)}),
            "clickhouse": base.clickhouse.model_copy(update={"password": SecretStr(CANARY_CLICKHOUSE)}),
            "log_level": "DEBUG",
        }
    )
    with EmbeddedStack(settings, tmp_path) as stack:
        import urllib.request

        base_url = f"http://{settings.web_host}:{settings.web_port}"
        pages = [
            urllib.request.urlopen(f"{base_url}{p}", timeout=5).read().decode() for p in ("/metrics", "/api/status")
        ]
        assert query_rows(settings, "SELECT 1 AS one") == [{"one": 1}]
        # A failing query's error goes back to the client and into the log.
        with pytest.raises(RuntimeError):
            query_rows(settings, "SELECT no_such_column FROM datamarket.trades")
        stack.stop_worker()
        log = stack.worker_log.read_text(errors="replace")
    assert len(log) > 1000, "debug logging should have written plenty"
    for text in (log, *pages):
        assert CANARY_KAFKA not in text
        assert CANARY_CLICKHOUSE not in text
