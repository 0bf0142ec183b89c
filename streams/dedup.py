"""Which messages were already accounted for: duplicates and redeliveries.

Two different things look alike. A *duplicate* is a second message carrying an
`(exchange_id, event_id)` already stored (an exchange resent it): it is counted as
a duplicate. A *redelivery* is the same Kafka message seen again after a crash or
rebalance (same partition and offset): it was already counted, so it is skipped
silently. Both indexes are rebuilt from ClickHouse on start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sinks.clickhouse.state import LogProgress, StateReader

_PARTITION_BITS = 20  # where an identity was first stored, packed in one int: offset << 20 | partition


@dataclass
class EventIndex:
    """`(exchange_id, event_id)` -> where it was first stored, for `horizon_ms` of event time.

    Compact on purpose (it holds every event of the horizon): the place is one packed int and the
    expiry queue two flat deques, not a tuple per entry.
    """

    horizon_ms: int
    first_seen: dict[tuple[str, str], int] = field(default_factory=dict)
    _expiry_ms: deque[int] = field(default_factory=deque)
    _expiry_keys: deque[tuple[str, str]] = field(default_factory=deque)

    def get(self, key: tuple[str, str]) -> tuple[int, int] | None:
        """`(partition, offset)` where the identity was first stored, if remembered."""
        packed = self.first_seen.get(key)
        if packed is None:
            return None
        return packed & ((1 << _PARTITION_BITS) - 1), packed >> _PARTITION_BITS

    def add(self, key: tuple[str, str], partition: int, offset: int, occurred_ms: int) -> None:
        self.first_seen[key] = offset << _PARTITION_BITS | partition
        self._expiry_ms.append(occurred_ms)
        self._expiry_keys.append(key)

    def prune(self, watermark_ms: int) -> None:
        """Forget identities whose event time is more than the horizon behind the watermark."""
        cutoff = watermark_ms - self.horizon_ms
        while self._expiry_ms and self._expiry_ms[0] < cutoff:
            self._expiry_ms.popleft()
            self.first_seen.pop(self._expiry_keys.popleft(), None)

    def __len__(self) -> int:
        return len(self.first_seen)

    def restore(self, state: StateReader, watermark_ms: int) -> None:
        for identity in state.identities(watermark_ms - self.horizon_ms):
            self.add(identity.key, identity.partition, identity.offset, identity.occurred_ms)


@dataclass
class Progress:
    """Per partition: the highest offset whose batch was completely stored, plus stray offsets above it.

    Offsets are delivered in order within a partition, so anything at or below the
    mark is a redelivery. A batch cut short by a crash leaves some rows above the
    mark; those offsets are remembered individually so they are not stored twice,
    with the event time of a stored event (0 for a rejection or duplicate): the
    watermark must only pass it when the replay reaches it, as it did first time.
    """

    topic: str
    topic_id: str = ""
    marks: dict[int, int] = field(default_factory=dict)
    stray: dict[tuple[int, int], int] = field(default_factory=dict)

    def seen(self, partition: int, offset: int) -> bool:
        return offset <= self.marks.get(partition, -1) or (partition, offset) in self.stray

    def advance(self, partition: int, last_offset: int) -> None:
        if last_offset > self.marks.get(partition, -1):
            self.marks[partition] = last_offset
        if self.stray:
            self.stray = {(p, o): ms for (p, o), ms in self.stray.items() if not (p == partition and o <= last_offset)}

    def restore(self, state: StateReader) -> LogProgress:
        """Marks of the current log only; strays are rows stored since this log was first seen."""
        restored = state.progress(self.topic, self.topic_id)
        self.marks, self.stray = restored.marks, restored.stray
        return restored
