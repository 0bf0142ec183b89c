"""First sightings of products and participants, kept incrementally so no question scans all history for them.

A product is new once: when its first `list` event (any exchange, ever) occurs; a participant when it is first
seen as a trade's buyer or seller or a `list` event's seller. `first_seen` keeps, per product (with the sector of
that listing), per product and exchange, and per party, the earliest such event as `min((occurred_at, sector))`
(AggregatingMergeTree: rows merge to their minimum, so feeding a row twice changes nothing). Each window flush
feeds it the events stored since the latest ingestion time it was fed, less a margin (`record_first_seen`); a
table new to an existing store is so filled from every stored event by the first flush.
"""

from __future__ import annotations

from collections.abc import Mapping

from sinks.clickhouse.store import Store

FED_MARGIN_S = 10  # as `state.unflushed_windows`: rows stamped a moment before the last feed may be stored after it


def first_seen_rows(database: str, where: str, stored: Mapping[str, str] | None = None) -> str:
    """SELECT of `first_seen`'s columns from the stored events matching `where` (a condition on any event table's
    columns) and `stored`'s condition for their table, if any (`part_facts.stored_since`): a product's `list`
    events with their sector, as the product's (kind `product`) and per exchange (kind `listing`), a party's trades
    (either side: one read of the trades) and `list` events (as seller)."""
    listings, trades = (f"{where} AND {(stored or {}).get(table, '1')}" for table in ("listings", "trades"))
    return (
        f"SELECT kind, product_id AS id, if(kind = 'product', '', exchange_id) AS exchange_id, "
        f"(occurred_at, toString(ifNull(sector, 'unknown'))) AS first, ingested_at AS fed_through "
        f"FROM {database}.listings ARRAY JOIN ['product', 'listing'] AS kind WHERE action = 'list' AND {listings} "
        f"UNION ALL SELECT 'party', party, '', (occurred_at, ''), ingested_at "
        f"FROM {database}.trades ARRAY JOIN [buyer_id, seller_id] AS party WHERE {trades} "
        f"UNION ALL SELECT 'party', assumeNotNull(seller_id), '', (occurred_at, ''), ingested_at "
        f"FROM {database}.listings WHERE action = 'list' AND seller_id IS NOT NULL AND {listings}"
    )


def fed_since(database: str) -> str:
    """The ingestion time from which events may not be in `first_seen` yet (before 1970 when it is empty)."""
    return f"((SELECT max(fed_through) FROM {database}.first_seen) - INTERVAL {FED_MARGIN_S} SECOND)"


def record_first_seen(store: Store) -> None:
    """Feed `first_seen` the events stored since it was last fed (all of them into an empty table)."""
    db = store.database
    store.command(
        f"INSERT INTO {db}.first_seen SELECT kind, id, exchange_id, min(first), max(fed_through) "
        f"FROM ({first_seen_rows(db, f'ingested_at >= {fed_since(db)}')}) GROUP BY kind, id, exchange_id"
    )
