"""How numbers, places and days read in alert sentences, the same way in every detector.

Alerts are read by regulators, not engineers: exchanges by name with their code,
money as CNY with thousands separators, days in China Standard Time.
"""

from __future__ import annotations

from decimal import Decimal

from models import exchanges
from models.clock import CHINA_STANDARD_TIME, from_ms


def exchange_en(code: str) -> str:
    known = exchanges().get(code)
    return f"{known.name_en} ({code})" if known else code


def exchange_zh(code: str) -> str:
    known = exchanges().get(code)
    return f"{known.name_zh}（{code}）" if known else code


def cny(amount: Decimal) -> str:
    """`12,000.00`: the unit (CNY / 元) is added by the sentence."""
    return f"{amount:,.2f}"


def times(ratio: float) -> str:
    """A ratio as people say it: `3.50×`."""
    return f"{ratio:,.2f}×"


def china_day(at_ms: int) -> str:
    """The calendar day (YYYY-MM-DD) of an instant in China Standard Time (UTC+8)."""
    moment = from_ms(at_ms).astimezone(CHINA_STANDARD_TIME)
    return moment.date().isoformat()


def china_time(at_ms: int) -> str:
    """`2026-11-21 10:02:13 CST`: an instant as the market's local clock shows it."""
    moment = from_ms(at_ms).astimezone(CHINA_STANDARD_TIME)
    return moment.strftime("%Y-%m-%d %H:%M:%S CST")


def span_en(ms: int) -> str:
    """A duration as a regulator would say it: `45 seconds`, `12 minutes`, `2.5 hours`."""
    return _span(ms, ("seconds", "minutes", "hours"))


def span_zh(ms: int) -> str:
    return _span(ms, ("秒", "分钟", "小时"))


def _span(ms: int, units: tuple[str, str, str]) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:,.0f} {units[0]}"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} {units[1]}"
    return f"{seconds / 3600:,.1f} {units[2]}"
