"""Rows stored since a moment, read from the parts that hold them: the console's reads of the last seconds' rows
(the snapshot's unflushed rows, the rows `first_seen` was not fed yet) without scanning a large table's index on
every refresh.

A part never changes (an insert, a merge or a mutation makes a new one), so what is learnt of one holds while it is
active: how late its rows were stored at most (`latest_stored`). A part first seen is asked once, through
`ingested_at`'s index, whether it holds a row stored since the moment asked about: if so its latest is read (a
recent part: a few rows); if not, the moment bounds it (the moments asked about only move on). The rows stored at
or after a moment are then in the parts whose bound reaches it, and in any part that became active after the parts
were listed (a merge of listed parts, an insert): the condition names both (`_part IN` / `NOT IN`), which prunes
every other part before anything is read, where the index alone has each granule's entry read (~10 ms a table of
100M rows). A user shown no part (none, or no right to see them) gets the index alone.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sinks.clickhouse.console_queries import Reader

Part = tuple[str, str, str]  # the table's identity, the table, the part

_latest: dict[Part, int] = {}  # each active part's latest `ingested_at` (ms) or a bound above it
_lock = threading.Lock()


def stored_since(store: Reader, tables: tuple[str, ...], since_ms: int) -> dict[str, str]:
    """Per table: the condition on its rows stored at or after `since_ms` (ms since the epoch)."""
    stored = f"ingested_at >= fromUnixTimestamp64Milli(toInt64({int(since_ms)}), 'UTC')"
    latest = latest_stored(store, tables, since_ms)
    conditions = {}
    for table in tables:
        parts = latest.get(table)
        if not parts:
            conditions[table] = stored
            continue
        holding = [part for part, ms in parts.items() if ms >= since_ms]
        named = f"_part IN ({', '.join(map(literal, holding))}) OR " if holding else ""
        conditions[table] = f"{stored} AND ({named}_part NOT IN ({', '.join(map(literal, parts))}))"
    return conditions


def latest_stored(store: Reader, tables: tuple[str, ...], since_ms: int) -> dict[str, dict[str, int]]:
    """Per table: each active part's latest `ingested_at` (ms), or for a part holding no row stored since the
    moment it was first asked about, a bound above it; parts first seen are asked about `since_ms`."""
    listed = store.rows(
        "SELECT p.table AS table, toString(t.uuid) AS table_uuid, p.name AS part FROM system.parts AS p "
        "INNER JOIN system.tables AS t ON t.database = p.database AND t.name = p.table "
        f"WHERE p.database = {{database:String}} AND p.table IN ({', '.join(map(literal, tables))}) AND p.active",
        {"database": store.database},
    )
    active = [(row["table_uuid"], row["table"], row["part"]) for row in listed if row["table_uuid"].strip("0-")]
    with _lock:
        unread = [part for part in active if part not in _latest]
    if unread:
        reads = []
        for table in sorted({table for _, table, _ in unread}):
            names = ", ".join(literal(part) for _, t, part in unread if t == table)
            reads.append(
                f"SELECT {literal(table)} AS table, _part AS part, toUnixTimestamp64Milli(max(ingested_at)) AS ms "
                f"FROM {store.database}.{table} WHERE _part IN ({names}) AND ingested_at >= "
                f"fromUnixTimestamp64Milli(toInt64({int(since_ms)}), 'UTC') GROUP BY _part"
            )
        found = {(row["table"], row["part"]): int(row["ms"]) for row in store.rows(" UNION ALL ".join(reads))}
        with _lock:  # not found: nothing stored since `since_ms` (or merged away since listed: never active again)
            _latest.update({(u, t, part): found.get((t, part), since_ms - 1) for u, t, part in unread})
    by_table: dict[str, dict[str, int]] = {}
    with _lock:
        for uuid, table, part in active:  # one another read found gone since is left out: read if still there
            if (uuid, table, part) in _latest:
                by_table.setdefault(table, {})[part] = _latest[uuid, table, part]
        still = set(active)
        for gone in [part for part in _latest if part[1] in tables and part not in still]:
            del _latest[gone]  # merged away or dropped: never active again (or another store's: read again)
    return by_table


def literal(text: str) -> str:
    """A string literal of text the store itself named (a table, a partition id, a part)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
