"""Newcomers to the market: products listed for the first time and participants who join.

Rates come from the published figures (3,328 new products in half a year, 2,600 new
participants a quarter), scaled to the simulated market by traded value (`figures`), so
they follow the arrival rate and its growth trend. A newcomer shows at once: a new seller
lists its first product on joining (one of the new products), a new buyer makes its first
purchase (retried each second while no exchange has room this minute).
"""

from __future__ import annotations

import random
from functools import partial
from typing import Final

from dmm.simulator import figures, prices
from dmm.simulator.agenda import Action, Agenda
from dmm.simulator.growth import Trend
from dmm.simulator.market import Participant, pick
from dmm.simulator.traffic import CleanTraffic

_RETRY_MS: Final = 1_000


def per_arrival(count: float, period_years: float) -> float:
    """A national count per period as newcomers per business arrival of the simulator."""
    return count / period_years / figures.ON_EXCHANGE_CNY_PER_YEAR * figures.CNY_PER_ARRIVAL


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
        rate: float,
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
        self.participants_per_s = rate * per_arrival(participants_per_quarter, 0.25)
        self.products_per_s = rate * per_arrival(products_per_half_year - brought, 0.5)
        # Participants who joined, with the event time they joined at.
        self.joined: list[tuple[int, Participant]] = []

    def start(self, ms: int) -> None:
        self._schedule(ms, self.products_per_s, self._new_product)
        self._schedule(ms, self.participants_per_s, self._new_participant)

    def _schedule(self, ms: int, rate_per_s: float, action: Action) -> None:
        due = self.trend.next_arrival(self.rng, ms, rate_per_s)
        if due is not None:
            self.agenda.at(due, action)

    def _new_product(self, ms: int) -> None:
        self._list_new(ms, self._home(ms))
        self._schedule(ms, self.products_per_s, self._new_product)

    def _new_participant(self, ms: int) -> None:
        if self.rng.random() < self.seller_share:
            home = self._home(ms)
            seller = self.market.add_seller(self.rng, home)
            self.joined.append((ms, seller))
            self._list_new(ms, home, seller)
        else:
            buyer = self.market.add_buyer(self.rng)
            self.joined.append((ms, buyer))
            self._first_purchase(buyer, ms)
        self._schedule(ms, self.participants_per_s, self._new_participant)

    def _home(self, ms: int) -> str:
        return pick(self.rng, {code: figures.EXCHANGE_WEIGHTS[code] for code in self.traffic.sending(ms)})

    def _list_new(self, ms: int, home: str, seller: Participant | None = None) -> None:
        product = self.market.new_product(self.rng, home, self.year, seller)
        self.traffic.venues.list_product(ms, product, home, prices.exchange_list_price(self.rng, product.base_price))

    def _first_purchase(self, buyer: Participant, ms: int) -> None:
        if not self.traffic.trade(ms, buyer):
            self.agenda.at(ms + _RETRY_MS, partial(self._first_purchase, buyer))
