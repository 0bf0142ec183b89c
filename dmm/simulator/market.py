"""The market's participants and catalogue: who sells what, where it is listed, at what price.

Sellers and buyers are disjoint and a product has one seller for life, so clean trades
of a product all flow from that seller to buyers who never resell it: no self-dealing
and no trade cycle can arise by construction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from dmm.simulator import figures, prices
from dmm.simulator.identity import CITY_CODES, Kind, credit_code, product_code
from dmm.simulator.titles import product_title
from models import exchanges

_SELLERS_PER_WEIGHT = 1.2
_PRODUCTS_TOTAL = 260
_MIN_PRODUCTS_PER_EXCHANGE = 5
_BUYERS = 400
_CROSS_LIST_SHARE = 0.3
_MAX_RECOGNISED = 3


@dataclass(frozen=True, slots=True)
class Participant:
    code: str
    kind: Kind


@dataclass(slots=True)
class Product:
    product_id: str
    seller_id: str
    home: str
    title: str
    category: str
    source: str
    sector: str
    pricing: str
    unit: str
    high_quality: bool
    size_bytes: int | None
    base_price: Decimal
    recognized_by: tuple[str, ...]
    # Set once a labelled scenario relies on the product: clean traffic then stops changing its listings.
    frozen: bool = False


@dataclass(slots=True)
class Listing:
    """A product active on one exchange, and the event that set its current price."""

    product: Product
    exchange_id: str
    price: Decimal
    price_event_id: str
    price_event_ms: int


@dataclass(slots=True)
class Market:
    sellers: dict[str, list[Participant]]
    buyers: list[Participant]
    # Exchanges whose datasets are high-quality more often (they carry a set share of value there).
    hq_targets: frozenset[str] = frozenset()
    # Multiplies every price, so the market trades the value per day wanted at its event rate.
    price_scale: float = 1.0
    products: list[Product] = field(default_factory=list)
    active: dict[str, dict[str, Listing]] = field(default_factory=dict)
    # (product, exchange) pairs that may never be listed (again): delisted, or used as "unlisted".
    closed: set[tuple[str, str]] = field(default_factory=set)
    _serials: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rng: random.Random, hq_targets: frozenset[str] = frozenset(), price_scale: float = 1.0) -> Market:
        """Participants of every exchange's region and a national pool of buyers."""
        sellers = {
            code: [
                Participant(credit_code(rng, CITY_CODES[exchange.city], "enterprise"), "enterprise")
                for _ in range(max(2, round(_SELLERS_PER_WEIGHT * figures.EXCHANGE_WEIGHTS[code])))
            ]
            for code, exchange in exchanges().items()
        }
        kinds = list(figures.BUYER_KIND_WEIGHTS)
        weights = list(figures.BUYER_KIND_WEIGHTS.values())
        buyers = [_buyer(rng, kind) for kind in rng.choices(kinds, weights=weights, k=_BUYERS)]
        active: dict[str, dict[str, Listing]] = {code: {} for code in exchanges()}
        return cls(sellers=sellers, buyers=buyers, hq_targets=hq_targets, price_scale=price_scale, active=active)

    @property
    def seller_share(self) -> float:
        """Sellers among all participants: the share of newcomers who come to sell."""
        sellers = sum(len(pool) for pool in self.sellers.values())
        return sellers / (sellers + len(self.buyers))

    def add_seller(self, rng: random.Random, home: str) -> Participant:
        """A data merchant newly registered near exchange `home`."""
        seller = Participant(credit_code(rng, CITY_CODES[exchanges()[home].city], "enterprise"), "enterprise")
        self.sellers[home].append(seller)
        return seller

    def add_buyer(self, rng: random.Random) -> Participant:
        """A buyer newly admitted to the national market."""
        kinds = list(figures.BUYER_KIND_WEIGHTS)
        buyer = _buyer(rng, rng.choices(kinds, weights=list(figures.BUYER_KIND_WEIGHTS.values()))[0])
        self.buyers.append(buyer)
        return buyer

    def initial_catalogue(self, rng: random.Random, year: int) -> list[tuple[Product, str]]:
        """Products to list at the start, as (product, exchange) pairs, sized by exchange weight."""
        total = sum(figures.EXCHANGE_WEIGHTS.values())
        pairs: list[tuple[Product, str]] = []
        for code, weight in figures.EXCHANGE_WEIGHTS.items():
            count = max(_MIN_PRODUCTS_PER_EXCHANGE, round(_PRODUCTS_TOTAL * weight / total))
            for _ in range(count):
                product = self.new_product(rng, code, year)
                pairs.append((product, code))
                if product.pricing != "free" and rng.random() < _CROSS_LIST_SHARE:
                    pairs.extend((product, other) for other in self.cross_list_targets(rng, product))
        return pairs

    def new_product(self, rng: random.Random, home: str, year: int, seller: Participant | None = None) -> Product:
        """A new product of `seller` (default: one registered near `home`), with realistic attributes."""
        exchange = exchanges()[home]
        source = pick(rng, figures.SOURCE_WEIGHTS)
        category = pick(rng, figures.CATEGORY_WEIGHTS)
        sector = pick(rng, figures.SECTOR_WEIGHTS)
        pricing = pick(rng, figures.PUBLIC_PRICING_WEIGHTS) if source == "public" else "paid"
        hq_chance = figures.HIGH_QUALITY_SHARE_WHERE_TARGETED if home in self.hq_targets else figures.HIGH_QUALITY_SHARE
        high_quality = category == "dataset" and rng.random() < hq_chance
        city_code = CITY_CODES[exchange.city]
        # Registration codes are numbered per province, which several exchanges may share.
        serial = self._serials.get(city_code[:2], 0) + 1
        self._serials[city_code[:2]] = serial
        others = [code for code in exchanges() if code != home]
        product = Product(
            product_id=product_code(city_code, year, serial),
            seller_id=(seller or rng.choice(self.sellers[home])).code,
            home=home,
            title=product_title(rng, exchange.city, sector, category),
            category=category,
            source=source,
            sector=sector,
            pricing=pricing,
            unit=_unit(rng, category),
            high_quality=high_quality,
            size_bytes=rng.randint(10**8, 10**11) if category == "dataset" else None,
            base_price=prices.base_price(rng, category, pricing, high_quality, self.price_scale),
            recognized_by=tuple(sorted(rng.sample(others, rng.randint(0, _MAX_RECOGNISED)))),
        )
        self.products.append(product)
        return product

    def cross_list_targets(self, rng: random.Random, product: Product) -> list[str]:
        """One or two further exchanges to list a product on (mutual recognition in practice)."""
        candidates = [
            code for code in figures.EXCHANGE_WEIGHTS if code != product.home and self.can_list(product, code)
        ]
        chosen: list[str] = []
        for _ in range(min(len(candidates), rng.randint(1, 2))):
            code = pick(rng, {c: figures.EXCHANGE_WEIGHTS[c] for c in candidates if c not in chosen})
            chosen.append(code)
        return chosen

    def can_list(self, product: Product, exchange_id: str) -> bool:
        """Free products stay on their home exchange: 0 vs 0 would read as an infinite gap."""
        if product.pricing == "free" and exchange_id != product.home:
            return False
        pair = (product.product_id, exchange_id)
        return pair not in self.closed and product.product_id not in self.active[exchange_id]

    def listings_of(self, product_id: str) -> list[Listing]:
        return [listing for listed in self.active.values() if (listing := listed.get(product_id)) is not None]

    def activate(self, listing: Listing) -> None:
        self.active[listing.exchange_id][listing.product.product_id] = listing

    def deactivate(self, exchange_id: str, product_id: str) -> None:
        del self.active[exchange_id][product_id]
        self.closed.add((product_id, exchange_id))


def _buyer(rng: random.Random, kind: Kind) -> Participant:
    """A buyer registered anywhere in the country."""
    return Participant(credit_code(rng, rng.choice(list(CITY_CODES.values())), kind), kind)


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    """One key of `weights`, drawn in proportion to its value."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _unit(rng: random.Random, category: str) -> str:
    options = {
        "dataset": ("license", "gb", "record_pack"),
        "api": ("call_pack",),
        "report": ("license",),
        "model": ("license", "month"),
        "service": ("month",),
        "compute": ("month", "gb"),
    }[category]
    return rng.choice(options)

