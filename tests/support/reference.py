"""Brute-force reference checks of the contract's alert rules, written from the contract text alone.

Deliberately naive (replay everything, compare everything) and independent of the
simulator's code, so they can judge its output. Each returns its findings; clean traffic
must have none, and an injected scenario exactly its labelled incidents.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import Any

Event = dict[str, Any]

WASH_WINDOW_MS = 24 * 3600 * 1000
LATENESS_MS = 300 * 1000
OUTLIER_RATIO = Decimal(3)
GAP_RATIO = Decimal(2)
SPIKE_RATIO = Decimal(5)
SPIKE_HISTORY = 30
SPIKE_MIN_WINDOWS = 10
SPIKE_MIN_AMOUNT = Decimal(100_000)
SILENT_MS = 120 * 1000


def parse(lines: list[bytes]) -> list[Event]:
    """JSON events with their event time in ms added as `_ms`."""
    events = []
    for line in lines:
        event = json.loads(line)
        event["_ms"] = int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)
        events.append(event)
    return events


def trades(events: list[Event]) -> list[Event]:
    return [event for event in events if event["type"] == "trade"]


def self_dealing(events: list[Event]) -> list[str]:
    """Trades whose buyer is their seller."""
    return [t["event_id"] for t in trades(events) if t["buyer_id"] == t["seller_id"]]


def wash_cycles(events: list[Event]) -> list[tuple[str, ...]]:
    """Trades of one product that go A->B->A or A->B->C->A (distinct parties) within 24 h."""
    by_product: dict[str, list[Event]] = defaultdict(list)
    for trade in trades(events):
        if trade["buyer_id"] != trade["seller_id"]:  # a self-trade is self_dealing, not a cycle
            by_product[trade["product_id"]].append(trade)
    cycles = []
    for chain in by_product.values():
        for i, first in enumerate(chain):
            a, b = first["seller_id"], first["buyer_id"]
            for j in range(i + 1, len(chain)):
                second = chain[j]
                if second["_ms"] - first["_ms"] > WASH_WINDOW_MS or second["seller_id"] != b:
                    continue
                c = second["buyer_id"]
                if c == a:
                    cycles.append((first["event_id"], second["event_id"]))
                    continue
                for third in chain[j + 1 :]:
                    if (
                        third["_ms"] - first["_ms"] <= WASH_WINDOW_MS
                        and third["seller_id"] == c
                        and third["buyer_id"] == a
                    ):
                        cycles.append((first["event_id"], second["event_id"], third["event_id"]))
    return cycles


class _Catalogue:
    """Replays listing events: what is active where, at what price, recognised by whom."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str], Event] = {}
        self.price: dict[tuple[str, str], Decimal] = {}
        self.attributes: dict[str, Event] = {}

    def apply(self, event: Event) -> None:
        key = (event["exchange_id"], event["product_id"])
        if event["action"] == "list":
            self.active[key] = event
            self.price[key] = Decimal(event["list_price"])
            self.attributes.setdefault(event["product_id"], event)
        elif event["action"] == "reprice" and key in self.active:
            self.price[key] = Decimal(event["list_price"])
        elif event["action"] == "delist":
            self.active.pop(key, None)
            self.price.pop(key, None)

    def prices_of(self, product_id: str) -> dict[str, Decimal]:
        return {exchange: price for (exchange, product), price in self.price.items() if product == product_id}

    def allowed(self, exchange_id: str, product_id: str) -> bool:
        if (exchange_id, product_id) in self.active:
            return True
        return any(
            product == product_id and exchange_id in listing.get("recognized_by", [])
            for (_, product), listing in self.active.items()
        )


def unlisted(events: list[Event]) -> dict[tuple[str, str, str], list[str]]:
    """(exchange, product, day) -> trades of a product neither active nor recognised there."""
    catalogue = _Catalogue()
    suspects: list[Event] = []
    for event in events:
        if event["type"] == "listing":
            catalogue.apply(event)
        elif event["type"] == "trade" and not catalogue.allowed(event["exchange_id"], event["product_id"]):
            suspects.append(event)
    findings: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for trade in suspects:
        late_listing = any(
            e["type"] == "listing"
            and e["action"] == "list"
            and e["product_id"] == trade["product_id"]
            and (e["exchange_id"] == trade["exchange_id"] or trade["exchange_id"] in e.get("recognized_by", []))
            and 0 <= e["_ms"] - trade["_ms"] <= LATENESS_MS
            for e in events
        )
        if not late_listing:
            findings[(trade["exchange_id"], trade["product_id"], trade["occurred_at"][:10])].append(trade["event_id"])
    return dict(findings)


