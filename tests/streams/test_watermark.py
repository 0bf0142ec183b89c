"""The market watermark over partitions: the slowest partition still sending, never going back."""

from __future__ import annotations

from streams.watermark import MarketClock


class Wall:
    """A wall clock the test moves by hand (ms)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_partition_is_the_latest_event_time() -> None:
    clock = MarketClock(idle_ms=30_000, wall_ms=Wall())
    assert [clock.advance(0, at) for at in (100, 300, 200)] == [100, 300, 300]


def test_a_partition_behind_holds_the_market_back_until_it_catches_up() -> None:
    clock = MarketClock(idle_ms=30_000, wall_ms=Wall())
    clock.expect({0, 1})
    assert clock.advance(0, 1_000) == 0  # partition 1 has delivered nothing yet
    assert clock.advance(1, 500) == 500
    assert clock.advance(0, 9_000) == 500  # partition 1 is still at 500: its next events are not late
    assert clock.advance(1, 4_000) == 4_000
    assert clock.advance(1, 20_000) == 9_000


def test_a_partition_given_up_no_longer_counts() -> None:
    clock = MarketClock(idle_ms=30_000, wall_ms=Wall())
    clock.expect({0, 1})
    clock.advance(0, 5_000)
    clock.expect({0})
    assert clock.advance(0, 6_000) == 6_000


def test_a_partition_silent_on_the_wall_clock_stops_holding_it_back() -> None:
    wall = Wall()
    clock = MarketClock(idle_ms=30_000, wall_ms=wall)
    clock.expect({0, 1})
    clock.advance(0, 1_000)
    clock.advance(1, 1_000)
    wall.now = 31_000
    assert clock.advance(0, 50_000) == 50_000


def test_it_never_goes_back_when_a_partition_joins_with_older_events() -> None:
    clock = MarketClock(idle_ms=30_000, wall_ms=Wall())
    clock.advance(0, 10_000)
    assert clock.advance(1, 2_000) == 10_000


def test_restore_starts_from_the_slowest_stored_partition() -> None:
    clock = MarketClock(idle_ms=30_000, wall_ms=Wall())
    clock.restore({0: 8_000, 1: 5_000})
    assert clock.value == 5_000
    assert clock.advance(1, 6_000) == 6_000
