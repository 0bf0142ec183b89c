"""Event time as the worker counts it: exact integer microseconds and milliseconds since the epoch."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from models import EVENT_ADAPTER, occurred_ms, occurred_us
from models.clock import china_day, china_midnight_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_microseconds_are_exact_across_the_supported_range_and_any_offset() -> None:
    draw = random.Random(7)
    for _ in range(20_000):
        # From before the epoch (rejected later, but the arithmetic must hold) to the end of 2105.
        since = timedelta(microseconds=draw.randrange(-(10**15), 4_291_747_199_999_999))
        offset = timezone(timedelta(minutes=draw.randrange(-1439, 1440)))
        moment = (EPOCH + since).astimezone(offset)
        assert occurred_us(moment) == since // timedelta(microseconds=1)
        assert occurred_ms(moment) == since // timedelta(milliseconds=1)


def test_an_events_time_on_the_wire_becomes_the_same_instant_in_integers() -> None:
    event = EVENT_ADAPTER.validate_json(
        b'{"schema": "dm.v1", "type": "heartbeat", "event_id": "hb-1", "exchange_id": "SHDEX",'
        b' "occurred_at": "2026-11-21T08:00:00.123456789+08:00", "seq": 1}'
    )
    # 00:00:00.123456 UTC on 21 November 2026 (the fraction beyond microseconds is truncated).
    expected_us = (datetime(2026, 11, 21, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1) + 123_456
    assert (event.at_us, event.at_ms) == (expected_us, expected_us // 1000)


def test_the_china_day_of_an_instant_is_the_day_whose_midnight_starts_it() -> None:
    for offset in range(0, 800):
        day = datetime(2024, 1, 1).date() + timedelta(days=offset)
        midnight = china_midnight_ms(day)
        assert china_day(midnight) == china_day(midnight + 86_399_999) == day
        assert china_day(midnight - 1) == day - timedelta(days=1)
