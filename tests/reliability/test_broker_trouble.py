"""The broker becomes unreachable for a while: the worker rides it out and loses or doubles nothing.

Fault: a TCP proxy (in this test) sits between every client and Tansu, and Tansu
advertises the proxy's address, so all traffic (bootstrap, metadata, fetch,
group coordination, produce) crosses it. The proxy cuts every open connection
and refuses new ones for CUT_S seconds, then accepts again. A broker *restart*
cannot be used: Tansu's storage is memory-only, so a restart loses every topic
and message; unreachability is what a real network partition or broker outage
looks like to the worker anyway.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from dmm.broker import EmbeddedBroker, free_port
from dmm.producer import EventProducer
from dmm.query import wait_until_drained, worker_status
from dmm.replay import line_key
from dmm.stack import EmbeddedStack
from tests.support.market_file import build_market
from tests.support.stack import settings_for
from tests.support.totals import StoreReader, assert_exact_totals
from tests.support.worker import scrape

pytestmark = pytest.mark.slow

CUT_S = 18


class CuttableProxy:
    """asyncio TCP proxy on its own thread: `cut()` drops every connection and refuses new ones."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _call(self, coro) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.listen_port, reuse_address=True)

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()  # RST, like a partition the peer notices
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None

    def start(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        if self.server is not None:
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_worker_survives_the_broker_being_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "market.jsonl"
    expected = build_market(path, minutes=100, rate=4.0)
    lines = path.read_bytes().split(b"\n")[:-1]
    before, backlog, during, after = lines[:3000], lines[3000:-5000], lines[-5000:-2000], lines[-2000:]
    # Bind each port before picking the next, so free_port never hands out one twice.
    proxy_port = free_port()
    proxy = CuttableProxy(proxy_port, target_port=0)
    proxy.start()
    broker_port = proxy.target_port = free_port()
    broker = EmbeddedBroker(port=broker_port, log_dir=tmp_path, advertised=f"127.0.0.1:{proxy_port}")
    broker.start()
    base = settings_for(tmp_path)
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{proxy_port}"})})
    producer = EventProducer(settings.kafka, delivery_timeout_ms=120_000, request_timeout_ms=5_000)
    try:
        with EmbeddedStack(settings, tmp_path, start_broker=False) as stack:
            assert stack.worker is not None
            pid = stack.worker.pid

            def send(chunk: list[bytes]) -> None:
                for line in chunk:
                    producer.publish_raw(line, line_key(line))

            send(before)
            producer.flush()
            wait_until_drained(settings, timeout=120)
            # A backlog larger than the worker prefetches before the cut, so the stall shows with lag > 0.
            send(backlog)
            producer.flush()
            proxy.cut()
            cut_at = time.monotonic()
            sender = threading.Thread(target=send, args=(during,), daemon=True)  # queued in the producer
            sender.start()
            samples = []
            while time.monotonic() - cut_at < CUT_S:
                m = scrape(settings)
                samples.append((time.monotonic() - cut_at, m.get("dmm_last_batch_timestamp_seconds", 0),
                                m.get("dmm_consumer_lag_messages", 0)))
                assert stack.worker.poll() is None, stack.worker_log_tail()
                time.sleep(1)
            proxy.start()
            restored_at = time.time()
            sender.join(timeout=60)
            send(after)
            producer.flush(timeout=120)
            wait_until_drained(settings, timeout=300)

            # Stalled: late in the cut, the last batch time stands still. Whether lag shows too depends
            # on whether the worker had drained the backlog before the cut (it cannot learn of newer
            # messages while the broker is unreachable); the stall-with-lag signal that
            # DmmConsumerStalled uses is asserted deterministically in test_store_outage.
            late = [s for s in samples if s[0] > CUT_S / 2]
            assert len({s[1] for s in late}) == 1, samples
            assert len({s[2] for s in late}) == 1, samples  # the lag gauge stands still too
            assert time.time() - late[-1][1] > CUT_S / 3 - 1
            final = scrape(settings)
            assert final["dmm_last_batch_timestamp_seconds"] > restored_at
            counts = assert_exact_totals(StoreReader(settings), expected)
            assert stack.worker.poll() is None and stack.worker.pid == pid, "the worker must not have restarted"
            status = worker_status(settings)
            log = stack.worker_log.read_text(errors="replace")
            disconnect_lines = [
                line for line in log.splitlines()
                if any(s in line for s in ("Connection refused", "Unable connect", "KafkaConnectionError",
                                            "Unable to update metadata", "coordinator dead", "Heartbeat failed"))
            ]
            assert disconnect_lines, "the worker log must say the broker went away"
            print(
                f"\nbroker cut {CUT_S}s: worker pid {pid} alive; stall samples {samples[-3:]}; "
                f"{len(disconnect_lines)} disconnection log lines, e.g. {disconnect_lines[0][:200]}; "
                f"redelivered {final.get('dmm_redelivered_total', 0):.0f}; status {status['partitions']}; "
                f"counts {counts}"
            )
    finally:
        producer.close()
        broker.stop()
        proxy.close()
