"""Producer SDK for exchanges: publish contract dm.v1 events to `dm.events`.

Integration guide. Build events with the `models` package (they are validated
on construction), publish them, and flush before you consider them delivered:

    from models import EVENT_ADAPTER
    from dmm.producer import DeliveryError, EventProducer

    with EventProducer() as producer:          # broker from DMM_KAFKA__* settings
        producer.publish(EVENT_ADAPTER.validate_json(raw_json))
        producer.flush(timeout=30)             # raises DeliveryError on any loss

- Keys follow the contract (`product_id` for listing/trade/usage, `exchange_id`
  for heartbeat), so each product's events stay in order in one partition.
- Delivery is `acks="all"` and idempotent: retries never duplicate a message.
- `publish` only queues; `flush` (also run when the `with` block ends normally)
  waits for the broker and raises `DeliveryError` listing every message that was
  not acknowledged. A reported message may still have reached the broker, so a
  resend can duplicate it; the monitor counts such a duplicate once.
- Keyword overrides go to kafka-python's `KafkaProducer`, e.g.
  `EventProducer(linger_ms=50, compression_type="gzip")`.

Signing. Where the monitor is given producer keys (contract, Amendment 1), it
rejects every message of your exchange that is not signed with one of its keys
as `unauthenticated`. Give the producer your key and it signs each message (the
`dm-key` and `dm-sig` record headers: HMAC-SHA256 of the value bytes):

    from pathlib import Path
    from models.keys import load_keys

    key = load_keys(Path("shdex-keys.csv")).signing_key("SHDEX")   # exchange_id,key_id,secret
    with EventProducer(signing_key=key) as producer:
        ...

To rotate, add the new key to your file first (the monitor accepts both), move
producers to it, then ask the regulator to remove the old one.

Heartbeats. The monitor raises the critical `exchange_silent` alert after 120 s
without an event from an exchange, quiet markets included. Run a
`HeartbeatSender` beside your publishing; it sends the contract's heartbeat
through the same producer every `interval_s` from a background thread:

    with EventProducer() as producer, HeartbeatSender(producer, "SHDEX", interval_s=10):
        ...                                    # publish as usual
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from models import SCHEMA, AnyEvent, Heartbeat, occurred_ms, partition_key
from models.keys import SigningKey
from settings import KafkaSettings, get_settings
from streams.kafka_client import client_options

_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 10,
    "batch_size": 256 * 1024,
    "max_block_ms": 15_000,
    "bootstrap_timeout_ms": 10_000,
    "client_id": "dmm-producer",
}
_ERRORS_SHOWN = 10

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryFailure:
    """One message the broker did not acknowledge; `seq` is its 1-based publish order."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes
    error: BaseException

    def __str__(self) -> str:
        reason = str(self.error)
        if not reason.startswith(type(self.error).__name__):  # kafka-python errors already name themselves
            reason = f"{type(self.error).__name__}: {reason}"
        return f"#{self.seq} key={self.key!r} ({len(self.value)} bytes): {reason}"