def pricing_policy(events: list[Event]) -> list[str]:
    """public_governance trades with amount > 0 of public data listed free or conditional_free."""
    catalogue = _Catalogue()
    found = []
    for event in events:
        if event["type"] == "listing":
            catalogue.apply(event)
        elif event["type"] == "trade" and event["purpose"] == "public_governance" and Decimal(event["amount"]) > 0:
            listed = catalogue.attributes.get(event["product_id"])
            if listed and listed["source"] == "public" and listed["pricing"] in ("free", "conditional_free"):
                found.append(event["event_id"])
    return found


def price_outliers(events: list[Event]) -> list[str]:
    """Trades priced >= 3x or <= 1/3 of the reference (list price here, else median elsewhere)."""
    catalogue = _Catalogue()
    found = []
    for event in events:
        if event["type"] == "listing":
            catalogue.apply(event)
            continue
        if event["type"] != "trade":
            continue
        prices = catalogue.prices_of(event["product_id"])
        if not prices:
            continue
        reference = prices.get(event["exchange_id"], Decimal(median(prices.values())))
        price = Decimal(event["price"])
        listed = catalogue.attributes[event["product_id"]]
        exempt = (
            price == 0
            and event["purpose"] == "public_governance"
            and listed["pricing"] in ("free", "conditional_free")
        )
        if reference == 0 or exempt:
            continue
        if price >= OUTLIER_RATIO * reference or price * OUTLIER_RATIO <= reference:
            found.append(event["event_id"])
    return found


def price_gaps(events: list[Event]) -> list[tuple[str, str]]:
    """(product, listing event) each time a product's highest active list price reaches 2x its lowest."""
    catalogue = _Catalogue()
    open_gaps: set[str] = set()
    found = []
    for event in events:
        if event["type"] != "listing":
            continue
        catalogue.apply(event)
        product = event["product_id"]
        prices = list(catalogue.prices_of(product).values())
        gap = len(prices) >= 2 and max(prices) >= GAP_RATIO * min(prices)
        if gap and product not in open_gaps:
            found.append((product, event["event_id"]))
        if gap:
            open_gaps.add(product)
        else:
            open_gaps.discard(product)
    return found


def volume_spikes(events: list[Event]) -> list[tuple[str, int]]:
    """(exchange, minute) whose amount is >= 100,000 and >= 5x the median of its previous 30 windows."""
    first_minute: dict[str, int] = {}
    amounts: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for event in events:
        minute = event["_ms"] // 60_000
        first_minute.setdefault(event["exchange_id"], minute)
        if event["type"] == "trade":
            amounts[event["exchange_id"]][minute] += Decimal(event["amount"])
    found = []
    for exchange, windows in amounts.items():
        for minute, amount in windows.items():
            previous = range(max(first_minute[exchange], minute - SPIKE_HISTORY), minute)
            history = [windows.get(m, Decimal(0)) for m in previous]
            if amount < SPIKE_MIN_AMOUNT or len(history) < SPIKE_MIN_WINDOWS:
                continue
            if amount >= SPIKE_RATIO * median(history):
                found.append((exchange, minute))
    return sorted(found)


def silences(events: list[Event]) -> list[tuple[str, str, str | None]]:
    """(exchange, its last event before, its first event after) for each time it fell > 120 s behind."""
    watermark = 0
    last: dict[str, Event] = {}
    silent: dict[str, Event] = {}
    found: list[tuple[str, str, str | None]] = []
    for event in events:
        exchange = event["exchange_id"]
        if exchange in silent:
            found.append((exchange, silent.pop(exchange)["event_id"], event["event_id"]))
        last[exchange] = event
        watermark = max(watermark, event["_ms"])
        for code, seen in last.items():
            if code not in silent and watermark - seen["_ms"] > SILENT_MS:
                silent[code] = seen
    found.extend((code, seen["event_id"], None) for code, seen in silent.items())
    return found
