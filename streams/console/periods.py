"""Event-time spans of the console: date ranges (a day, a month, a year, any range of China days) with the
periods they are compared with (the period API, `GET /api/console/market?from=&to=`).

The market's day is the China Standard Time calendar day (UTC+8, no daylight saving),
so "today" is what a regulator in Beijing calls today, whatever the server's zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from models.clock import CHINA_OFFSET_MS, china_midnight_ms
from sinks.clickhouse.console_queries import Grain, Span

MINUTE_US = 60 * 1_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
CST_OFFSET_US = CHINA_OFFSET_MS * 1000
EPOCH_DAY = datetime(1970, 1, 1, tzinfo=UTC)

MAX_YEARS = 3
FIRST_YEAR, LAST_YEAR = 1971, 2199  # what the store's event times can hold, a year apart from the ends
HOURLY_UP_TO_DAYS = 2
DAILY_UP_TO_DAYS = 92  # a quarter; longer ranges trend by month


class BadRange(ValueError):
    """A `from`/`to` the API refuses (HTTP 400); the message says what to send."""


@dataclass(frozen=True, slots=True)
class DateRange:
    """China days `first` to `last`, both inclusive."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def span(self) -> Span:
        """The range as a half-open event-time span: from `first`'s China midnight to the one after `last`."""
        return Span(china_midnight_us(self.first), china_midnight_us(self.last + timedelta(days=1)))

    def previous(self) -> DateRange:
        """The same number of days just before `first`."""
        return DateRange(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def year_ago(self) -> DateRange:
        """The same dates one year earlier (29 February becomes 28 February)."""
        return DateRange(years_before(self.first, 1), years_before(self.last, 1))

    def grain(self) -> Grain:
        """The trend's buckets: hours for a day or two, days up to a quarter, months beyond."""
        if self.days <= HOURLY_UP_TO_DAYS:
            return "hour"
        return "day" if self.days <= DAILY_UP_TO_DAYS else "month"

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "days": self.days}


def years_before(day: date, years: int) -> date:
    """`day` `years` years earlier; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def china_day(at_us: int) -> date:
    """The China Standard Time calendar day holding `at_us`."""
    return (EPOCH_DAY + timedelta(microseconds=at_us + CST_OFFSET_US)).date()


def china_midnight_us(day: date) -> int:
    """The start of China day `day`, in µs since the epoch."""
    return china_midnight_ms(day) * 1000


def date_range(first: str | None, last: str | None, watermark_us: int | None, now_us: int) -> DateRange:
    """The range a request names. A missing end is the China day holding the watermark (the wall clock's when the
    store holds no event yet); refused: a malformed date, `from` after `to`, more than three years (`to` on or
    after `from` plus three years)."""
    today = china_day(now_us if watermark_us is None else watermark_us)
    start, end = _day("from", first, today), _day("to", last, today)
    if start > end:
        raise BadRange(f"from ({start}) is after to ({end}): send from <= to, as YYYY-MM-DD China days")
    if end >= years_before(start, -MAX_YEARS):
        raise BadRange(f"{start} to {end} is more than {MAX_YEARS} years: send a shorter range")
    return DateRange(start, end)


def _day(name: str, text: str | None, default: date) -> date:
    if text is None or text == "":
        return default
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        day = None
    if day is None or len(text) != len("YYYY-MM-DD") or not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise BadRange(f"{name} must be a China day as YYYY-MM-DD ({FIRST_YEAR} to {LAST_YEAR}), not {text[:40]!r}")
    return day


def trend_buckets(period: DateRange, grain: Grain, as_of_us: int) -> list[int]:
    """The starts (µs) of the trend's buckets of the period that begin at or before `as_of_us`: clock hours, China
    days or calendar months (the first month starting with the period)."""
    span = period.span
    last = min(span.end_us - 1, as_of_us)
    if grain != "month":
        step = HOUR_US if grain == "hour" else DAY_US
        return list(range(span.start_us, last + 1, step)) if last >= span.start_us else []
    starts, month = [], period.first
    while month <= period.last:
        start = china_midnight_us(month)
        if start > last:
            break
        starts.append(start)
        month = (month.replace(day=1) + timedelta(days=32)).replace(day=1)
    return starts
