"""The legs `wash_trading` remembers (24 h of trades), in RAM up to a bound and on local disk beyond it.

A day of trades at national rates is hundreds of millions of legs: more than a
worker's RAM. Legs therefore gather in RAM (the graph the search walks) up to the
configured bound; beyond it, the oldest are written to local disk (`SpilledLegs`),
a batch's worth at a time, keyed by exchange, product, seller and buyer, in one
column family per span of event time. A search only reads the disk for the
legs of a party that sold the product on that exchange within the horizon, which
RAM tells exactly (one entry per exchange, product and seller, not per leg): in
a market where products are sold by those who list them, a buyer has none and
the disk is not read at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from rocksdict import ColumnFamily, Rdict, WriteBatch

from models import Trade
from streams.kept_state import DATABASE
from streams.local_state import SPAN_MS, LocalDB

RAM_LEGS = 20_000  # the newest legs, held in RAM (~0.6 KiB each: ~12 MiB); older ones go to disk
_SEP = "\x00"  # identifiers hold no control character (the contract's pattern)

Legs = dict[str, dict[str, dict[str, "Leg"]]]  # seller -> buyer -> event_id -> leg
_SELLERS = pa.schema(  # `SpilledLegs.keep`: per exchange, product and seller, the latest leg on disk
    [("exchange_id", pa.string()), ("product_id", pa.string()), ("seller_id", pa.string()), ("at_ms", pa.int64())]
)


@dataclass(frozen=True, slots=True)
class Leg:
    at_ms: int
    event_id: str
    trade_id: str
    seller_id: str
    buyer_id: str
    amount: Decimal

    @classmethod
    def of(cls, trade: Trade) -> Leg:
        return cls(
            trade.at_ms,
            trade.event_id,
            trade.trade_id,
            trade.seller_id,
            trade.buyer_id,
            trade.amount,
        )


class SpilledLegs:
    """Legs on local disk (a directory of the worker's own, opened at the first spill), and per exchange and
    product, the latest leg each seller has there: which parties a search must read the disk for."""

    def __init__(self, state_dir: Path | None) -> None:
        self._state_dir = state_dir
        self._local: LocalDB | None = None
        self._spans: dict[int, tuple[Rdict, ColumnFamily]] = {}
        self._sellers: dict[tuple[str, str], dict[str, int]] = {}

    @property
    def path(self) -> Path | None:
        return self._local.path if self._local is not None else None

    def may_have(self, exchange_id: str, product_id: str, seller_id: str, horizon_ms: int) -> bool:
        """Whether the disk may hold a leg this party sold, within the horizon (exact on the negative side)."""
        latest = self._sellers.get((exchange_id, product_id), {}).get(seller_id)
        return latest is not None and latest >= horizon_ms

    def write(self, legs: Iterable[tuple[str, str, Leg]]) -> None:
        """Put `(exchange_id, product_id, leg)`s on disk, each in its span's column family, in one write."""
        local = self._local or self._open()
        writes = WriteBatch(raw_mode=True)
        for exchange_id, product_id, leg in legs:
            _, handle = self._span(local, leg.at_ms // SPAN_MS)
            writes.put(_key(exchange_id, product_id, leg), _value(leg), handle)
            sold = self._sellers.setdefault((exchange_id, product_id), {})
            sold[leg.seller_id] = max(sold.get(leg.seller_id, leg.at_ms), leg.at_ms)
        local.write(writes)

    def write_table(self, legs: pa.Table) -> None:
        """`write` for legs as Arrow columns (`StateReader.trade_legs`): a restore's day of them, keys and values
        made by Arrow, no object per leg."""
        if not legs.num_rows:
            return
        local = self._local or self._open()
        ids = (legs[column] for column in ("exchange_id", "product_id", "seller_id", "buyer_id", "event_id"))
        keys = pc.cast(pc.binary_join_element_wise(*ids, _SEP), pa.binary())
        at = legs["at_ms"]
        text = (pc.cast(at, pa.string()), legs["trade_id"], pc.cast(legs["amount"], pa.string()))
        values = pc.cast(pc.binary_join_element_wise(*text, _SEP), pa.binary())
        spans = pc.divide(at, SPAN_MS)  # integer division: event times are after the epoch
        writes = WriteBatch(raw_mode=True)
        for number in pc.unique(spans).to_pylist():
            _, handle = self._span(local, number)
            here = pc.equal(spans, number)
            for key, value in zip(keys.filter(here).to_pylist(), values.filter(here).to_pylist(), strict=True):
                writes.put(key, value, handle)
        local.write(writes)
        latest = legs.group_by(["exchange_id", "product_id", "seller_id"]).aggregate([("at_ms", "max")])
        for exchange_id, product_id, seller_id, at_ms in zip(*(c.to_pylist() for c in latest.columns), strict=True):
            sold = self._sellers.setdefault((exchange_id, product_id), {})
            sold[seller_id] = max(sold.get(seller_id, at_ms), at_ms)

    def sold_by(self, exchange_id: str, product_id: str, seller_id: str, horizon_ms: int) -> Iterator[Leg]:
        """The party's legs of the product on that exchange at or after `horizon_ms`."""
        prefix = _SEP.join((exchange_id, product_id, seller_id, "")).encode()
        for number, (column, _) in self._spans.items():
            if (number + 1) * SPAN_MS <= horizon_ms:
                continue
            cursor = column.iter()
            cursor.seek(prefix)
            while cursor.valid():
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                leg = _leg(seller_id, key[len(prefix) :], cursor.value())
                if leg.at_ms >= horizon_ms:
                    yield leg
                cursor.next()

    def delete(self, exchange_id: str, product_id: str, leg: Leg) -> None:
        """Forget a leg used up in an alerted cycle."""
        span = self._spans.get(leg.at_ms // SPAN_MS)
        if span is not None:
            span[0].delete(_key(exchange_id, product_id, leg))

    def forget(self, horizon_ms: int) -> None:
        """Drop the spans wholly behind the horizon, and the sellers whose latest leg is."""
        for number in [n for n in self._spans if (n + 1) * SPAN_MS <= horizon_ms]:
            del self._spans[number]
            assert self._local is not None  # it holds every span
            self._local.drop(f"legs-{number}")
        for key in [k for k, sold in self._sellers.items() if max(sold.values()) < horizon_ms]:
            del self._sellers[key]

    def count(self, horizon_ms: int) -> int:
        """Legs on disk at or after the horizon (reads them all: for tests and diagnostics)."""
        total = 0
        for column, _ in self._spans.values():
            for value in column.values():
                total += int(value.split(_SEP.encode(), 1)[0]) >= horizon_ms
        return total

    def keep(self, directory: Path) -> None:
        """Leave the legs on disk in `directory` for a later start (`streams.kept_state`): the RocksDB directory,
        and which sellers have legs there (`sellers.arrow`). Closed afterwards."""
        columns: tuple[list[str], list[str], list[str], list[int]] = ([], [], [], [])
        for (exchange_id, product_id), sold in self._sellers.items():
            columns[0].extend([exchange_id] * len(sold))
            columns[1].extend([product_id] * len(sold))
            columns[2].extend(sold)
            columns[3].extend(sold.values())
        table = pa.table(list(columns), schema=_SELLERS)
        with pa.OSFile(str(directory / "sellers.arrow"), "wb") as sink, pa.ipc.new_file(sink, _SELLERS) as file:
            file.write_table(table)
        spans = sorted(self._spans)
        (directory / "spans.json").write_text(json.dumps(spans), encoding="utf-8")
        if self._local is not None:
            self._local.keep(directory / DATABASE, [column for column, _ in self._spans.values()])
        self._local, self._spans, self._sellers = None, {}, {}

    def take(self, directory: Path) -> None:
        """The legs a graceful stop kept in `directory` (checked by `streams.kept_state`), in place of these.
        Raises if they cannot be read whole; the caller then restores them from the store."""
        spans = json.loads((directory / "spans.json").read_text(encoding="utf-8"))
        with pa.memory_map(str(directory / "sellers.arrow")) as source:
            table = pa.ipc.open_file(source).read_all()
        if table.schema != _SELLERS:
            raise ValueError("kept sellers are not as this version writes them")
        sellers: dict[tuple[str, str], dict[str, int]] = {}
        for exchange_id, product_id, seller_id, at_ms in zip(*(c.to_pylist() for c in table.columns), strict=True):
            sellers.setdefault((exchange_id, product_id), {})[seller_id] = at_ms
        local = None
        if spans:
            local = LocalDB(self._state_dir, "legs", taken=directory / DATABASE)
        self.clear()
        self._local, self._sellers = local, sellers
        if local is not None:
            self._spans = {number: local.existing(f"legs-{number}") for number in spans}

    def clear(self) -> None:
        if self._local is not None:
            self._local.close()
        self._local, self._spans, self._sellers = None, {}, {}

    def _open(self) -> LocalDB:
        self._local = LocalDB(self._state_dir, "legs")
        return self._local

    def _span(self, local: LocalDB, number: int) -> tuple[Rdict, ColumnFamily]:
        span = self._spans.get(number)
        if span is None:
            span = self._spans[number] = local.column(f"legs-{number}")
        return span


def _key(exchange_id: str, product_id: str, leg: Leg) -> bytes:
    return _SEP.join((exchange_id, product_id, leg.seller_id, leg.buyer_id, leg.event_id)).encode()


def _value(leg: Leg) -> bytes:
    return _SEP.join((str(leg.at_ms), leg.trade_id, str(leg.amount))).encode()


def _leg(seller_id: str, rest: bytes, value: bytes) -> Leg:
    buyer_id, event_id = rest.decode().split(_SEP)
    at_ms, trade_id, amount = value.decode().split(_SEP)
    return Leg(int(at_ms), event_id, trade_id, seller_id, buyer_id, Decimal(amount))
