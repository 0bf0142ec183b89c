"""The one typed settings object: every knob of the monitor, from `DMM_*` env vars.

Nested sections use `__`, e.g. `DMM_RULES__PRICE_OUTLIER_RATIO=4`. A dotenv file
named by `DMM_ENV_FILE` (default `.env`) is read too. Defaults point at the
embedded stack on this machine.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """Where the broker is and how to talk to it (SASL/TLS pass straight through)."""

    bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = Field("", description="prefix for every topic name, for shared clusters")
    events_partitions: int = Field(
        1, description="partitions of dm.events when the monitor creates it; 1 keeps replays deterministic"
    )
    replication_factor: int = 1
    group_id: str = "dmm-worker"
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 500
    fetch_max_wait_ms: int = Field(
        100,
        description="longest a fetch of dm.events waits on the broker for new records: Apache Kafka answers as "
        "soon as some arrive, the embedded Tansu broker later (a record's delivery measured there: 86 ms at p50 "
        "and 195 ms at worst with the client's default of 500 ms, 12 and 49 ms with 100)",
    )
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="e.g. SCRAM-SHA-512")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def events_topic(self) -> str:
        return self.topic("dm.events")

    @property
    def alerts_topic(self) -> str:
        return self.topic("dm.alerts")

    @property
    def rejected_topic(self) -> str:
        return self.topic("dm.rejected")

    @property
    def rules_topic(self) -> str:
        return self.topic("dm.rules")


class ClickHouseSettings(BaseModel):
    """Embedded chdb on a local directory unless `url` names a ClickHouse server."""

    url: str | None = Field(None, description="e.g. https://ch.example:8443; unset = embedded chdb")
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "datamarket"
    verify_tls: bool = True
    ca_cert: Path | None = None
    chdb_path: Path = Field(Path(".dmm/chdb"), description="data directory of the embedded store")
    insert_retry_max_s: float = Field(30.0, description="cap of the exponential backoff on failed writes")


class RuleSettings(BaseModel):
    """Every surveillance threshold and window; defaults are the contract's."""

    wash_trading_window_s: int = 24 * 3600
    wash_trading_max_parties: int = 3
    unlisted_product_enabled: bool = True
    price_outlier_ratio: Decimal = Decimal(3)
    cross_exchange_gap_ratio: Decimal = Decimal(2)
    volume_spike_ratio: Decimal = Decimal(5)
    volume_spike_history_windows: int = 30
    volume_spike_min_windows: int = 10
    volume_spike_min_amount: Decimal = Decimal(100_000)
    exchange_silent_s: int = 120
    exchange_silent_wallclock: bool = True


class IngestSettings(BaseModel):
    """Who may write dm.events (contract, Amendment 1: producer keys)."""

    keys_file: Path | None = Field(
        None,
        description="CSV `exchange_id,key_id,secret` (secret: hex, >= 32 bytes); set = every event of a known "
        "exchange must carry `dm-key` / `dm-sig` headers (HMAC-SHA256 of the value), else `unauthenticated`",
    )


