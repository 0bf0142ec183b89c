"""Date ranges are China Standard Time days, compared with the days just before and the same days a year earlier."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from streams.console.periods import BadRange, DateRange, china_day, date_range, trend_buckets


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def day(text: str) -> date:
    return date.fromisoformat(text)


@pytest.mark.parametrize(
    ("first", "last", "previous", "year_ago"),
    [
        ("2026-11-21", "2026-11-21", ("2026-11-20", "2026-11-20"), ("2025-11-21", "2025-11-21")),
        ("2026-01-01", "2026-01-31", ("2025-12-01", "2025-12-31"), ("2025-01-01", "2025-01-31")),  # a month
        ("2025-04-01", "2025-06-30", ("2024-12-31", "2025-03-31"), ("2024-04-01", "2024-06-30")),  # Q2: 91 days
        ("2025-01-01", "2025-06-30", ("2024-07-04", "2024-12-31"), ("2024-01-01", "2024-06-30")),  # H1: 181 days
        ("2025-01-01", "2025-12-31", ("2024-01-02", "2024-12-31"), ("2024-01-01", "2024-12-31")),  # 365 days
        ("2024-02-29", "2024-02-29", ("2024-02-28", "2024-02-28"), ("2023-02-28", "2023-02-28")),  # leap day
        ("2024-02-01", "2024-02-29", ("2024-01-03", "2024-01-31"), ("2023-02-01", "2023-02-28")),
    ],
)
def test_previous_is_the_same_length_before_and_year_ago_the_same_dates(
    first: str, last: str, previous: tuple[str, str], year_ago: tuple[str, str]
) -> None:
    period = DateRange(day(first), day(last))
    assert (period.previous().first, period.previous().last) == (day(previous[0]), day(previous[1]))
    assert period.previous().days == period.days
    assert (period.year_ago().first, period.year_ago().last) == (day(year_ago[0]), day(year_ago[1]))


def test_a_range_spans_china_midnights() -> None:
    span = DateRange(day("2026-01-01"), day("2026-01-02")).span
    assert (span.start_us, span.end_us) == (us("2026-01-01T00:00:00+08:00"), us("2026-01-03T00:00:00+08:00"))
    assert span.start_us == us("2025-12-31T16:00:00+00:00")  # the UTC day before
    assert china_day(us("2025-12-31T15:59:59.999999+00:00")) == day("2025-12-31")
    assert china_day(us("2025-12-31T16:00:00+00:00")) == day("2026-01-01")


@pytest.mark.parametrize(("days", "grain"), [(1, "hour"), (2, "hour"), (3, "day"), (92, "day"), (93, "month")])
def test_the_trend_grain_follows_the_length(days: int, grain: str) -> None:
    assert DateRange(day("2025-01-01"), day("2025-01-01") + timedelta(days=days - 1)).grain() == grain


def test_trend_buckets_stop_at_as_of_and_months_start_with_the_period() -> None:
    one = DateRange(day("2026-11-21"), day("2026-11-21"))
    hours = trend_buckets(one, "hour", us("2026-11-21T02:05:00+08:00"))
    assert hours == [us(f"2026-11-21T0{h}:00:00+08:00") for h in range(3)]
    assert trend_buckets(one, "hour", us("2026-11-20T23:59:59+08:00")) == []
    assert len(trend_buckets(one, "hour", us("2026-11-23T00:00:00+08:00"))) == 24
    year = DateRange(day("2024-01-15"), day("2024-12-31"))
    months = trend_buckets(year, "month", us("2025-06-01T00:00:00+08:00"))
    assert months[0] == us("2024-01-15T00:00:00+08:00") and months[1] == us("2024-02-01T00:00:00+08:00")
    assert len(months) == 12 and months[-1] == us("2024-12-01T00:00:00+08:00")
    days = trend_buckets(DateRange(day("2024-02-27"), day("2024-03-01")), "day", us("2030-01-01T00:00:00+08:00"))
    assert days == [us(f"2024-{d}T00:00:00+08:00") for d in ("02-27", "02-28", "02-29", "03-01")]


def test_the_default_range_is_the_china_day_of_the_watermark() -> None:
    late_evening_utc = us("2026-11-21T16:30:00+00:00")  # 00:30 on the 22nd in Beijing
    assert date_range(None, None, late_evening_utc, 0) == DateRange(day("2026-11-22"), day("2026-11-22"))
    assert date_range(None, None, None, late_evening_utc) == DateRange(day("2026-11-22"), day("2026-11-22"))
    assert date_range("2026-11-01", None, late_evening_utc, 0).days == 22


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        ("2026-11-22", "2026-11-21", "after"),
        ("2026-02-30", "2026-03-01", "YYYY-MM-DD"),
        ("2026-1-01", "2026-03-01", "YYYY-MM-DD"),
        ("2026-W01-1", "2026-03-01", "YYYY-MM-DD"),
        ("0001-01-01", "2026-03-01", "YYYY-MM-DD"),
        ("2023-01-01", "2026-01-01", "3 years"),
    ],
)
def test_bad_ranges_are_refused_saying_what_to_send(first: str, last: str, says: str) -> None:
    with pytest.raises(BadRange, match=says):
        date_range(first, last, None, 0)


def test_three_years_are_allowed() -> None:
    assert date_range("2023-01-01", "2025-12-31", None, 0).days == 1096
