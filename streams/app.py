"""The Faust worker: consume dm.events in batches, hand them to the pipeline, ack when stored.

Faust provides the consumer group, batching (`noack_take`), the producer for
dm.alerts / dm.rejected, timers and the web server. Nothing of the monitor's
state lives in Faust tables: it is rebuilt from ClickHouse on start. Offsets are
acknowledged by hand, only after the batch's rows are stored *and* its windows
flushed, so Faust never commits a message whose effects could still be lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

import faust
from faust.types import EventT, StreamT

from settings import KafkaSettings, Settings
from sinks import prometheus as metrics
from sinks.clickhouse import Store, open_store
from streams.kafka_client import TLS_PROTOCOLS, ssl_context, topic_id
from streams.pipeline import Message, Pipeline
from streams.web import register_routes

log = logging.getLogger("dmm.worker")


def broker_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """SASL/SCRAM and TLS from settings, passed through to aiokafka."""
    context = ssl_context(kafka) if kafka.security_protocol in TLS_PROTOCOLS else None
    if kafka.sasl_mechanism:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context is not None else None


def create_app(settings: Settings, store: Store | None = None) -> faust.App:
    kafka = settings.kafka
    app = faust.App(
        kafka.group_id,
        broker=[f"kafka://{host}" for host in kafka.bootstrap.split(",")],
        broker_credentials=broker_credentials(kafka),
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        broker_commit_interval=settings.flush_interval_s,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=True,
        topic_partitions=kafka.events_partitions,
        topic_replication_factor=kafka.replication_factor,
        producer_acks=-1,
        stream_wait_empty=False,  # un-acked tail is recognised as redelivery on restart; never hang on stop
        stream_buffer_maxsize=settings.batch_max * 2,
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        store="memory://",
        datadir=str(settings.clickhouse.chdb_path.parent / "faust"),
    )
    events = app.topic(kafka.events_topic, partitions=kafka.events_partitions)
    worker = MonitorWorker(app, settings, store)
    register_routes(app, settings, worker)

    @app.agent(events, name="ingest")
    async def ingest(stream: StreamT[Any]) -> None:
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_within_s):
            try:
                await worker.handle(stream, batch)
            except Exception:
                # In-memory state may now be ahead of the store: never let Faust restart the agent
                # on top of it. Exit; the restart rebuilds state from ClickHouse and replays the batch.
                log.critical("unexpected error while processing a batch; exiting for a clean restart", exc_info=True)
                logging.shutdown()
                os._exit(70)

    @app.agent(app.topic(kafka.rules_topic), name="rules")
    async def rule_changes(stream: StreamT[Any]) -> None:
        async for raw in stream:
            await (await worker.start()).change_rules(raw)

    @app.timer(settings.flush_interval_s)
    async def flush_windows() -> None:
        await worker.flush_and_ack()

    @app.timer(5.0)
    async def wall_clock_rules() -> None:
        if worker.pipeline is not None:
            await worker.pipeline.tick()

    @app.timer(5.0)
    async def consumer_lag() -> None:
        """Apart from the rules: `tick` waits for the pipeline lock, which a store outage holds,
        and the lag must keep growing on /metrics exactly then."""
        await worker.measure_lag()

    @app.task
    async def restore_state() -> None:
        await worker.start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(graceful()))

    async def graceful() -> None:
        """SIGTERM: flush windows, release and commit offsets, then stop as on Ctrl-C."""
        try:
            await asyncio.wait_for(worker.flush_and_ack(), timeout=30)
            await app.commit(None)
            log.info("shutdown: windows flushed, offsets acknowledged and committed")
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    app.monitor_worker = worker  # type: ignore[attr-defined]
    return app


class MonitorWorker:
    """Glue between Faust's events and the pipeline; owns the pending acks."""

    def __init__(self, app: faust.App, settings: Settings, store: Store | None) -> None:
        self.app = app
        self.settings = settings
        self._store = store
        self.pipeline: Pipeline | None = None
        self.pending: list[tuple[StreamT[Any], EventT]] = []
        self._last_flush = time.monotonic()
        self._topics: dict[str, faust.TopicT] = {}
        self._starting = asyncio.Lock()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.clickhouse)
        return self._store

    async def start(self) -> Pipeline:
        """One pipeline per process, however many callers (start-up task, first batch, rules) race here:
        a batch handled by a second instance would have its windows and identities forgotten."""
        async with self._starting:
            if self.pipeline is None:
                kafka = self.settings.kafka
                log_id = await asyncio.to_thread(topic_id, kafka, kafka.events_topic)
                pipeline = Pipeline(self.settings, self.store, self._publish, topic_id=log_id)
                await asyncio.to_thread(pipeline.restore)
                self.pipeline = pipeline
        return self.pipeline

    async def handle(self, stream: StreamT[Any], batch: list[EventT]) -> None:
        pipeline = await self.start()
        messages = [
            Message(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
            for e in batch
        ]
        await pipeline.handle(messages)
        self.pending.extend((stream, event) for event in batch)
        if time.monotonic() - self._last_flush >= self.settings.flush_interval_s:
            await self.flush_and_ack()

    async def flush_and_ack(self) -> None:
        """Flush windows, make sure alerts/rejections reached Kafka, then release the offsets."""
        if self.pipeline is None:
            return
        pending, self.pending = self.pending, []
        await self.pipeline.flush()
        await self.app.producer.flush()
        for stream, event in pending:
            await stream.ack(event)
        self._last_flush = time.monotonic()

    async def measure_lag(self) -> None:
        if self.pipeline is None:
            return
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.kafka.events_topic:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            processed = self.pipeline.progress.marks.get(tp.partition, -1)
            metrics.CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, highwater - 1 - processed))

    def status(self) -> dict[str, Any]:
        """What /api/status reports: progress per partition and whether anything is in flight."""
        if self.pipeline is None:
            return {"ready": False}
        consumer = self.app.consumer
        partitions = {}
        for tp in consumer.assignment():
            if tp.topic == self.settings.kafka.events_topic:
                partitions[tp.partition] = {
                    "highwater": consumer.highwater(tp),
                    "processed": self.pipeline.progress.marks.get(tp.partition, -1),
                }
        return {
            "ready": True,
            "partitions": partitions,
            "pending_acks": len(self.pending),
            "dirty_windows": len(self.pipeline.windows.dirty),
            "watermark_ms": self.pipeline.ctx.watermark_ms,
            "rules": self.pipeline.ctx.rules.model_dump(mode="json"),
        }

    async def _publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic not in self._topics:
            self._topics[topic] = self.app.topic(topic)
        await self._topics[topic].send(key=key, value=value)
