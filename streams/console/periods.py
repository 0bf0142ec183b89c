"""Event-time spans of the console: today and this hour, as of the market's watermark.

The market's day is the China Standard Time calendar day (UTC+8, no daylight saving),
so "today" is what a regulator in Beijing calls today, whatever the server's zone.
"""

from __future__ import annotations

from typing import Literal

from models.clock import CHINA_OFFSET_MS
from sinks.clickhouse.console_queries import Span

Period = Literal["day", "hour"]
PERIODS: tuple[Period, ...] = ("day", "hour")
MINUTE_US = 60 * 1_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
CST_OFFSET_US = CHINA_OFFSET_MS * 1000


def span_of(period: Period, watermark_us: int) -> Span:
    """The calendar day (CST) or clock hour containing the watermark, as a half-open span."""
    if period == "day":
        start = (watermark_us + CST_OFFSET_US) // DAY_US * DAY_US - CST_OFFSET_US
        return Span(start, start + DAY_US)
    start = watermark_us // HOUR_US * HOUR_US
    return Span(start, start + HOUR_US)


def buckets(period: Period, watermark_us: int) -> list[int]:
    """Trend bucket starts (ms) from the span's start up to the watermark's: hours of a day, minutes of an hour."""
    span = span_of(period, watermark_us)
    step = HOUR_US if period == "day" else MINUTE_US
    last = watermark_us // step * step
    return [start // 1000 for start in range(span.start_us, last + 1, step)]
