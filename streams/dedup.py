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

from sinks.clickhouse import Store

EVENT_TABLES = ("listings", "trades", "usage", "heartbeats")
ACCOUNTED_TABLES = (*EVENT_TABLES, "rejected_events", "duplicate_events")


@dataclass
class EventIndex:
    """`(exchange_id, event_id)` -> where it was first stored, for `horizon_ms` of event time."""

    horizon_ms: int
    first_seen: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    _expiry: deque[tuple[int, tuple[str, str]]] = field(default_factory=deque)

    def get(self, key: tuple[str, str]) -> tuple[int, int] | None:
        return self.first_seen.get(key)

    def add(self, key: tuple[str, str], partition: int, offset: int, occurred_ms: int) -> None:
        self.first_seen[key] = (partition, offset)
        self._expiry.append((occurred_ms, key))

    def prune(self, watermark_ms: int) -> None:
        """Forget identities whose event time is more than the horizon behind the watermark."""
        cutoff = watermark_ms - self.horizon_ms
        while self._expiry and self._expiry[0][0] < cutoff:
            _, key = self._expiry.popleft()
            self.first_seen.pop(key, None)

    def __len__(self) -> int:
        return len(self.first_seen)

    def restore(self, store: Store, watermark_ms: int) -> None:
        since = (watermark_ms - self.horizon_ms) / 1000
        union = " UNION ALL ".join(
            f"SELECT exchange_id, event_id, src_partition, src_offset, toUnixTimestamp64Milli(occurred_at) AS ms "
            f"FROM {store.database}.{table} WHERE occurred_at >= fromUnixTimestamp64Milli(toInt64({since} * 1000))"
            for table in EVENT_TABLES
        )
        for row in store.rows(f"SELECT * FROM ({union}) ORDER BY ms"):
            self.add((row["exchange_id"], row["event_id"]), row["src_partition"], int(row["src_offset"]), int(row["ms"]))


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
    stray_rows: str = "0"  # SQL condition on an event table: the row is one of `stray`

    def seen(self, partition: int, offset: int) -> bool:
        return offset <= self.marks.get(partition, -1) or (partition, offset) in self.stray

    def advance(self, partition: int, last_offset: int) -> None:
        if last_offset > self.marks.get(partition, -1):
            self.marks[partition] = last_offset
        if self.stray:
            self.stray = {(p, o): ms for (p, o), ms in self.stray.items() if not (p == partition and o <= last_offset)}

    def restore(self, store: Store) -> None:
        """Marks of the current log only; strays are rows stored since this log was first seen."""
        db = store.database
        log = f"src_topic = '{self.topic}' AND topic_id = '{self.topic_id}'"
        if not store.rows(f"SELECT 1 AS seen FROM {db}.processed_batches WHERE {log} LIMIT 1"):
            store.command(  # first sight of this log: a mark that covers nothing, dated now
                f"INSERT INTO {db}.processed_batches (src_topic, topic_id, src_partition, first_offset, last_offset, "
                f"messages, processed_at) VALUES ('{self.topic}', '{self.topic_id}', -1, -1, -1, 0, now64(3))"
            )
        rows = store.rows(
            f"SELECT src_partition, max(last_offset) AS mark FROM {db}.processed_batches WHERE {log} "
            "AND src_partition >= 0 GROUP BY src_partition"
        )
        self.marks = {int(row["src_partition"]): int(row["mark"]) for row in rows}
        since = f"(SELECT min(processed_at) FROM {db}.processed_batches WHERE {log})"
        conditions = " AND ".join(f"NOT (src_partition = {p} AND src_offset <= {m})" for p, m in self.marks.items())
        above = f"({conditions})" if conditions else "1"
        self.stray_rows = f"({above} AND ingested_at >= {since})"
        union = " UNION ALL ".join(
            (
                f"SELECT src_partition, src_offset, toUnixTimestamp64Milli(occurred_at) AS ms FROM {db}.{table} "
                f"WHERE {self.stray_rows}"
                if table in EVENT_TABLES
                else f"SELECT src_partition, src_offset, toInt64(0) AS ms FROM {db}.{table} "
                f"WHERE {above} AND src_topic = '{self.topic}' AND received_at >= {since}"
            )
            for table in ACCOUNTED_TABLES
        )
        self.stray = {(int(r["src_partition"]), int(r["src_offset"])): int(r["ms"]) for r in store.rows(union)}
