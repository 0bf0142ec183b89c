"""Newcomers to the market: products listed for the first time and participants who join.

Rates are the published national figures per day of event time (3,328 new products in half
a year, 2,600 new participants a quarter), whatever the event rate, growing along the trend.
They come at a steady pace: one newcomer at a random moment of each successive slot of one
expected arrival, so a day holds its expected count give or take one rather than a Poisson
draw (a regulator reads them per day). A newcomer shows at once: a new seller lists its first
product on joining (one of the new products), a new buyer makes its first purchase (retried
each second while no exchange is open; closed a minute later when its exchange's minute is full).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Final

from dmm.simulator import figures, prices
from dmm.simulator.agenda import Agenda
from dmm.simulator.growth import SECONDS_PER_DAY, Trend
from dmm.simulator.market import Participant, pick
from dmm.simulator.traffic import CleanTraffic

_RETRY_MS: Final = 1_000


class Entrants:
    """Two arrival processes on the agenda: new products and new participants."""

    def __init__(
        self,
        rng: random.Random,
        traffic: CleanTraffic,
        agenda: Agenda,
        trend: Trend,
        year: int,
        *,
        products_per_half_year: float,
        participants_per_quarter: float,
    ) -> None:
        self.rng = rng
        self.traffic = traffic
        self.market = traffic.market
        self.agenda = agenda
        self.trend = trend
        self.year = year
        # Newcomers sell in the proportion the market starts with, whatever joins later.
        self.seller_share = share = self.market.seller_share
        # New sellers list a new product on joining: the rest of the new products come on their own.
        brought = 2 * share * participants_per_quarter
        if brought > products_per_half_year:
            raise ValueError(
                f"{participants_per_quarter:g} new participants a quarter bring {brought:.0f} new products a half "
                f"year with them (the {share:.0%} who sell list one on joining), more than the "
                f"{products_per_half_year:g} configured: raise the new products or lower the new participants"
            )
        self.participants_per_s = participants_per_quarter / (figures.DAYS_PER_QUARTER * SECONDS_PER_DAY)
        self.products_per_s = (products_per_half_year - brought) / (figures.DAYS_PER_HALF_YEAR * SECONDS_PER_DAY)
        # Participants who joined, with the event time they joined at.
        self.joined: list[tuple[int, Participant]] = []

    def start(self, ms: int) -> None:
        self._schedule(ms, self.products_per_s, self._new_product)
        self._schedule(ms, self.participants_per_s, self._new_participant)

    def _schedule(self, slot_start: int, rate_per_s: float, action: Callable[[int, int], None]) -> None:
        """`action(slot_end, ms)` at a random moment of the slot from `slot_start` that holds one expected arrival."""
        slot_end = self.trend.after(slot_start, rate_per_s, 1.0)
        if slot_end is not None:
            self.agenda.at(self.rng.randint(slot_start, slot_end), partial(action, slot_end))

    def _new_product(self, slot_end: int, ms: int) -> None:
        self._list_new(ms, self._home(ms))
        self._schedule(slot_end, self.products_per_s, self._new_product)

    def _new_participant(self, slot_end: int, ms: int) -> None:
        if self.rng.random() < self.seller_share:
            home = self._home(ms)
            seller = self.market.add_seller(self.rng, home)
            self.joined.append((ms, seller))
            self._list_new(ms, home, seller)
        else:
            buyer = self.market.add_buyer(self.rng)
            self.joined.append((ms, buyer))
            self._first_purchase(buyer, ms)
        self._schedule(slot_end, self.participants_per_s, self._new_participant)

    def _home(self, ms: int) -> str:
        return pick(self.rng, {code: figures.EXCHANGE_WEIGHTS[code] for code in self.traffic.sending(ms)})

    def _list_new(self, ms: int, home: str, seller: Participant | None = None) -> None:
        product = self.market.new_product(self.rng, home, self.year, seller)
        self.traffic.venues.list_product(ms, product, home, prices.exchange_list_price(self.rng, product.base_price))

    def _first_purchase(self, buyer: Participant, ms: int) -> None:
        if not self.traffic.trade(ms, buyer):
            self.agenda.at(ms + _RETRY_MS, partial(self._first_purchase, buyer))