class DeliveryError(KafkaError):  # type: ignore[misc]  # kafka-python ships no types: its KafkaError is Any
    """Messages were not delivered; `failures` holds every one of them."""

    def __init__(self, failures: list[DeliveryFailure]) -> None:
        self.failures = failures
        lines = [str(failure) for failure in failures[:_ERRORS_SHOWN]]
        if len(failures) > _ERRORS_SHOWN:
            lines.append(f"... and {len(failures) - _ERRORS_SHOWN} more")
        super().__init__(f"{len(failures)} message(s) not delivered:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class _InFlight:
    key: bytes | None
    value: bytes


class EventProducer:
    """Publishes to the events topic with contract keys and tracks every delivery's outcome."""

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        topic: str | None = None,
        signing_key: SigningKey | None = None,
        **overrides: Any,
    ) -> None:
        """`signing_key`: your exchange's key; every message is then signed with it (unsigned: None)."""
        self.kafka = kafka if kafka is not None else get_settings().kafka
        self.topic = topic or self.kafka.events_topic
        self.signing_key = signing_key
        self._producer = KafkaProducer(**{**client_options(self.kafka), **_DEFAULTS, **overrides})
        self._lock = threading.Lock()
        self._in_flight: dict[int, _InFlight] = {}
        self._failures: list[DeliveryFailure] = []
        self._published = 0
        self._sent = 0
        self._failed = 0

    @property
    def sent(self) -> int:
        """Messages the broker acknowledged."""
        return self._sent

    @property
    def failed(self) -> int:
        """Messages reported (or about to be reported) in a DeliveryError."""
        return self._failed

    def publish(self, event: AnyEvent) -> None:
        """Queue one event, serialised by its model, keyed as the contract says and signed if a key was given."""
        signing_key = self.signing_key
        if signing_key is not None and event.exchange_id != signing_key.exchange_id:
            raise ValueError(
                f"event {event.event_id!r} names exchange {event.exchange_id} but this producer signs with "
                f"{signing_key.exchange_id}'s key {signing_key.key_id!r}: the monitor would reject it as "
                "unauthenticated; publish it through a producer holding that exchange's key"
            )
        value = event.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")
        self.publish_raw(value, partition_key(event).encode("utf-8"))

    def publish_raw(self, value: bytes, key: bytes | None = None, signing_key: SigningKey | None = None) -> None:
        """Queue bytes as they are, signed with `signing_key` (else the producer's own key, if any); raise
        DeliveryError at once if the client refuses them."""
        signer = signing_key or self.signing_key
        headers = signer.headers(value) if signer is not None else None
        with self._lock:
            self._published += 1
            seq = self._published
            self._in_flight[seq] = _InFlight(key, value)
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            self._fail(seq, exc)
            raise self._take_failures() from exc
        except BaseException:  # a caller bug (e.g. str instead of bytes): nothing was queued
            with self._lock:
                self._in_flight.pop(seq, None)
            raise
        future.add_callback(self._on_sent, seq)
        future.add_errback(self._fail, seq)

    def _on_sent(self, seq: int, _metadata: object) -> None:
        with self._lock:
            if self._in_flight.pop(seq, None) is not None:
                self._sent += 1

    def _fail(self, seq: int, error: BaseException) -> None:
        with self._lock:
            message = self._in_flight.pop(seq, None)
            if message is None:  # already reported as timed out by flush
                return
            self._failed += 1
            self._failures.append(DeliveryFailure(seq, self.topic, message.key, message.value, error))

    def _take_failures(self) -> DeliveryError:
        with self._lock:
            failures, self._failures = sorted(self._failures, key=lambda f: f.seq), []
        return DeliveryError(failures)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued message; raise DeliveryError for each failed or still unacknowledged one.

        With `timeout=None` it waits until the producer's `delivery_timeout_ms` settles every message.
        """
        started = time.monotonic()
        with suppress(KafkaTimeoutError):  # what is still in flight is reported below
            self._producer.flush(timeout=timeout)
        with self._lock:
            late = sorted(self._in_flight.items())
            self._in_flight.clear()
            for seq, message in late:
                error = KafkaTimeoutError(f"not acknowledged within {time.monotonic() - started:.1f}s of flush")
                self._failed += 1
                self._failures.append(DeliveryFailure(seq, self.topic, message.key, message.value, error))
            has_failures = bool(self._failures)
        if has_failures:
            raise self._take_failures()

    def close(self, timeout: float = 10.0) -> None:
        """Release connections, abandoning what is unsent after `timeout`; `flush` first to know what was delivered."""
        try:
            self._producer.close(timeout=timeout)
        except KafkaTimeoutError:
            # kafka-python 3.0.12 raises from close() when its flush times out and leaves the sender
            # thread running; abort the unsent batches (their futures fail) and close for real.
            self._producer._sender.force_close()
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()


class HeartbeatSender:
    """Publishes one exchange's heartbeat every `interval_s` on a daemon thread, the first at once.

    `seq` counts up by one per heartbeat from `start_seq` (pass your last seq + 1 to keep it
    rising across restarts); `event_id` is `<exchange>-H-<occurred ms>-<seq>`, unique even when
    `seq` starts over. A heartbeat the client refuses is logged and counted in `failed`, and the
    thread goes on; delivery failures surface in the producer's `flush` like any other message.
    """

    def __init__(self, producer: EventProducer, exchange_id: str, interval_s: float = 10.0, start_seq: int = 0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.producer = producer
        self.exchange_id = exchange_id
        self.interval_s = interval_s
        self._seq = start_seq
        self._heartbeat(datetime.now(UTC))  # an unknown exchange code fails here, not in the thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    def _heartbeat(self, at: datetime) -> Heartbeat:
        return Heartbeat.model_validate(
            {
                "schema": SCHEMA,
                "type": "heartbeat",
                "event_id": f"{self.exchange_id}-H-{occurred_ms(at)}-{self._seq}",
                "exchange_id": self.exchange_id,
                "occurred_at": at.isoformat(timespec="milliseconds"),
                "seq": self._seq,
            }
        )

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("HeartbeatSender already started")
        self._thread = threading.Thread(target=self._run, name=f"dmm-heartbeat-{self.exchange_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending (a heartbeat being published completes); flush the producer to deliver it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.publish(self._heartbeat(datetime.now(UTC)))
                self.sent += 1
            except KafkaError as exc:
                self.failed += 1
                log.warning("heartbeat not queued", extra={"exchange_id": self.exchange_id, "error": str(exc)[:500]})
            self._seq += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
