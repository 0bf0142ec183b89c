"""Labelled anomaly injection: one injection makes exactly one incident of its kind.

Each scenario breaks one rule and keeps every other: injected trades are priced normally
(except the outlier itself), go between fresh or ordinary parties, stay on listed products
(except the unlisted trade), and fit under the per-minute volume cap (except the spike).
Products an injection relies on are frozen, so clean traffic never reprices or delists
them afterwards and a gap, once opened, stays open.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from statistics import median
from typing import Final, get_args

from dmm.simulator import prices
from dmm.simulator.agenda import Agenda
from dmm.simulator.figures import EXCHANGE_WEIGHTS
from dmm.simulator.ground_truth import Incident
from dmm.simulator.identity import CITY_CODES, credit_code
from dmm.simulator.market import Listing, Participant, Product, pick
from dmm.simulator.venues import Venues
from dmm.simulator.volume import INJECTED_SHARE, MINUTE_MS, minute_of
from models import AlertKind, exchanges
from settings import RuleSettings

KINDS: Final[tuple[str, ...]] = get_args(AlertKind)

_WARMUP_MS: Final = 5 * MINUTE_MS
_TAIL_MS: Final = 6 * MINUTE_MS
_RETRY_MS: Final = MINUTE_MS
_NORMAL_HIGH: Final = Decimal(1) + Decimal(str(prices.TRADE_SPREAD))
_WASH_MAX_PRICE: Final = 8_000.0  # CNY at a price scale of 1
_WASH_STEP_S: Final = (30, 120)
_OUTLIER_HIGH: Final = (3.5, 4.5)
_OUTLIER_LOW: Final = (0.10, 0.25)
_GAP_FACTOR: Final = (2.3, 3.0)
_SPIKE_MARGIN: Final = Decimal("1.5")
_SPIKE_TRADES: Final = (4, 7)
_SPIKE_STEP_MS: Final = (2_000, 4_000)
_SPIKE_OFFSET_MS: Final = (5_000, 25_000)
_SILENCE_FACTOR: Final = (1.25, 1.6)
_SILENCE_TAIL_MS: Final = 4 * MINUTE_MS


class Injector:
    """Plans injections at random event times and carries them out against the live market."""

    def __init__(self, rng: random.Random, venues: Venues, agenda: Agenda, rules: RuleSettings) -> None:
        self.rng = rng
        self.venues = venues
        self.market = venues.market
        self.tape = venues.tape
        self.agenda = agenda
        self.rules = rules
        self.incidents: list[Incident] = []
        self.pending = 0
        # Exchanges in the middle of a multi-step injection: never silenced meanwhile.
        self.busy: set[str] = set()

    def plan(self, start_ms: int, end_ms: int, counts: Mapping[str, int]) -> None:
        """Schedule `counts[kind]` injections of each kind inside [start_ms, end_ms]."""
        for kind in KINDS:
            for variant in range(counts.get(kind, 0)):
                self.agenda.at(self._when(kind, start_ms, end_ms), partial(self._attempt, kind, variant))
                self.pending += 1

    def _when(self, kind: str, start_ms: int, end_ms: int) -> int:
        if kind == "volume_spike":
            first = minute_of(start_ms) + self.rules.volume_spike_history_windows + 2
            last = minute_of(end_ms) - 2
            _require(first <= last, kind, (first + 2) * MINUTE_MS - start_ms)
            return self.rng.randint(first, last) * MINUTE_MS + self.rng.randint(*_SPIKE_OFFSET_MS)
        tail = _SILENCE_TAIL_MS if kind == "exchange_silent" else _TAIL_MS
        _require(start_ms + _WARMUP_MS <= end_ms - tail, kind, _WARMUP_MS + tail)
        return self.rng.randint(start_ms + _WARMUP_MS, end_ms - tail)

    def _attempt(self, kind: str, variant: int, ms: int) -> None:
        """Inject now, or a minute later when the market offers no suitable target yet."""
        inject = {
            "self_dealing": self._self_dealing,
            "wash_trading": self._wash_trading,
            "unlisted_product": self._unlisted_product,
            "pricing_policy_violation": self._pricing_policy_violation,
            "price_outlier": self._price_outlier,
            "cross_exchange_price_gap": self._cross_exchange_price_gap,
            "volume_spike": self._volume_spike,
            "exchange_silent": self._exchange_silent,
        }[kind]
        if not inject(ms, variant):
            self.agenda.at(ms + _RETRY_MS, partial(self._attempt, kind, variant))

    def _record(self, incident: Incident) -> None:
        self.incidents.append(incident)
        self.pending -= 1

    # -- choosing targets ----------------------------------------------------------------

    def _sending(self, ms: int) -> list[str]:
        return [code for code in EXCHANGE_WEIGHTS if not self.tape.is_silent(code, ms)]

    def _room(self, exchange_id: str, ms: int) -> Decimal:
        return self.venues.ledger.room(exchange_id, ms, INJECTED_SHARE)

    def _listings(self, ms: int, *, max_factor: Decimal = _NORMAL_HIGH) -> list[Listing]:
        """Unfrozen paid listings whose one-unit trade at `max_factor` x list price fits the minute."""
        return [
            listing
            for code in self._sending(ms)
            for listing in self.market.active[code].values()
            if not listing.product.frozen
            and listing.product.pricing == "paid"
            and listing.price * max_factor <= self._room(code, ms)
        ]

    def _buyer(self, kind: str = "enterprise") -> Participant:
        return self.rng.choice([buyer for buyer in self.market.buyers if buyer.kind == kind])

    # -- the eight kinds -----------------------------------------------------------------

    def _self_dealing(self, ms: int, variant: int) -> bool:
        """The seller buys its own product at a normal price."""
        candidates = self._listings(ms)
        if not candidates:
            return False
        listing = self.rng.choice(candidates)
        product = listing.product
        product.frozen = True
        event_id = self.venues.trade(
            ms,
            listing.exchange_id,
            listing.product,
            seller_id=product.seller_id,
            buyer_id=product.seller_id,
            price=prices.trade_price(self.rng, listing.price),
            quantity=1,
            purpose="commercial",
        )
        note = f"seller {product.seller_id} bought its own product"
        self._record(Incident.spanning("self_dealing", listing.exchange_id, product.product_id, [(event_id, ms)], note))
        return True

    def _wash_trading(self, ms: int, variant: int) -> bool:
        """A product passes A->B->A (even variants) or A->B->C->A (odd) at normal prices."""
        max_price = prices.money(_WASH_MAX_PRICE * self.market.price_scale)
        candidates = [
            listing
            for listing in self._listings(ms)
            if listing.price <= max_price and listing.exchange_id not in self.busy
        ]
        if not candidates:
            return False
        listing = self.rng.choice(candidates)
        listing.product.frozen = True
        city = CITY_CODES[exchanges()[listing.exchange_id].city]
        ring = [listing.product.seller_id] + [credit_code(self.rng, city, "enterprise") for _ in range(1 + variant % 2)]
        self.busy.add(listing.exchange_id)
        self._wash_step(listing, ring, [], ms)
        return True

    def _wash_step(self, listing: Listing, ring: list[str], evidence: list[tuple[str, int]], ms: int) -> None:
        step = len(evidence)
        if listing.price * _NORMAL_HIGH > self._room(listing.exchange_id, ms):
            self.agenda.at(ms + _RETRY_MS, partial(self._wash_step, listing, ring, evidence))
            return
        event_id = self.venues.trade(
            ms,
            listing.exchange_id,
            listing.product,
            seller_id=ring[step],
            buyer_id=ring[(step + 1) % len(ring)],
            price=prices.trade_price(self.rng, listing.price),
            quantity=1,
            purpose="commercial",
        )
        evidence.append((event_id, ms))
        if len(evidence) < len(ring):
            later = ms + 1_000 * self.rng.randint(*_WASH_STEP_S)
            self.agenda.at(later, partial(self._wash_step, listing, ring, evidence))
            return
        self.busy.discard(listing.exchange_id)
        path = "->".join([*"ABC"[: len(ring)], "A"])
        note = f"cycle {path} among {', '.join(ring)}"
        self._record(Incident.spanning("wash_trading", listing.exchange_id, listing.product.product_id, evidence, note))

    def _unlisted_product(self, ms: int, variant: int) -> bool:
        """A trade on an exchange where the product was never listed nor recognised."""
        candidates: list[tuple[Product, str, Decimal]] = []
        sending = self._sending(ms)
        for product in self.market.products:
            listed = self.market.listings_of(product.product_id)
            if product.frozen or product.pricing != "paid" or not listed:
                continue
            reference = Decimal(median(listing.price for listing in listed))
            candidates.extend(
                (product, code, reference)
                for code in sending
                if self.market.can_list(product, code)
                and code not in product.recognized_by
                and reference * _NORMAL_HIGH <= self._room(code, ms)
            )
        if not candidates:
            return False
        product, code, reference = self.rng.choice(candidates)
        product.frozen = True
        self.market.closed.add((product.product_id, code))
        event_id = self.venues.trade(
            ms,
            code,
            product,
            seller_id=product.seller_id,
            buyer_id=self._buyer().code,
            price=prices.trade_price(self.rng, prices.money(reference)),
            quantity=1,
            purpose="commercial",
        )
        listed_on = ", ".join(listing.exchange_id for listing in self.market.listings_of(product.product_id))
        note = f"traded on {code}, listed only on {listed_on}"
        self._record(Incident.spanning("unlisted_product", code, product.product_id, [(event_id, ms)], note))
        return True

    def _pricing_policy_violation(self, ms: int, variant: int) -> bool:
        """Conditionally free public data charged at its list price to a government buyer."""
        candidates = [
            listing
            for code in self._sending(ms)
            for listing in self.market.active[code].values()
            if not listing.product.frozen
            and listing.product.source == "public"
            and listing.product.pricing == "conditional_free"
            and Decimal(0) < listing.price <= self._room(code, ms)
        ]
        if not candidates:
            return False
        listing = self.rng.choice(candidates)
        listing.product.frozen = True
        event_id = self.venues.trade(
            ms,
            listing.exchange_id,
            listing.product,
            seller_id=listing.product.seller_id,
            buyer_id=self._buyer("agency").code,
            price=listing.price,
            quantity=1,
            purpose="public_governance",
        )
        note = f"public_governance purchase of conditional_free public data charged {listing.price} CNY"
        kind, product_id = "pricing_policy_violation", listing.product.product_id
        self._record(Incident.spanning(kind, listing.exchange_id, product_id, [(event_id, ms)], note))
        return True

    def _price_outlier(self, ms: int, variant: int) -> bool:
        """One trade far above (even variants) or below (odd) the list price."""
        high = variant % 2 == 0
        bounds = _OUTLIER_HIGH if high else _OUTLIER_LOW
        candidates = self._listings(ms, max_factor=Decimal(str(bounds[1])))
        if not candidates:
            return False
        listing = self.rng.choice(candidates)
        listing.product.frozen = True
        price = prices.money(float(listing.price) * self.rng.uniform(*bounds))
        event_id = self.venues.trade(
            ms,
            listing.exchange_id,
            listing.product,
            seller_id=listing.product.seller_id,
            buyer_id=self._buyer().code,
            price=price,
            quantity=1,
            purpose="commercial",
        )
        note = f"{'high' if high else 'low'}: price {price} vs list price {listing.price} CNY"
        product_id = listing.product.product_id
        self._record(Incident.spanning("price_outlier", listing.exchange_id, product_id, [(event_id, ms)], note))
        return True

    def _cross_exchange_price_gap(self, ms: int, variant: int) -> bool:
        """One exchange reprices a multi-listed product far above its cheapest listing elsewhere."""
        sending = set(self._sending(ms))
        candidates = [
            listings
            for product in self.market.products
            if not product.frozen
            and product.pricing != "free"
            and len(listings := self.market.listings_of(product.product_id)) >= 2
            and any(listing.exchange_id in sending for listing in listings)
        ]
        if not candidates:
            return False
        listings = self.rng.choice(candidates)
        target = self.rng.choice([listing for listing in listings if listing.exchange_id in sending])
        cheapest = min((listing for listing in listings if listing is not target), key=lambda listing: listing.price)
        target.product.frozen = True
        price = prices.money(float(cheapest.price) * self.rng.uniform(*_GAP_FACTOR))
        event_id = self.venues.reprice(ms, target, price)
        evidence = [(cheapest.price_event_id, cheapest.price_event_ms), (event_id, ms)]
        note = f"repriced to {price} CNY on {target.exchange_id}; {cheapest.price} CNY on {cheapest.exchange_id}"
        product_id = target.product.product_id
        self._record(Incident.spanning("cross_exchange_price_gap", target.exchange_id, product_id, evidence, note))
        return True

    def _volume_spike(self, ms: int, variant: int) -> bool:
        """A burst of large, normally priced trades inside one minute on one exchange."""
        eligible = {
            code: [listing for listing in self.market.active[code].values() if listing.product.pricing == "paid"]
            for code in self._sending(ms)
            if code not in self.busy
        }
        weights = {code: EXCHANGE_WEIGHTS[code] for code, listings in eligible.items() if listings}
        if not weights:
            return False
        code = pick(self.rng, weights)
        listings = self.rng.sample(eligible[code], min(3, len(eligible[code])))
        for listing in listings:
            listing.product.frozen = True
        baseline = self.venues.ledger.baseline(code, ms)
        target = self.venues.ledger.threshold(code, ms) * _SPIKE_MARGIN
        trades = self.rng.randint(*_SPIKE_TRADES)
        self.busy.add(code)
        self._spike_step(code, listings, trades, target, baseline, [], ms)
        return True

    def _spike_step(
        self,
        code: str,
        listings: list[Listing],
        trades: int,
        target: Decimal,
        baseline: Decimal,
        evidence: list[tuple[str, int]],
        ms: int,
    ) -> None:
        step = len(evidence)
        listing = listings[step % len(listings)]
        price = prices.trade_price(self.rng, listing.price)
        remaining = target - self.venues.ledger.amount(code, ms)
        quantity = max(1, math.ceil(remaining / (price * (trades - step))))
        event_id = self.venues.trade(
            ms,
            code,
            listing.product,
            seller_id=listing.product.seller_id,
            buyer_id=self._buyer().code,
            price=price,
            quantity=quantity,
            purpose="commercial",
        )
        evidence.append((event_id, ms))
        if len(evidence) < trades:
            later = ms + self.rng.randint(*_SPIKE_STEP_MS)
            if minute_of(later) != minute_of(ms):
                raise RuntimeError("a volume-spike burst must stay inside one minute")
            self.agenda.at(later, partial(self._spike_step, code, listings, trades, target, baseline, evidence))
            return
        self.busy.discard(code)
        amount = self.venues.ledger.amount(code, ms)
        note = f"minute amount {amount:.2f} CNY vs median {baseline:.2f} CNY of the previous windows"
        self._record(Incident.spanning("volume_spike", code, None, evidence, note))

    def _exchange_silent(self, ms: int, variant: int) -> bool:
        """An exchange sends nothing at all for longer than the silence threshold, then resumes."""
        candidates = [code for code in self._sending(ms) if code not in self.busy and code in self.tape.last_event]
        if not candidates:
            return False
        code = self.rng.choice(candidates)
        last = self.tape.last_event[code]
        silent_ms = 1_000 * self.rules.exchange_silent_s
        resume = ms + round(silent_ms * self.rng.uniform(*_SILENCE_FACTOR))
        self.busy.add(code)

        def resumed(event_id: str, resumed_ms: int) -> None:
            self.busy.discard(code)
            gap_s = (resumed_ms - last[1]) / 1_000
            note = f"no events for {gap_s:.1f} s of event time"
            self._record(Incident.spanning("exchange_silent", code, None, [last, (event_id, resumed_ms)], note))

        self.tape.silence(code, ms, resume, resumed)
        return True


def _require(feasible: bool, kind: str, needed_ms: int) -> None:
    if not feasible:
        raise ValueError(f"duration too short to inject {kind}: needs at least {needed_ms // 1_000} s of event time")