class SqlSettings(BaseModel):
    """Limits ClickHouse itself enforces on every read the monitor runs for someone else (`dmm sql`, the console),
    on connections of their own with `readonly = 1`: a runaway query stops there instead of holding the store."""

    max_execution_s: float = Field(30.0, gt=0, description="a read running longer is stopped (max_execution_time)")
    max_result_rows: int = Field(
        1_000_000, ge=1, description="a read returning more rows fails instead of filling the worker's memory"
    )
    max_result_bytes: int = Field(
        256 * 2**20, ge=1, description="the same, in bytes of the result as ClickHouse holds it"
    )
    max_memory_bytes: int = Field(2 * 2**30, ge=1, description="memory one read may use (max_memory_usage)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DMM_",
        env_nested_delimiter="__",
        env_file=os.environ.get("DMM_ENV_FILE", ".env"),
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    rules: RuleSettings = RuleSettings()
    ingest: IngestSettings = IngestSettings()
    ops_key: SecretStr | None = Field(
        None,
        description="hex secret that signs rule changes on dm.rules (`dm-key: ops`, `dm-sig`); unset on the "
        "embedded stack = generated into its work directory; any unsigned change is refused",
    )
    max_clock_skew_s: float = Field(
        300.0, gt=0, description="an event more than this ahead of the wall clock is rejected as `future_event`"
    )

    web_host: str = Field(
        "127.0.0.1", description="address of the worker's web server; beyond loopback it needs DMM_CONSOLE_TOKEN"
    )
    web_port: int = Field(6066, description="worker web server: the console, /metrics, /healthz, /api/*")
    web_allowed_hosts: list[str] = Field(
        [],
        description="more names the web server answers to (`Host` header, e.g. [\"dmm.example.cn:6066\"]), besides "
        "web_host:web_port (and localhost when that is loopback): any other name is refused (DNS rebinding)",
    )
    console_token: SecretStr | None = Field(
        None,
        description="bearer token every state-changing request must carry (ack / resolve, from the console or "
        "`dmm alerts`), and, beyond loopback, every /api read; unset = read-only (`dmm up` generates one)",
    )
    sql: SqlSettings = SqlSettings()

    @property
    def web_url(self) -> str:
        """The worker's web server as this machine reaches it (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.web_port}"

    @property
    def sql_socket(self) -> Path:
        """Where a worker on the embedded store answers `dmm sql`: a Unix socket beside the store, mode 0600, so
        only the worker's OS user (who can read the store's files anyway) may query it."""
        return self.clickhouse.chdb_path.parent / "sql.sock"

    @property
    def state_path(self) -> Path:
        """Where the worker keeps local state (`state_dir`, or `state` beside the embedded store)."""
        return self.state_dir or self.clickhouse.chdb_path.parent / "state"

    @property
    def console_token_file(self) -> Path:
        """Where `dmm up` keeps the console token it generated (mode 0600), for `dmm alerts` to send."""
        return self.clickhouse.chdb_path.parent / "console-token"

    allowed_lateness_s: int = Field(300, description="events older than watermark minus this are late")
    partition_idle_s: float = Field(
        30.0, description="a dm.events partition silent this long (wall clock) stops holding back the market watermark"
    )
    dedup_horizon_s: int = Field(24 * 3600, description="how long an (exchange_id, event_id) is remembered")
    state_dir: Path | None = Field(
        None,
        description="local disk the worker keeps its duplicate index and older wash-trading legs on (rebuilt "
        "from the store on start, so it needs no backup; a graceful stop leaves them in `kept/` for the next start "
        "to take); unset = `state` beside the embedded store's directory",
    )
    wash_trading_ram_legs: int = Field(
        20_000,
        ge=0,
        description="trades (legs) the wash-trading rule holds in RAM, the newest (~0.6 KiB each); the rest of its "
        "24 h of legs go to the state directory",
    )
    batch_max: int = Field(20_000, description="most messages decoded and written as one batch")
    batch_within_s: float = Field(0.2, description="longest wait to fill a batch")
    flush_interval_s: float = Field(1.0, description="how often windows are flushed and offsets released")
    backlog_flush_interval_s: float = Field(
        5.0,
        description="the same while working through a backlog (more than a batch waits on the broker): each "
        "flush slows the inserts after it, so catching up flushes less often",
    )
    usage_as_columns: bool = Field(
        True,
        description="read usage events (most of the traffic) as Arrow columns, not one object each; false: "
        "every message through the per-event validator (same outcome, slower)",
    )
    log_level: str = "INFO"
    log_json: bool = Field(True, description="structured JSON logs (false: human-readable)")
    supervisor_restarts: int = Field(
        0, description="times `dmm up` has restarted this worker (set by the supervisor, shown in /metrics)"
    )
    alert_webhook_url: str | None = Field(
        None, description="POST each surveillance alert (its dm.alerts JSON) here; unset = no webhook"
    )
    alert_webhook_token: SecretStr | None = Field(None, description="sent as `Authorization: Bearer …` if set")
    alert_webhook_queue_max: int = Field(
        1000, ge=1, description="alerts waiting for the webhook; beyond it the oldest is dropped (and counted)"
    )
    alert_webhook_retries: int = Field(5, ge=0, description="retries per alert, with exponential backoff")
    alert_webhook_timeout_s: float = Field(5.0, gt=0, description="timeout of one POST")


def settings_env(settings: BaseModel, prefix: str = "DMM_") -> dict[str, str]:
    """The settings as DMM_* environment variables (to start a worker process with them)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            env.update(settings_env(value, f"{key}__"))
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, list):
            env[key] = json.dumps(value)  # pydantic-settings reads a list from the environment as JSON
        elif value is not None:
            env[key] = str(value)
    return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
