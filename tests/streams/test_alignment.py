"""Event-time alignment: a fetch's records up to what every partition has caught up to, in event-time order."""

from __future__ import annotations

from streams.alignment import align

# (partition, offset, event time or None for a rejection)
Record = tuple[int, int, int | None]


def split(records: list[Record], ends: dict[int, int | None], quiet: set[int] = frozenset()) -> tuple[list, list]:
    result = align(
        records, lambda r: r[0], lambda r: r[1], lambda r: r[2], ends, {}, lambda p: p in quiet
    )
    return result.taken, result.held


def test_one_partition_is_taken_whole_in_arrival_order() -> None:
    records = [(0, 0, 30), (0, 1, 10), (0, 2, 20)]
    assert split(records, {0: 100}) == (records, [])


def test_records_past_the_slowest_partition_are_held() -> None:
    records = [(0, 0, 10), (0, 1, 50), (0, 2, 90), (1, 0, 20), (1, 1, 40)]
    taken, held = split(records, {0: 100, 1: 100})
    assert taken == [(0, 0, 10), (1, 0, 20), (1, 1, 40)]  # merged by event time, up to partition 1's 40
    assert held == [(0, 1, 50), (0, 2, 90)]


def test_a_caught_up_partition_does_not_hold_the_others_back() -> None:
    records = [(0, 0, 10), (0, 1, 90), (1, 0, 20)]
    taken, held = split(records, {0: 100, 1: 1})  # partition 1 ends at offset 0: it is caught up
    assert (taken, held) == ([(0, 0, 10), (1, 0, 20), (0, 1, 90)], [])


def test_a_partition_behind_with_nothing_in_hand_holds_everything_until_it_delivers() -> None:
    records = [(0, 0, 10)]
    assert split(records, {0: 100, 1: 5}) == ([], records)
    assert split(records, {0: 100, 1: 5}, quiet={1}) == (records, [])  # idle: it stops holding back


def test_a_rejection_travels_with_the_record_before_it() -> None:
    records = [(0, 0, 10), (0, 1, None), (0, 2, 60), (1, 0, 30)]
    taken, held = split(records, {0: 100, 1: 100})
    assert taken == [(0, 0, 10), (0, 1, None), (1, 0, 30)]
    assert held == [(0, 2, 60)]
