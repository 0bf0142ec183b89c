"""dm.events in whole fetches: a Faust service around aiokafka's own batch API.

Faust's stream path builds one Event object per message and walks it through
the conductor, the stream buffer and the acker; at market scale that machinery
cost more CPU than the whole pipeline (~4.5k events/s). This service consumes
`dm.events` with `AIOKafkaConsumer.getmany`: one call returns every record a
fetch brought (up to `batch_max`, as `Message` tuples: `streams.bulk_fetch`), and
the pipeline takes them as one batch.
Faust still runs the application around it: the service starts and stops with
the app, and the web server, timers, rules agent and producer are Faust's.

Offsets are committed by hand, only after the batch's rows are stored and its
windows flushed (`streams.checkpoint`). The consumer group is its own (`kafka.group_id`);
when the group rebalances, partitions are committed before they are given up,
and the worker rebuilds its state from the store when it gains partitions that
another worker was writing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from itertools import chain
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from settings import Settings
from sinks.prometheus import PipelineSensor
from streams.bulk_fetch import take_in_bulk
from streams.checkpoint import Checkpoint
from streams.kafka_client import aiokafka_options
from streams.pipeline import Prepared
from streams.records import Record

log = logging.getLogger("dmm.consumer")

STOP_WAIT_S = 10.0


class BatchHandler(Protocol):
    """What the consumer hands its batches to (the worker, around its pipeline)."""

    async def prepare(self, messages: Sequence[Record], ends: dict[int, int | None]) -> Prepared:
        """A fetch processed in memory (`ends`: each owned partition's end offset)."""

    async def store_batch(self, prepared: Prepared) -> dict[int, int]:
        """A prepared batch stored, in order; per partition, the last offset it processed."""

    async def flush(self) -> None:
        """Windows written and published messages acknowledged: stored offsets may be committed."""

    async def partitions_changed(self, assigned: set[int], gained: set[int]) -> None:
        """The group gave this worker `assigned` (`gained` of them new)."""

    def holding(self) -> int:
        """Records held back by event-time alignment (a batch is due even when nothing was fetched)."""

    def close(self) -> None:
        """The consumer stopped: release what outlives it (the store)."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types: its base is Any
    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.owner.on_assigned({tp.partition for tp in assigned})


class EventConsumer(Service):
    """Fetch, hand whole batches to the `BatchHandler` (prepare the next while the previous is stored), and
    commit what its `flush` made durable (`Checkpoint`)."""

    def __init__(
        self,
        settings: Settings,
        handler: BatchHandler,
        sensor: PipelineSensor | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(loop=loop)
        self.settings = settings
        self.handler = handler
        self.sensor = sensor or PipelineSensor()
        self.checkpoint = Checkpoint()
        self._in_flight: asyncio.Future[dict[int, int]] | None = None  # the batch being stored
        self._flushing: asyncio.Future[None] | None = None  # windows being rebuilt, then offsets committed
        self.consumer: AIOKafkaConsumer | None = None
        self.assigned: set[int] = set()
        self._busy = asyncio.Lock()
        self._stopping = False  # a batch in flight, a flush+commit, or a rebalance: one at a time
        self._assignments = 0  # partition assignments so far (a fetch that waited through one is not timed)
        # Records taken into the pipeline yet (`dmm_first_records_timestamp_seconds`). Taken, not fetched: the
        # fetcher starts as soon as partitions are assigned, while the pipeline is still restoring its state
        # (under `_busy`, in `on_assigned`), so a first fetch would time the restore as part of the work.
        self._took_any = False

    @property
    def pending(self) -> int:
        """Partitions with stored offsets waiting for the next flush and commit (plus a batch being stored, and
        a flush under way)."""
        flushing = self._flushing is not None and not self._flushing.done()
        return self.checkpoint.pending + (self._in_flight is not None) + flushing

    async def on_start(self) -> None:
        kafka = self.settings.kafka
        self.consumer = AIOKafkaConsumer(
            group_id=kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            fetch_max_bytes=64 * 1024 * 1024,
            **aiokafka_options(kafka),
        )
        self.consumer.subscribe([kafka.events_topic], listener=_Rebalance(self))
        await self.consumer.start()
        take_in_bulk(self.consumer)

    async def on_stop(self) -> None:
        """Take no new batch; flush and commit what was stored (bounded: a store outage must not hang the
        stop), leave the group, then let the owner close the store before the interpreter tears down."""
        self._stopping = True
        try:
            async with self._busy:
                await asyncio.wait_for(self._flush_and_commit(), timeout=STOP_WAIT_S)
        except Exception:  # the uncommitted tail is delivered again after the restart, and recognised
            log.warning("stopping without a final flush and commit", exc_info=True)
        if self.consumer is not None:
            await self.consumer.stop()
        self.handler.close()

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        within_ms = int(self.settings.batch_within_s * 1000)
        while not self.should_stop:
            fetched, assignments = time.perf_counter(), self._assignments
            records = await self.consumer.getmany(timeout_ms=within_ms, max_records=self.settings.batch_max)
            messages: list[Record] = list(chain.from_iterable(records.values()))
            # More than this batch waits on the broker already (as its latest fetch response said): a backlog.
            highwater = self.consumer.highwater
            backlog = any((highwater(tp) or 0) > batch[-1].offset + 1 for tp, batch in records.items() if batch)
            if messages and assignments == self._assignments:  # not idle, nor waiting for the group to settle
                self.sensor.on_stage("fetch", time.perf_counter() - fetched)
            async with self._busy:
                if self._stopping:
                    break
                if messages and not self._took_any:  # state is restored by now: see `_took_any`
                    self._took_any = True
                    self.sensor.on_first_records()
                if not messages:
                    await self._settle()  # nothing to overlap with: let the batch in flight finish first
                if messages or self.handler.holding():
                    ends = {partition: self.highwater(partition) for partition in self.assigned}
                    # Batch N+1 is processed in memory while batch N is still being written (the store
                    # releases the GIL); the writes themselves stay strictly in order.
                    prepared = await self.handler.prepare(messages, ends)
                    await self._settle()
                    self._in_flight = asyncio.ensure_future(self.handler.store_batch(prepared))
                    await asyncio.sleep(0)  # let it reach its thread before the next batch takes the loop
                if self.flush_due(backlog) and (self._flushing is None or self._flushing.done()):
                    # In the background: batches go on being fetched, processed and stored while the windows
                    # are written. Offsets of batches whose store has finished are taken now; the flush takes
                    # their windows, so it covers them.
                    self._flushing = asyncio.ensure_future(self._flush_then_commit(self.checkpoint.take()))

    def flush_due(self, backlog: bool) -> bool:
        """Whether windows are to be flushed and offsets committed now: every `flush_interval_s`, or every
        `backlog_flush_interval_s` while more than the batch in hand waits on the broker (the windows trail the
        backlog anyway)."""
        settings = self.settings
        return self.checkpoint.due(settings.backlog_flush_interval_s if backlog else settings.flush_interval_s)

    async def flush_and_commit(self) -> None:
        """Flush windows, then commit every handled offset (also on SIGTERM and on the flush timer)."""
        async with self._busy:
            await self._flush_and_commit()

    async def _flush_then_commit(self, taken: dict[int, int]) -> None:
        """Write the windows of every batch stored so far (every batch whose offsets were taken is: see
        `Pipeline.flush`), then commit `taken`. A failed commit hands its offsets back to the next one."""
        try:
            await self.handler.flush()
            await self._commit(taken)
        except Exception:
            self.checkpoint.failed(taken)
            log.warning("flush and commit failed; the next one retries", exc_info=True)

    async def _flushed(self) -> None:
        """Wait for the background flush and commit, if one is under way."""
        if self._flushing is not None:
            await self._flushing
            self._flushing = None

    async def _commit(self, taken: dict[int, int]) -> None:
        if taken and self.consumer is not None:
            started = time.perf_counter()
            topic = self.settings.kafka.events_topic
            offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in taken.items()}
            await self.consumer.commit(offsets)
            self.checkpoint.committed(taken)
            self.sensor.on_stage("commit", time.perf_counter() - started)

    async def _settle(self) -> None:
        """Wait for the batch being stored; its offsets become committable."""
        if self._in_flight is not None:
            if not self._in_flight.done():  # the batch loop waits for the store (it is the slower half)
                with self.sensor.stage("store_wait"):
                    await self._in_flight
            processed = self._in_flight.result()
            self._in_flight = None
            self.checkpoint.stored(processed)

    async def _flush_and_commit(self) -> None:
        """The same, awaited (stop, rebalance, SIGTERM): after the batch in flight and any flush under way."""
        await self._settle()
        await self._flushed()
        taken = self.checkpoint.take()
        try:
            await self.handler.flush()
            await self._commit(taken)
        except BaseException:
            self.checkpoint.failed(taken)
            raise

    def seek(self, positions: dict[int, int]) -> None:
        """Start these partitions at these offsets (after a restore: past what the store holds as processed)."""
        assert self.consumer is not None
        topic = self.settings.kafka.events_topic
        for partition, offset in positions.items():
            if partition in self.assigned:
                self.consumer.seek(TopicPartition(topic, partition), offset)

    def partition_count(self) -> int | None:
        """Partitions of dm.events, as the cluster metadata says (None before it is known)."""
        if self.consumer is None:
            return None
        partitions = self.consumer.partitions_for_topic(self.settings.kafka.events_topic)
        return len(partitions) if partitions else None

    def highwater(self, partition: int) -> int | None:
        if self.consumer is None:
            return None
        highwater: int | None = self.consumer.highwater(TopicPartition(self.settings.kafka.events_topic, partition))
        return highwater

    async def on_revoked(self, revoked: set[int]) -> None:
        """Make what this worker handled durable and committed before another worker takes it over."""
        async with self._busy:
            await self._settle()  # the batch being stored counts too
            await self._flushed()  # a failed background commit hands its offsets back
            if self.checkpoint.holds(revoked):
                await self._flush_and_commit()

    async def on_assigned(self, assigned: set[int]) -> None:
        gained = assigned - self.assigned
        self.assigned = set(assigned)
        self._assignments += 1
        log.info("partitions assigned", extra={"partitions": sorted(assigned), "gained": sorted(gained)})
        async with self._busy:
            await self._settle()  # the batch being stored belongs to the pipeline as it was
            await self._flushed()  # and so does the flush under way
            await self.handler.partitions_changed(set(assigned), gained)
