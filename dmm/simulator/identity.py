"""Realistic identifiers: unified social credit codes (GB 32100) and product registration codes.

Check characters are computed as the standards prescribe, so generated codes pass the
validation a real exchange (or a curious analyst) would run on them.
"""

from __future__ import annotations

import random
from typing import Final, Literal

# GB 32100 alphabet: digits and capitals without I, O, Z, S, V.
USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)

# Administrative division codes of the exchanges' cities (municipalities use the province code).
CITY_CODES: Final[dict[str, str]] = {
    "北京": "110000",
    "上海": "310000",
    "天津": "120000",
    "重庆": "500000",
    "深圳": "440300",
    "广州": "440100",
    "贵阳": "520100",
    "杭州": "330100",
    "长沙": "430100",
    "福州": "350100",
    "郑州": "410100",
    "济南": "370100",
    "青岛": "370200",
    "武汉": "420100",
    "苏州": "320500",
    "南京": "320100",
    "合肥": "340100",
    "海口": "460100",
    "大连": "210200",
    "哈尔滨": "230100",
    "德阳": "510600",
    "太原": "140100",
    "南宁": "450100",
}

Kind = Literal["enterprise", "institute", "agency"]
# Registration authority + entity type: 91 enterprise, 12 public institution, 11 government organ.
_ENTITY_PREFIX: Final[dict[Kind, str]] = {"enterprise": "91", "institute": "12", "agency": "11"}


def _org_code(rng: random.Random, kind: Kind) -> str:
    """Nine-character organisation code (GB 11714) with its check character."""
    head = "MA" if kind == "enterprise" else rng.choice("01")
    # Drawn from the USCC alphabet so the code stays valid inside a credit code.
    body = head + "".join(rng.choice(USCC_ALPHABET) for _ in range(8 - len(head)))
    total = sum(_org_value(char) * weight for char, weight in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return body + {10: "X", 11: "0"}.get(check, str(check))


def _org_value(char: str) -> int:
    return int(char) if char.isdigit() else ord(char) - ord("A") + 10


def uscc_check(first17: str) -> str:
    """The 18th character of a unified social credit code."""
    total = sum(USCC_ALPHABET.index(char) * weight for char, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def credit_code(rng: random.Random, city_code: str, kind: Kind) -> str:
    """A fresh 18-character unified social credit code registered in `city_code`."""
    first17 = _ENTITY_PREFIX[kind] + city_code + _org_code(rng, kind)
    return first17 + uscc_check(first17)


def product_code(city_code: str, year: int, serial: int) -> str:
    """Product registration code, e.g. DP310000-2026-000123 (province of the listing exchange)."""
    return f"DP{city_code[:2]}0000-{year}-{serial:06d}"
