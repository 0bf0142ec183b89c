"""`exchange_silent`: an exchange that was sending falls silent.

Event-time rule (replays and live alike): an exchange seen before whose latest
`occurred_at` is more than 120 s behind the market watermark (the latest
`occurred_at` from any exchange). Checked at every event, against the watermark
that event makes (a silence may start and end within one batch), and after
every batch.

Live rule (`tick`, wall clock, only if `rules.exchange_silent_wallclock`): an
exchange from which nothing arrived for 120 s of wall-clock time, while another
exchange kept sending live events: it sent something after those 120 s had
passed, stamped within 120 s of the wall clock. It catches what event time
cannot, e.g. an exchange whose clock runs ahead and then stops. The "live"
guard keeps a replay from tripping it (a replayed file's event times are not
near the wall clock), and at full speed every exchange of a file stops at once.

Both rules share one episode per exchange: a silence starts at the exchange's
latest event time (the dedup key holds it, so the two rules never alert the same
silence twice) and ends once the exchange sends something newer that brings it
back within 120 s of the watermark. One alert per silence.

Restore: each exchange's latest event time and event id over the last 24 h, from
all event tables. A silence already alerted before the restart is found again
under the same dedup key, which the AlertLedger (restored from `alerts`) drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from models import AlertKind, AnyEvent, Heartbeat, Listing, Trade, Usage
from sinks.clickhouse.state import StateReader
from streams.detectors.base import Finding, MarketContext
from streams.detectors.wording import china_time, exchange_en, exchange_zh

RESTORE_HORIZON_MS = 24 * 3600 * 1000


@dataclass(slots=True)
class Sender:
    last_ms: int  # latest occurred_at from this exchange
    last_event_id: str
    arrivals: int = 0  # events observed since the worker started
    arrivals_at_tick: int = -1  # `arrivals` at the previous tick
    heard_wall_ms: int | None = None  # wall-clock time of the latest tick that saw it send
    silent_since_ms: int | None = None  # open silence episode: the last_ms it started from


class ExchangeSilent:
    kind: AlertKind = "exchange_silent"
    observes = (Listing, Trade, Usage, Heartbeat)
    market_wide = True

    def __init__(self) -> None:
        self._senders: dict[str, Sender] = {}
        # Oldest last_ms among senders not silent, as of the last full pass (a lower bound since: last_ms only
        # grows). While the watermark is within the limit of it, no new silence can open: skip the pass.
        self._oldest_sending_ms: int | None = None

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        return self.sighted(event.exchange_id, event.event_id, event.at_ms, ctx)

    def sighted(self, exchange_id: str, event_id: str, at: int, ctx: MarketContext) -> list[Finding]:
        """`observe` for an event known only by who sent it, its id and its time (all this rule reads)."""
        return self._heard(exchange_id, event_id, at, ctx.watermark_ms, ctx)

    def _heard(self, exchange_id: str, event_id: str, at: int, watermark_ms: int, ctx: MarketContext) -> list[Finding]:
        """An event of `exchange_id`, with the market's event time as it makes it."""
        sender = self._senders.get(exchange_id)
        if sender is None:
            sender = self._senders[exchange_id] = Sender(at, event_id)
        elif at > sender.last_ms:
            sender.last_ms, sender.last_event_id = at, event_id
        sender.arrivals += 1
        if self._oldest_sending_ms is not None:
            self._oldest_sending_ms = min(self._oldest_sending_ms, sender.last_ms)
            quiet_for_ms = watermark_ms - self._oldest_sending_ms
            if sender.silent_since_ms is None and quiet_for_ms <= ctx.rules.exchange_silent_s * 1000:
                return []
        return self._behind(watermark_ms, ctx)

    def sighted_batch(
        self,
        exchange_ids: Sequence[str | None],
        event_ids: Sequence[str],
        at: np.ndarray,
        watermarks: np.ndarray,
        ctx: MarketContext,
    ) -> list[Finding]:
        """A batch's events at once. Usually no silence starts or ends within a batch (`_quiet`): then only
        each exchange's latest event and count change, found with arrays. Otherwise each event is taken in
        turn, exactly as one by one."""
        senders = [code for code in exchange_ids if code is not None]
        if len(senders) < len(exchange_ids):  # event time passing a redelivered message: no one sent it
            sent = [i for i, code in enumerate(exchange_ids) if code is not None]
            event_ids = [event_ids[i] for i in sent]
            at, watermarks = at[sent], watermarks[sent]
        if not len(at):
            return []
        encoded = pa.array(senders, pa.string()).dictionary_encode()
        codes, of_event = encoded.dictionary.to_pylist(), encoded.indices.to_numpy()
        by_sender = np.split(np.argsort(of_event, kind="stable"), np.cumsum(np.bincount(of_event))[:-1])
        if not self._quiet(codes, by_sender, at, watermarks, ctx):
            return self._sighted_each(senders, event_ids, at.tolist(), watermarks.tolist(), ctx)
        for exchange_id, events in zip(codes, by_sender, strict=True):
            first, latest = int(events[0]), int(events[np.argmax(at[events])])  # the first of the latest ones
            sender = self._senders.get(exchange_id)
            if sender is None:
                sender = self._senders[exchange_id] = Sender(int(at[first]), event_ids[first])
                if self._oldest_sending_ms is not None:
                    self._oldest_sending_ms = min(self._oldest_sending_ms, sender.last_ms)
            if at[latest] > sender.last_ms:
                sender.last_ms, sender.last_event_id = int(at[latest]), event_ids[latest]
            sender.arrivals += len(events)
        return []

    def _quiet(
        self, codes: list[str], by_sender: list[np.ndarray], at: np.ndarray, watermarks: np.ndarray, ctx: MarketContext
    ) -> bool:
        """No silence would start or end at any of these events: no exchange silent now sends, and none falls
        more than the limit behind at any of them (it is furthest behind just before each of its own events,
        and after its last)."""
        limit = ctx.rules.exchange_silent_s * 1000
        end = int(watermarks[-1])
        sending = set(codes)
        for exchange_id, sender in self._senders.items():
            if exchange_id not in sending and sender.silent_since_ms is None and end - sender.last_ms > limit:
                return False
        for exchange_id, events in zip(codes, by_sender, strict=True):
            known = self._senders.get(exchange_id)
            latest = np.maximum.accumulate(at[events])
            if known is not None:
                if known.silent_since_ms is not None:
                    return False
                latest = np.maximum(latest, known.last_ms)
                if events[0] > 0 and watermarks[events[0] - 1] - known.last_ms > limit:
                    return False
            before_next = np.append(events[1:] - 1, len(at) - 1)
            if (watermarks[before_next] - latest > limit).any():
                return False
        return True

    def _sighted_each(
        self,
        exchange_ids: Sequence[str],
        event_ids: Sequence[str],
        at: Sequence[int],
        watermarks: Sequence[int],
        ctx: MarketContext,
    ) -> list[Finding]:
        """Each event in turn, against the watermark it makes."""
        findings: list[Finding] = []
        for exchange_id, event_id, at_ms, watermark_ms in zip(exchange_ids, event_ids, at, watermarks, strict=True):
            findings.extend(self._heard(exchange_id, event_id, at_ms, watermark_ms, ctx))
        return findings

    def advance(self, ctx: MarketContext) -> list[Finding]:
        return self._behind(ctx.watermark_ms, ctx)

    def _behind(self, watermark_ms: int, ctx: MarketContext) -> list[Finding]:
        """Open and close silences against the watermark as it stands after the latest event."""
        limit = ctx.rules.exchange_silent_s * 1000
        findings: list[Finding] = []
        for exchange_id in sorted(self._senders):
            sender = self._senders[exchange_id]
            behind = watermark_ms - sender.last_ms
            if sender.silent_since_ms is not None:
                if sender.last_ms > sender.silent_since_ms and behind <= limit:
                    sender.silent_since_ms = None  # it sends again: the silence is over
            elif behind > limit:
                sender.silent_since_ms = sender.last_ms
                findings.append(self._event_time_finding(exchange_id, sender, watermark_ms, ctx))
        self._oldest_sending_ms = min(
            (sender.last_ms for sender in self._senders.values() if sender.silent_since_ms is None), default=None
        )
        return findings

    def tick(self, ctx: MarketContext, now_ms: int) -> list[Finding]:
        for sender in self._senders.values():
            if sender.arrivals != sender.arrivals_at_tick or sender.heard_wall_ms is None:
                sender.arrivals_at_tick, sender.heard_wall_ms = sender.arrivals, now_ms
        limit = ctx.rules.exchange_silent_s * 1000
        if not ctx.rules.exchange_silent_wallclock:
            return []
        findings: list[Finding] = []
        for exchange_id in sorted(self._senders):
            sender = self._senders[exchange_id]
            heard = sender.heard_wall_ms
            if sender.silent_since_ms is not None or heard is None or now_ms - heard <= limit:
                continue
            others_kept_sending = any(
                other.heard_wall_ms is not None
                and other.heard_wall_ms > heard + limit
                and other.last_ms >= now_ms - limit
                for code, other in self._senders.items()
                if code != exchange_id
            )
            if others_kept_sending:
                sender.silent_since_ms = sender.last_ms
                findings.append(self._wall_clock_finding(exchange_id, sender, now_ms - heard, ctx))
        return findings

    def restore(self, state: StateReader, ctx: MarketContext) -> None:
        self._oldest_sending_ms = None
        self._senders = {
            exchange_id: Sender(last_ms, event_id)
            for exchange_id, (last_ms, event_id) in state.latest_events(ctx.watermark_ms - RESTORE_HORIZON_MS).items()
        }

    def _event_time_finding(self, exchange_id: str, sender: Sender, watermark_ms: int, ctx: MarketContext) -> Finding:
        behind = watermark_ms - sender.last_ms
        seconds = behind / 1000
        return self._finding(
            exchange_id,
            sender,
            watermark_ms,
            score=behind / (ctx.rules.exchange_silent_s * 1000),
            message=(
                f"{exchange_en(exchange_id)} has reported nothing for {seconds:,.1f} seconds of market time: "
                f"its latest event ({sender.last_event_id}) is from {china_time(sender.last_ms)}, while other "
                f"exchanges have reported up to {china_time(watermark_ms)}."
            ),
            message_zh=(
                f"{exchange_zh(exchange_id)}已有 {seconds:,.1f} 秒（按事件时间）未报送任何事件：其最新事件"
                f"（{sender.last_event_id}）发生于 {china_time(sender.last_ms)}，而其他机构已报送至 "
                f"{china_time(watermark_ms)}。"
            ),
        )

    def _wall_clock_finding(self, exchange_id: str, sender: Sender, quiet_ms: int, ctx: MarketContext) -> Finding:
        seconds = quiet_ms / 1000
        return self._finding(
            exchange_id,
            sender,
            ctx.watermark_ms,
            score=quiet_ms / (ctx.rules.exchange_silent_s * 1000),
            message=(
                f"{exchange_en(exchange_id)} has sent nothing for {seconds:,.0f} seconds while other exchanges "
                f"kept sending; its latest event ({sender.last_event_id}) is from {china_time(sender.last_ms)}."
            ),
            message_zh=(
                f"{exchange_zh(exchange_id)}已连续 {seconds:,.0f} 秒未发送任何事件，而其他机构仍在正常报送；"
                f"其最新事件（{sender.last_event_id}）发生于 {china_time(sender.last_ms)}。"
            ),
        )

    def _finding(
        self, exchange_id: str, sender: Sender, watermark_ms: int, score: float, message: str, message_zh: str
    ) -> Finding:
        return Finding(
            kind=self.kind,
            dedup_key=f"exchange_silent:{exchange_id}:{sender.last_ms}",
            exchange_id=exchange_id,
            product_id=None,
            parties=[],
            event_ids=[sender.last_event_id],
            score=score,
            window_start_ms=sender.last_ms,
            window_end_ms=max(watermark_ms, sender.last_ms),
            message=message,
            message_zh=message_zh,
        )
