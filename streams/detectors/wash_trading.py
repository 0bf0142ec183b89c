"""`wash_trading`: trades of one product that carry it back to its first seller (A→B→A, A→B→C→A).

A trade is a leg seller → buyer. Per (exchange, product), the legs of the last
24 h of event time form a graph; a new leg is searched for a cycle through it
among at most 3 distinct parties, whose legs, read from the first seller, are in
event-time order and span at most 24 h. Self-trades (A→A) are `self_dealing`,
not legs. A leg closes at most one cycle (the tightest) and a leg in an alerted
cycle is used up, so one cycle, one alert; the dedup key is a digest of the
cycle's event ids. Legs are kept per exchange because the alert names one
exchange and event ids are only unique per exchange. State is bounded: legs
older than 24 h before the watermark are dropped, and a leg that arrives that
late is ignored. RAM holds at most a configured number of legs, the newest; the rest of
the 24 h are on local disk (`streams.detectors.legs`), read only for a party
that sold the product there: the same cycles are found either way.

Restore: the legs of the last 24 h from `trades` (a part of about `RESTORE_PART`
at a time, as Arrow columns, straight to disk: no object per leg), minus those
already used in a `wash_trading` alert (their event ids in `alerts`).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from models import AlertKind, AnyEvent, Trade
from sinks.clickhouse.state import StateReader
from streams.detectors.base import EventTimeDetector, Finding, MarketContext
from streams.detectors.legs import RAM_LEGS, Leg, Legs, SpilledLegs
from streams.detectors.wording import cny, exchange_en, exchange_zh, span_en, span_zh

CANDIDATES_PER_HOP = 16  # legs tried per step of a path, nearest in time first (bounds the search)
RESTORE_PERIOD_MS = 600_000  # a restore counts the day's trades per 10 minutes ...
RESTORE_PART = 200_000  # ... and reads them a part of about this many at a time (a day would not fit in RAM)


def in_cycle_order(legs: list[Leg]) -> list[Leg] | None:
    """The legs rotated to start at the first seller, or None if no rotation is in event-time order."""
    times = [leg.at_ms for leg in legs]
    descents = [i for i in range(len(legs)) if times[i] > times[(i + 1) % len(legs)]]
    if len(descents) > 1:
        return None
    # All at the same instant (no descent): any rotation is in order; pick one deterministically.
    start = (descents[0] + 1) % len(legs) if descents else min(range(len(legs)), key=lambda i: legs[i].event_id)
    return legs[start:] + legs[:start]


class WashTrading(EventTimeDetector):
    kind: AlertKind = "wash_trading"
    observes = (Trade,)

    def __init__(self, state_dir: Path | None = None, ram_legs: int = RAM_LEGS) -> None:
        """`state_dir`: where legs beyond `ram_legs` go (None: the system's temporary directory)."""
        self._legs: dict[tuple[str, str], Legs] = {}  # in RAM, per (exchange, product)
        self._expiry: list[tuple[int, str, str, str, str, str]] = []  # (at, exchange, product, seller, buyer, id)
        self._in_ram = 0
        self._ram_legs = ram_legs
        self._spilled = SpilledLegs(state_dir)
        self._horizon_ms = -(2**62)  # legs before this are forgotten (as of the last `advance`)

    @property
    def legs(self) -> int:
        """Legs remembered, in RAM and on disk."""
        return self._in_ram + self._spilled.count(self._horizon_ms)

    @property
    def legs_in_ram(self) -> int:
        return self._in_ram

    def observe(self, event: AnyEvent, ctx: MarketContext) -> list[Finding]:
        if not isinstance(event, Trade) or event.buyer_id == event.seller_id:
            return []
        leg = Leg.of(event)
        window = ctx.rules.wash_trading_window_s * 1000
        if leg.at_ms < ctx.watermark_ms - window:
            return []
        key = (event.exchange_id, event.product_id)
        graph = self._legs.setdefault(key, {})
        view = _View(key, graph, self._spilled, self._horizon_ms)
        cycle = self._tightest_cycle(view, leg, ctx.rules.wash_trading_max_parties, window)
        if cycle is None:
            self._add(event.exchange_id, event.product_id, graph, leg)
            return []
        for used in cycle:
            if used is leg:  # the new one, not remembered
                continue
            if _remove(graph, used):
                self._in_ram -= 1
            else:
                self._spilled.delete(event.exchange_id, event.product_id, used)
        if not graph:
            del self._legs[key]
        return [self._finding(event.exchange_id, event.product_id, cycle)]

    def advance(self, ctx: MarketContext) -> list[Finding]:
        horizon = self._horizon_ms = _horizon(ctx)
        while self._expiry and self._expiry[0][0] < horizon:
            self._take_oldest()
        self._spilled.forget(horizon)
        if self._in_ram > self._ram_legs:
            self._spill_oldest(self._in_ram - self._ram_legs)
        return []

    def restore(self, state: StateReader, ctx: MarketContext) -> None:
        self._forget_ram()
        self._spilled.clear()
        since = self._horizon_ms = _horizon(ctx)
        used = {
            f"{alert.exchange_id}\x00{event_id}"
            for alert in state.stored_alerts(self.kind, since)
            for event_id in alert.event_ids
        }
        for start, until in _parts(state.trade_counts(since, RESTORE_PERIOD_MS), since):
            legs = state.trade_legs(start, until)
            if used:
                ids = pc.binary_join_element_wise(legs["exchange_id"], legs["event_id"], "\x00")
                legs = legs.filter(pc.invert(pc.is_in(ids, pa.array(sorted(used)))))
            self._spilled.write_table(legs)

    def keep(self, directory: Path) -> None:
        """Leave every leg (those in RAM written to disk first) in `directory` for a later start."""
        self._spill()
        self._spilled.keep(directory)

    def take(self, directory: Path, ctx: MarketContext) -> None:
        """Instead of `restore`: the legs a graceful stop kept (see `streams.kept_state`)."""
        self._forget_ram()
        self._spilled.take(directory)
        self._horizon_ms = _horizon(ctx)
        self._spilled.forget(self._horizon_ms)

    def _add(self, exchange_id: str, product_id: str, graph: Legs, leg: Leg) -> None:
        graph.setdefault(leg.seller_id, {}).setdefault(leg.buyer_id, {})[leg.event_id] = leg
        heapq.heappush(self._expiry, (leg.at_ms, exchange_id, product_id, leg.seller_id, leg.buyer_id, leg.event_id))
        self._in_ram += 1

    def _spill_oldest(self, count: int) -> None:
        """The `count` oldest legs in RAM to disk, in one write: RAM keeps the newest (those a cycle closing now
        most likely runs through) and, once full, stays at the bound instead of filling and emptying."""
        spilled: list[tuple[str, str, Leg]] = []
        while len(spilled) < count and self._expiry:
            if (taken := self._take_oldest()) is not None:
                spilled.append(taken)
        self._spilled.write(spilled)

    def _take_oldest(self) -> tuple[str, str, Leg] | None:
        """Take the oldest leg of the expiry heap out of RAM: `(exchange_id, product_id, leg)`, or None if the entry
        is stale (the leg was used up in a cycle since)."""
        _, exchange_id, product_id, seller, buyer, event_id = heapq.heappop(self._expiry)
        graph = self._legs.get((exchange_id, product_id))
        leg = graph.get(seller, {}).get(buyer, {}).get(event_id) if graph is not None else None
        if graph is None or leg is None:
            return None
        _remove(graph, leg)
        self._in_ram -= 1
        if not graph:
            del self._legs[(exchange_id, product_id)]
        return exchange_id, product_id, leg

    def _spill(self) -> None:
        """Every leg in RAM to disk, in one write."""
        self._spilled.write(
            (exchange_id, product_id, leg)
            for (exchange_id, product_id), graph in self._legs.items()
            for to in graph.values()
            for by_id in to.values()
            for leg in by_id.values()
        )
        self._forget_ram()

    def _forget_ram(self) -> None:
        """Drop the legs held in RAM (written to disk, or to be restored)."""
        self._legs.clear()
        self._expiry.clear()
        self._in_ram = 0

    def _tightest_cycle(self, graph: _View, leg: Leg, max_parties: int, window: int) -> list[Leg] | None:
        """Among cycles through `leg`, the one spanning the least time (ties: by event ids), in cycle order."""
        best: tuple[int, list[str], list[Leg]] | None = None
        for legs in _cycles_through(graph, leg, max_parties, window):
            ordered = in_cycle_order(legs)
            if ordered is None:
                continue
            rank = (max(x.at_ms for x in legs) - min(x.at_ms for x in legs), [x.event_id for x in ordered])
            if best is None or rank < best[:2]:
                best = (*rank, ordered)
        return best[2] if best is not None else None

    def _finding(self, exchange_id: str, product_id: str, cycle: list[Leg]) -> Finding:
        event_ids = [leg.event_id for leg in cycle]
        digest = hashlib.sha1("\n".join(event_ids).encode()).hexdigest()[:12]
        parties = [leg.seller_id for leg in cycle]
        loop = " → ".join([*parties, parties[0]])
        trades = ", ".join(leg.trade_id for leg in cycle)
        trades_zh = "、".join(leg.trade_id for leg in cycle)
        total = sum((leg.amount for leg in cycle), Decimal(0))
        start, end = cycle[0].at_ms, cycle[-1].at_ms
        return Finding(
            kind=self.kind,
            dedup_key=f"wash_trading:{exchange_id}:{product_id}:{digest}",
            exchange_id=exchange_id,
            product_id=product_id,
            parties=parties,
            event_ids=event_ids,
            score=1.0,
            window_start_ms=start,
            window_end_ms=end,
            message=(
                f"Product {product_id} on {exchange_en(exchange_id)} was traded in a closed loop {loop} within "
                f"{span_en(end - start)} (trades {trades}; {cny(total)} CNY in total), returning it to its first "
                "seller."
            ),
            message_zh=(
                f"产品 {product_id} 在{exchange_zh(exchange_id)}于 {span_zh(end - start)}内形成闭环交易 {loop}"
                f"（成交 {trades_zh}，合计 {cny(total)} 元），产品回到了最初的卖方手中。"
            ),
        )


class _View:
    """One product's legs on one exchange as the search sees them: those in RAM, and, for a party that may have
    some on disk, those too (read once per search)."""

    __slots__ = ("_graph", "_horizon_ms", "_key", "_read", "_spilled")

    def __init__(self, key: tuple[str, str], graph: Legs, spilled: SpilledLegs, horizon_ms: int) -> None:
        self._key, self._graph, self._spilled, self._horizon_ms = key, graph, spilled, horizon_ms
        self._read: dict[str, dict[str, dict[str, Leg]]] = {}

    def sold_by(self, party: str) -> dict[str, dict[str, Leg]]:
        """buyer -> event_id -> leg, for the legs `party` sold."""
        in_ram = self._graph.get(party, {})
        exchange_id, product_id = self._key
        if not self._spilled.may_have(exchange_id, product_id, party, self._horizon_ms):
            return in_ram
        merged = self._read.get(party)
        if merged is None:
            merged = {buyer: dict(by_id) for buyer, by_id in in_ram.items()}
            for leg in self._spilled.sold_by(exchange_id, product_id, party, self._horizon_ms):
                merged.setdefault(leg.buyer_id, {})[leg.event_id] = leg
            self._read[party] = merged
        return merged


def _cycles_through(graph: _View, leg: Leg, max_parties: int, window: int) -> Iterator[list[Leg]]:
    """Every cycle of distinct parties through `leg` (as legs from `leg` onwards) within one window."""
    return _extend(graph, leg, max_parties, window, [leg], [leg.seller_id, leg.buyer_id], leg.at_ms, leg.at_ms)


def _extend(
    graph: _View, leg: Leg, max_parties: int, window: int, path: list[Leg], parties: list[str], lo: int, hi: int
) -> Iterator[list[Leg]]:
    """`_cycles_through`, one hop further from `path`. A function of its own, not a closure calling itself: that
    closure was a reference cycle per trade, garbage only the cyclic collector frees."""
    for buyer, by_id in sorted(graph.sold_by(path[-1].buyer_id).items()):
        closes = buyer == leg.seller_id
        if not closes and (buyer in parties or len(parties) >= max_parties):
            continue
        candidates = sorted(by_id.values(), key=lambda x: (abs(x.at_ms - leg.at_ms), x.event_id))
        for step in candidates[:CANDIDATES_PER_HOP]:
            low, high = min(lo, step.at_ms), max(hi, step.at_ms)
            if high - low > window:
                continue
            if closes:
                yield [*path, step]
            else:
                yield from _extend(graph, leg, max_parties, window, [*path, step], [*parties, buyer], low, high)


def _horizon(ctx: MarketContext) -> int:
    """Legs before this event time are forgotten: the rule's window behind the watermark."""
    return ctx.watermark_ms - ctx.rules.wash_trading_window_s * 1000


def _parts(counts: dict[int, int], since_ms: int) -> Iterator[tuple[int, int | None]]:
    """Event-time ranges from `since_ms` on, of about `RESTORE_PART` trades each (`counts`: per period), the last
    one open-ended."""
    start, held = since_ms, 0
    for period in sorted(counts):
        if held and held + counts[period] > RESTORE_PART:
            end = period * RESTORE_PERIOD_MS
            yield start, end
            start, held = end, 0
        held += counts[period]
    yield start, None


def _remove(graph: Legs, leg: Leg) -> bool:
    """Take a leg out of a RAM graph; False if it is not there (it is on disk)."""
    to = graph.get(leg.seller_id, {})
    by_id = to.get(leg.buyer_id, {})
    found = by_id.pop(leg.event_id, None) is not None
    if not by_id:
        to.pop(leg.buyer_id, None)
    if not to:
        graph.pop(leg.seller_id, None)
    return found
