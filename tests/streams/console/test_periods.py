"""Today and this hour are China Standard Time calendar spans around the market's watermark."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.console.periods import buckets, span_of


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def test_today_is_the_china_standard_time_day_of_the_watermark() -> None:
    # 2026-11-21 23:30 UTC is already 2026-11-22 07:30 in Beijing.
    span = span_of("day", us("2026-11-21T23:30:00+00:00"))
    assert (span.start_us, span.end_us) == (us("2026-11-22T00:00:00+08:00"), us("2026-11-23T00:00:00+08:00"))


def test_this_hour_is_the_clock_hour_of_the_watermark() -> None:
    span = span_of("hour", us("2026-11-21T08:40:00.123456+08:00"))
    assert (span.start_us, span.end_us) == (us("2026-11-21T08:00:00+08:00"), us("2026-11-21T09:00:00+08:00"))


def test_trend_buckets_run_from_the_span_start_to_the_watermark() -> None:
    watermark = us("2026-11-21T02:05:30+08:00")
    assert buckets("day", watermark) == [us(f"2026-11-21T0{h}:00:00+08:00") // 1000 for h in range(3)]
    minutes = buckets("hour", watermark)
    assert len(minutes) == 6 and minutes[-1] == us("2026-11-21T02:05:00+08:00") // 1000
    assert datetime.fromtimestamp(minutes[0] / 1000, UTC) == datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
