"""Event time's units, defined once: ms since the epoch inside the worker, RFC 3339 on the wire."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHINA_OFFSET = timedelta(hours=8)
CHINA_STANDARD_TIME = timezone(_CHINA_OFFSET, "CST")  # the market's calendar (UTC+8, no DST)
CHINA_OFFSET_MS = _CHINA_OFFSET // timedelta(milliseconds=1)
DAY_MS = 86_400_000


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exact (integer arithmetic, no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def china_day_start_ms(ms: int) -> int:
    """The start (ms since the epoch) of the China Standard Time day holding `ms`: the market's "today"."""
    return ms - (ms + CHINA_OFFSET_MS) % DAY_MS


def china_day(ms: int) -> date:
    """The China Standard Time day holding `ms` (ms since the epoch): the inverse of `china_midnight_ms`."""
    return (EPOCH + timedelta(milliseconds=china_day_start_ms(ms) + CHINA_OFFSET_MS)).date()


def china_midnight_ms(day: date) -> int:
    """The start (ms since the epoch) of China Standard Time day `day`: how the day tables' dates map to event time."""
    return (day - EPOCH.date()).days * DAY_MS - CHINA_OFFSET_MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def from_ms_or_none(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


def rfc3339(moment: datetime) -> str:
    """UTC with millisecond precision and a `Z`, as every record the monitor emits carries."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
