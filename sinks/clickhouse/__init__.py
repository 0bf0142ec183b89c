"""The ClickHouse store: schema, Arrow batches, embedded (chdb) and server engines."""

from sinks.clickhouse.batches import BatchRows, Duplicate, Marker, Rejected, StoredEvent
from sinks.clickhouse.sql_guard import ReadOnlyViolation
from sinks.clickhouse.store import Parameters, Reads, Store, StoreError, open_store

__all__ = [
    "BatchRows",
    "Duplicate",
    "Marker",
    "Parameters",
    "ReadOnlyViolation",
    "Reads",
    "Rejected",
    "Store",
    "StoreError",
    "StoredEvent",
    "open_store",
]
