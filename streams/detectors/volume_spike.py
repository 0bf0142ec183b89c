"""`volume_spike`: an exchange's traded amount in one event-time minute is >= 5x its recent median.

Per exchange, trades are summed into one-minute windows of `occurred_at`. A
window closes once the watermark reaches its end plus the allowed lateness (the
same moment the pipeline starts calling its trades late, which this detector
therefore ignores: their window is closed). A closed window is compared with
the median of the previous 30 closed windows, empty ones counting as 0, once at
least 10 exist; windows before the exchange was first seen (any event type) do
not count. It fires when the amount is >= ratio x median and >= the minimum
amount (default 100,000 CNY). Score: amount / (ratio x median), or amount /
minimum when the median is 0. One alert per (exchange, window); the evidence
is the window's largest trades.

Restore: from `trades` (on-time rows only, as live), the sums of the last 30
closed windows and the trades of the still-open ones; from all event tables,
when each exchange was first seen within that span.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import median
from typing import NamedTuple

from models import AlertKind, AnyEvent, Trade
from sinks.clickhouse.state import StateReader
from streams.detectors.base import EventTimeDetector, Finding, MarketContext
from streams.detectors.wording import china_time, cny, exchange_en, exchange_zh, times

MINUTE_MS = 60_000
EVIDENCE_TRADES = 50
EVIDENCE_PARTIES = 10


class Evidence(NamedTuple):
    """What an alert names of one of its window's largest trades."""

    amount: Decimal
    event_id: str
    seller_id: str
    buyer_id: str


def _largest_first(evidence: Evidence) -> tuple[Decimal, str]:
    return -evidence.amount, evidence.event_id


@dataclass(slots=True)
class Window:
    """One open minute: its sum and count, and only its largest trades (a minute of a busy exchange is thousands
    of trades, and every open window is held for the allowed lateness)."""

    amount: Decimal = Decimal(0)
    trades: int = 0
    largest: list[Evidence] = field(default_factory=list)  # fewer than 2 x EVIDENCE_TRADES, the largest kept

    def add(self, trade: Trade) -> None:
        self.amount += trade.amount
        self.trades += 1
        self.largest.append(Evidence(trade.amount, trade.event_id, trade.seller_id, trade.buyer_id))
        if len(self.largest) >= 2 * EVIDENCE_TRADES:
            self.largest = sorted(self.largest, key=_largest_first)[:EVIDENCE_TRADES]


@dataclass(slots=True)
class ExchangeWindows:
    next_minute: int  # the next window to close (minutes since the epoch)
    closed: int = 0  # windows closed so far
    history: deque[Decimal] = field(default_factory=deque)  # the latest closed amounts, oldest first
    open: dict[int, Window] = field(default_factory=dict)


def closable_through(ctx: MarketContext) -> int:
    """The last minute whose window the watermark has closed: its end plus the lateness has passed."""
    return (ctx.watermark_ms - ctx.allowed_lateness_ms) // MINUTE_MS - 1


