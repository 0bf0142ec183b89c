"""Event-time alignment of partitions: take from a fetch only what every partition has caught up to.

A fetch brings each partition's next records, but not the same stretch of event time:
one partition may deliver ten minutes of market while another delivers two. Observed
in that order, an exchange whose trades sit on the fast partition looks active after
a silence the slow partition has not reached yet, a window closes before the slow
partition's trades for it arrive, and so on. So, per batch:
- the *frontier* is the earliest of the latest event times in hand of every partition
  that still holds something back (not caught up to its end offset, not idle);
- each partition's records up to the frontier are taken (a prefix, so per-partition
  order and contiguous offsets are kept), merged in event-time order;
- the rest is held for the next batch. Held records are not committed, so a crash
  fetches them again.
With one partition the frontier is its latest event time in hand: everything is taken,
in arrival order, exactly as without alignment.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Split(Generic[Item]):
    taken: list[Item]  # in event-time order, each partition's records in their own order
    held: list[Item]  # for the next batch, in arrival order


def align(
    items: Iterable[Item],
    partition_of: Callable[[Item], int],
    offset_of: Callable[[Item], int],
    time_of: Callable[[Item], int | None],
    ends: Mapping[int, int | None],
    processed: Mapping[int, int],
    quiet: Callable[[int], bool],
) -> Split[Item]:
    """`ends`: each owned partition's end offset (None: not known yet); `processed`: the last offset already
    processed per partition; `quiet(p)`: p delivered nothing for a while (idle: it no longer holds back)."""
    by_partition: dict[int, list[Item]] = {}
    for item in items:
        by_partition.setdefault(partition_of(item), []).append(item)

    def behind(partition: int) -> bool:
        """Whether the partition may hold records beyond those in hand (its end offset not reached)."""
        end = ends.get(partition)
        if end is None:
            return partition in ends  # owned, end not known yet: assume so
        group = by_partition.get(partition)
        reached = offset_of(group[-1]) if group else processed.get(partition, -1)
        return reached < end - 1

    holding_back = [p for p in set(ends) | set(by_partition) if behind(p) and not quiet(p)]
    if len(by_partition) <= 1 and all(p in by_partition for p in holding_back):
        return Split(next(iter(by_partition.values()), []), [])
    frontier: int | None = None
    for partition in holding_back:
        times = [t for t in map(time_of, by_partition.get(partition, [])) if t is not None]
        if not times:  # nothing of it in hand yet: wait for its next fetch
            return Split([], [item for group in by_partition.values() for item in group])
        newest = max(times)
        frontier = newest if frontier is None or newest < frontier else frontier
    taken_by_partition: list[list[tuple[int, int, Item]]] = []
    held: list[Item] = []
    for partition, group in by_partition.items():
        clock = -1  # a record without an event time (a rejection) goes with the one before it
        prefix: list[tuple[int, int, Item]] = []
        for index, item in enumerate(group):
            at = time_of(item)
            if at is not None and frontier is not None and at > frontier:
                held.extend(group[index:])
                break
            clock = at if at is not None and at > clock else clock
            prefix.append((clock, partition, item))
        taken_by_partition.append(prefix)
    merged = heapq.merge(*taken_by_partition, key=lambda entry: (entry[0], entry[1]))
    return Split([item for _, _, item in merged], held)
