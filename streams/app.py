"""The Faust worker: dm.events in whole fetches through the pipeline, committed once stored.

Faust is the application: it runs the event consumer service (`streams.consumer`),
the rules agent, the timers (window flush, wall-clock rules, lag), the producer for
dm.alerts / dm.rejected and the web server. Nothing of the monitor's state lives
in Faust tables: it is rebuilt from ClickHouse on start. Offsets are committed by
hand, only after the batch's rows are stored *and* its windows flushed, so no
message whose effects could still be lost is ever committed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, cast

import faust
from faust.types import StreamT

from settings import KafkaSettings, RuleSettings, Settings
from sinks.clickhouse import Store, open_store
from sinks.prometheus import PipelineSensor
from sinks.webhook import alert_webhook
from streams.consumer import EventConsumer
from streams.detectors import Scope
from streams.kafka_client import TLS_PROTOCOLS, ssl_context, topic_id
from streams.market import MarketStage
from streams.pipeline import Pipeline, Prepared
from streams.records import Record
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


# A batch allocates thousands of short-lived objects (models, rows), about six per event, alive together until
# the batch is stored. A young collection walks every one of them and frees almost none (refcounts do): every
# 700 allocations it took about 18 % of the pipeline's time, every 100,000 still ~10 % (one per 20,000-event
# batch). At 500,000 the objects of two batches in flight fit under it and it runs when the state that lives on
# (detectors, book) has grown by that much.
GC_THRESHOLDS = (500_000, 20, 1000)


def create_app(settings: Settings, store: Store | None = None) -> faust.App:
    gc.set_threshold(*GC_THRESHOLDS)
    kafka = settings.kafka
    app = faust.App(
        f"{kafka.group_id}-control",  # rules and app bookkeeping; dm.events has its own group (kafka.group_id)
        broker=[f"kafka://{host}" for host in kafka.bootstrap.split(",")],
        broker_credentials=broker_credentials(kafka),
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=True,
        topic_partitions=1,
        topic_replication_factor=kafka.replication_factor,
        producer_acks=-1,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        store="memory://",
        datadir=str(settings.clickhouse.chdb_path.parent / "faust"),
    )
    worker = MonitorWorker(app, settings, store)
    cast(Any, app.service)(worker.consumer)  # typed as taking a service class; an instance is served the same
    register_routes(app, settings, worker)

    @app.agent(app.topic(kafka.rules_topic), name="rules")
    async def rule_changes(stream: StreamT[Any]) -> None:
        async for change in stream.events():  # events, not values: the signature is in the record's headers
            await (await worker.start()).change_rules(change.value, change.headers)

    @_every(app, 5.0)
    async def wall_clock_rules() -> None:
        if worker.pipeline is not None:
            await worker.pipeline.tick()
        if worker.pipeline is not None and worker.market is not None:
            market = worker.market
            await worker.pipeline.emit_alerts(lambda: market.tick(int(time.time() * 1000)))

    @_every(app, settings.flush_interval_s)
    async def market_stage() -> None:
        """Only while workers share dm.events, in the one that owns partition 0 (see streams.market)."""
        if worker.pipeline is not None and worker.market is not None:
            await worker.pipeline.emit_alerts(worker.market.poll, then=worker.market.record)

    @_every(app, 5.0)
    async def consumer_lag() -> None:
        """Apart from the rules: `tick` waits for the pipeline lock, which a store outage holds,
        and the lag must keep growing on /metrics exactly then."""
        worker.measure_lag()

    async def restore_state() -> None:
        await worker.start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(graceful()))

    app.task(restore_state)

    async def graceful() -> None:
        """SIGTERM: flush windows, commit offsets, then stop as on Ctrl-C."""
        try:
            await asyncio.wait_for(worker.consumer.flush_and_commit(), timeout=30)
            log.info("shutdown: windows flushed, offsets acknowledged and committed")
            if worker.webhook is not None:
                await asyncio.to_thread(worker.webhook.close, 5.0)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    return app


Job = Callable[[], Awaitable[None]]


def _every(app: faust.App, seconds: float) -> Callable[[Job], Job]:
    """`app.timer`, typed (faust's decorator is typed as a bare `Callable`)."""
    timer: Callable[[Job], Job] = app.timer(seconds)
    return timer


def _exit_for_a_clean_restart() -> NoReturn:
    """In-memory state may now be ahead of the store: never carry on from it. Exit; the restart
    rebuilds state from ClickHouse and every uncommitted batch is delivered again."""
    log.critical("unexpected error while processing a batch; exiting for a clean restart", exc_info=True)
    logging.shutdown()
    os._exit(70)


class MonitorWorker:
    """Glue between the consumer service, the pipeline and the web routes: the consumer's `BatchHandler`."""

    def __init__(self, app: faust.App, settings: Settings, store: Store | None) -> None:
        self.app = app
        self.settings = settings
        self._store = store
        self.pipeline: Pipeline | None = None
        self.market: MarketStage | None = None  # market-wide rules, when workers share dm.events and this one leads
        self._role: tuple[Scope, bool] | None = None  # (rules scope, market stage) of the current pipeline
        self.sensor = PipelineSensor()  # one for the process: its figures go on across pipelines
        self.consumer = EventConsumer(settings, self, self.sensor, loop=app.loop)
        self.webhook = alert_webhook(settings)
        self._topics: dict[str, faust.TopicT] = {}
        self._starting = asyncio.Lock()
        self._assigned = asyncio.Event()  # state is restored only once this worker owns its partitions

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.clickhouse)
        return self._store

    async def start(self) -> Pipeline:
        """One pipeline per process, however many callers (start-up task, first batch, rules) race here:
        a batch handled by a second instance would have its windows and identities forgotten. It is
        restored after the first assignment, so it includes whatever the partitions' previous owner stored."""
        await self._assigned.wait()
        async with self._starting:
            if self.pipeline is None:
                self.pipeline = await self._new_pipeline()
        return self.pipeline

    def close(self) -> None:
        """On stop, batches flushed: leave the local state for the next start (`streams.kept_state`), then close
        the store (an embedded one must not be torn down with the interpreter)."""
        if self.pipeline is not None:
            try:
                self.pipeline.keep_state()
            except Exception:  # the next start rebuilds from the store: it only costs time
                log.warning("local state not kept", exc_info=True)
            self.pipeline = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def holding(self) -> int:
        return self.pipeline.holding if self.pipeline is not None else 0

    async def prepare(self, messages: Sequence[Record], ends: dict[int, int | None]) -> Prepared:
        pipeline = await self.start()
        try:
            return pipeline.prepare(messages, ends)
        except Exception:
            _exit_for_a_clean_restart()

    async def store_batch(self, prepared: Prepared) -> dict[int, int]:
        assert self.pipeline is not None
        try:
            processed = await self.pipeline.persist(prepared)
        except Exception:
            _exit_for_a_clean_restart()
        self.measure_lag()  # per batch, so a backlog shows while it drains (the timer covers a stalled store)
        return processed

    async def flush(self) -> None:
        """Windows rebuilt and alerts/rejections acknowledged by Kafka: offsets may now be committed."""
        if self.pipeline is not None:
            await self.pipeline.flush()
            await self.app.producer.flush()

    async def partitions_changed(self, assigned: set[int], gained: set[int]) -> None:
        """Gaining partitions another worker wrote to: rebuild state from the store, which holds its rows.
        Then the market clock waits for every owned partition (see streams.watermark)."""
        first = not self._assigned.is_set()
        self._assigned.set()
        if (gained or self._role != self._wanted_role()) and not first:  # e.g. a second worker joined
            async with self._starting:
                self.pipeline = await self._new_pipeline()
        pipeline = await self.start()
        pipeline.surveillance.clock.expect(assigned)
        # Resume where the store says processing got to (records held back by alignment were not).
        self.consumer.seek({partition: mark + 1 for partition, mark in pipeline.progress.marks.items()})

    def _wanted_role(self) -> tuple[Scope, bool]:
        """Every rule here if this worker owns every partition; else its products' rules, plus the market
        stage if it owns partition 0."""
        total = self.consumer.partition_count()
        owned = self.consumer.assigned
        if total is None or owned >= set(range(total)):
            return "all", False
        return "local", 0 in owned

    async def _new_pipeline(self) -> Pipeline:
        kafka = self.settings.kafka
        log_id = await asyncio.to_thread(topic_id, kafka, kafka.events_topic)
        if not log_id:
            log.warning(
                "the broker reports no topic ids (Kafka before 2.8): progress marks cannot tell a recreated "
                "topic from the old one; after recreating it, start on a new store",
                extra={"topic": kafka.events_topic},
            )
        forward = self.webhook.forward if self.webhook is not None else None
        scope, leads = self._role = self._wanted_role()
        pipeline = Pipeline(
            self.settings, self.store, self._publish, topic_id=log_id, forward=forward, scope=scope, sensor=self.sensor
        )
        await asyncio.to_thread(pipeline.restore)
        partitions = self.consumer.partition_count() or 1
        self.market = MarketStage(self.settings, self.store, log_id, partitions) if leads else None
        if self.market is not None:
            await asyncio.to_thread(self.market.restore)
        log.info("rules in this worker", extra={"scope": scope, "market_stage": leads})
        # The restored state (book, dedup index, detector state) lives as long as the process: keep the
        # cyclic GC from walking it on every full collection.
        gc.collect()
        gc.freeze()
        return pipeline

    def measure_lag(self) -> None:
        if self.pipeline is None:
            return
        for partition in self.consumer.assigned:
            highwater = self.consumer.highwater(partition)
            if highwater is None:
                continue
            processed = self.pipeline.progress.marks.get(partition, -1)
            self.sensor.on_lag(partition, max(0, highwater - 1 - processed))

    def rules(self) -> RuleSettings:
        return self.pipeline.surveillance.ctx.rules if self.pipeline is not None else self.settings.rules

    def alert_resolved(self, dedup_key: str) -> None:
        if self.pipeline is not None:
            self.pipeline.alert_resolved(dedup_key)

    def status(self) -> dict[str, Any]:
        """What /api/status reports: progress per partition and whether anything is in flight."""
        if self.pipeline is None:
            return {"ready": False}
        partitions = {
            partition: {
                "highwater": self.consumer.highwater(partition),
                "processed": self.pipeline.progress.marks.get(partition, -1),
            }
            for partition in sorted(self.consumer.assigned)
        }
        return {
            "ready": True,
            "partitions": partitions,
            "pending_acks": self.consumer.pending,
            "dirty_windows": self.pipeline.windows.pending,
            "watermark_ms": self.pipeline.surveillance.watermark_ms,
            "rules_scope": self._role[0] if self._role else "all",
            "market_stage": self.market is not None,
            "market_applied": self.market.applied if self.market is not None else None,
            "partition_watermarks_ms": self.pipeline.surveillance.clock.partitions,
            "rules": self.rules().model_dump(mode="json"),
        }

    async def _publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic not in self._topics:
            self._topics[topic] = self.app.topic(topic)
        await self._topics[topic].send(key=key, value=value)