class VolumeSpike(EventTimeDetector):
    kind: AlertKind = "volume_spike"
    market_wide = True

    def __init__(self) -> None:
        self._exchanges: dict[str, ExchangeWindows] = {}

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        at = event.at_ms
        minute = at // MINUTE_MS
        state = self._seen(event.exchange_id, minute)
        if isinstance(event, Trade) and not ctx.is_late(at) and minute >= state.next_minute:
            state.open.setdefault(minute, Window()).add(event)
        return []

    def sighted(self, exchange_id: str, event_id: str, at: int, ctx: MarketContext) -> list[Finding]:
        """`observe` for an event other than a trade, known only by who sent it, its id and its time."""
        self._seen(exchange_id, at // MINUTE_MS)
        return []

    def sight_ahead(self, earliest: Mapping[str, int]) -> None:
        """A sighting only creates an exchange's windows or moves their start earlier while none has closed (and
        none closes before `advance`): the earliest sighting of each exchange, taken first, leaves the windows as
        the sightings one by one would, and a trade observed after it is counted as it would have been."""
        for exchange_id, at in earliest.items():
            self._seen(exchange_id, at // MINUTE_MS)

    def _seen(self, exchange_id: str, minute: int) -> ExchangeWindows:
        """The exchange's windows, which start at the first minute it was seen in (any event type)."""
        state = self._exchanges.get(exchange_id)
        if state is None:
            state = self._exchanges[exchange_id] = ExchangeWindows(next_minute=minute)
        elif state.closed == 0 and minute < state.next_minute:
            state.next_minute = minute  # first seen earlier than we thought, and nothing closed yet
        return state

    def advance(self, ctx: MarketContext) -> list[Finding]:
        last = closable_through(ctx)
        findings: list[Finding] = []
        for exchange_id in sorted(self._exchanges):
            findings.extend(self._close(exchange_id, self._exchanges[exchange_id], last, ctx))
        return findings

    def restore(self, reader: StateReader, ctx: MarketContext) -> None:
        self._exchanges.clear()
        keep = ctx.rules.volume_spike_history_windows
        last = closable_through(ctx)
        since_minute = last - keep + 1
        sums: dict[tuple[str, int], Decimal] = {}
        for stored in reader.recent_trades(since_minute * MINUTE_MS):
            if stored.late:
                continue
            trade = stored.trade
            minute = trade.at_ms // MINUTE_MS
            if minute <= last:
                key = (trade.exchange_id, minute)
                sums[key] = sums.get(key, Decimal(0)) + trade.amount
            else:
                windows = self._exchanges.setdefault(trade.exchange_id, ExchangeWindows(next_minute=last + 1))
                windows.open.setdefault(minute, Window()).add(trade)
        for exchange_id, (first_ms, _) in reader.exchange_spans(since_minute * MINUTE_MS).items():
            first = first_ms // MINUTE_MS
            windows = self._exchanges.setdefault(exchange_id, ExchangeWindows(next_minute=last + 1))
            windows.next_minute = max(last + 1, first)
            counted = range(max(first, since_minute), last + 1)
            windows.history.extend(sums.get((exchange_id, minute), Decimal(0)) for minute in counted)
            windows.closed = len(counted)

    def _close(self, exchange_id: str, state: ExchangeWindows, last: int, ctx: MarketContext) -> list[Finding]:
        keep = ctx.rules.volume_spike_history_windows
        findings: list[Finding] = []
        minute = state.next_minute
        while minute <= last:
            window = state.open.pop(minute, None)
            if window is None:  # a run of empty windows: skip it in one step
                following = min((m for m in state.open if m <= last), default=last + 1)
                empty = following - minute
                state.history.extend([Decimal(0)] * min(empty, keep))
                state.closed += empty
                minute = following
            else:
                finding = self._judge(exchange_id, minute, window, state.history, ctx)
                if finding is not None:
                    findings.append(finding)
                state.history.append(window.amount)
                state.closed += 1
                minute += 1
            while len(state.history) > keep:
                state.history.popleft()
        state.next_minute = max(state.next_minute, last + 1)
        return findings

    def _judge(
        self, exchange_id: str, minute: int, window: Window, history: deque[Decimal], ctx: MarketContext
    ) -> Finding | None:
        rules = ctx.rules
        if len(history) < rules.volume_spike_min_windows:
            return None
        baseline = Decimal(median(history))
        amount = window.amount
        if amount < rules.volume_spike_ratio * baseline or amount < rules.volume_spike_min_amount:
            return None
        score = amount / (rules.volume_spike_ratio * baseline) if baseline else amount / rules.volume_spike_min_amount
        start = minute * MINUTE_MS
        evidence = sorted(window.largest, key=_largest_first)[:EVIDENCE_TRADES]
        parties = list(dict.fromkeys(p for t in evidence for p in (t.seller_id, t.buyer_id)))[:EVIDENCE_PARTIES]
        windows = len(history)
        if baseline:
            versus = f"{times(float(amount / baseline))} the median of {cny(baseline)} CNY of its previous {windows}"
            versus_zh = f"为此前 {windows} 个一分钟窗口中位数 {cny(baseline)} 元的 {float(amount / baseline):,.2f} 倍"
        else:
            versus = f"while the median of its previous {windows} was 0.00 CNY"
            versus_zh = f"而此前 {windows} 个一分钟窗口的中位数为 0 元"
        return Finding(
            kind=self.kind,
            dedup_key=f"volume_spike:{exchange_id}:{start}",
            exchange_id=exchange_id,
            product_id=None,
            parties=parties,
            event_ids=[t.event_id for t in evidence],
            score=float(score),
            window_start_ms=start,
            window_end_ms=start + MINUTE_MS,
            message=(
                f"Trading on {exchange_en(exchange_id)} in the minute from {china_time(start)} reached "
                f"{cny(amount)} CNY in {window.trades} trade(s), {versus} one-minute windows."
            ),
            message_zh=(
                f"{exchange_zh(exchange_id)}自 {china_time(start)} 起的一分钟内成交金额达 {cny(amount)} 元"
                f"（{window.trades} 笔），{versus_zh}。"
            ),
        )
