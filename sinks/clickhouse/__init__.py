"""The ClickHouse store: schema, Arrow batches, embedded (chdb) and server engines."""

from sinks.clickhouse.batches import BatchRows, Dims, Duplicate, Marker, Rejected, StoredEvent
from sinks.clickhouse.store import ReadOnlyViolation, Store, StoreError, check_read_only, open_store

__all__ = [
    "BatchRows",
    "Dims",
    "Duplicate",
    "Marker",
    "ReadOnlyViolation",
    "Rejected",
    "Store",
    "StoreError",
    "StoredEvent",
    "check_read_only",
    "open_store",
]
