"""Which parts hold the rows a console read wants, learnt once per part: the rows stored in the last seconds (the
snapshot's unflushed rows, the rows `first_seen` was not fed yet) and the late rows (which the rollups leave out),
read without scanning a large table's index on every refresh.

A part never changes (an insert, a merge or a mutation makes a new one), so what is learnt of one holds while it is
active: whether it holds late rows (`late_rows`), and how late its rows were stored at most (`stored_since`). A part
first seen is asked once, through the table's index on that column. For the latest storing time, a part holding
no row stored since the moment asked about is bounded by that moment (the moments asked about move on; one asked
about earlier just has the part read). A read then names the parts that hold its rows and any part that became
active after the parts were listed (a merge of listed parts, an insert), `_part IN` / `NOT IN`, which prunes every
other part before anything is read, where an index alone has each granule's entry read (~10-25 ms a table of 100M
rows). A user shown no part (none, or no right to see them) gets the index alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from sinks.clickhouse.console_queries import Reader

Part = tuple[str, str, str]  # the table's identity, the table, the part
V = TypeVar("V")


class PartFacts(Generic[V]):
    """One thing learnt of each active part of some tables, asked once per part and kept while it is active; behind
    a lock, as the console's reads run side by side."""

    def __init__(self) -> None:
        self._known: dict[Part, V] = {}
        self._lock = threading.Lock()

    def learnt(
        self,
        store: Reader,
        tables: tuple[str, ...],
        ask: Callable[[str, str], str],
        fold: Callable[[list[dict[str, Any]]], V],
        absent: V,
    ) -> dict[str, dict[str, V]]:
        """Per table, per active part: the fact. The parts first seen are asked: `ask(table, their names as
        literals)` is a SELECT whose rows name their `part`; a part's rows are folded into its fact (`fold`), a
        part without any has `absent`."""
        active = [(uuid, table, part) for uuid, table, _, part in active_parts(store, tables) if uuid.strip("0-")]
        with self._lock:
            unread = [part for part in active if part not in self._known]
        if unread:
            asked = " UNION ALL ".join(
                f"SELECT {literal(table)} AS table, * FROM ("
                f"{ask(table, ', '.join(literal(part) for _, t, part in unread if t == table))})"
                for table in sorted({table for _, table, _ in unread})
            )
            rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for row in store.rows(asked):
                rows.setdefault((row["table"], row["part"]), []).append(row)
            with self._lock:  # none: no such rows (or merged away since listed: never active again)
                self._known.update({(u, t, p): fold(rows[t, p]) if (t, p) in rows else absent for u, t, p in unread})
        by_table: dict[str, dict[str, V]] = {}
        with self._lock:
            for part in active:  # one another read found gone since is left out: read if still there
                if part in self._known:
                    by_table.setdefault(part[1], {})[part[2]] = self._known[part]
            still = set(active)
            for gone in [part for part in self._known if part[1] in tables and part not in still]:
                del self._known[gone]  # merged away or dropped: never active again (or another store's: asked again)
        return by_table


def active_parts(store: Reader, tables: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    """The tables' active parts, as (the table's identity, table, partition, part), a read of metadata; the identity
    is zeros where the table has none (nothing tells one store's from another's)."""
    rows = store.rows(
        "SELECT toString(t.uuid) AS table_uuid, p.table AS table, p.partition_id AS partition, p.name AS part "
        "FROM system.parts AS p INNER JOIN system.tables AS t ON t.database = p.database AND t.name = p.table "
        f"WHERE p.database = {{database:String}} AND p.table IN ({', '.join(map(literal, tables))}) AND p.active",
        {"database": store.database},
    )
    return [(row["table_uuid"], row["table"], row["partition"], row["part"]) for row in rows]


_late: PartFacts[bool] = PartFacts()  # holds late rows
_stored: PartFacts[int] = PartFacts()  # the latest `ingested_at` (ms) of its rows, or a bound above it


def late_rows(store: Reader, tables: tuple[str, ...]) -> dict[str, str]:
    """Per table: the condition on its late rows (`late = 1`)."""
    known = _late.learnt(
        store,
        tables,
        lambda table, names: f"SELECT _part AS part FROM {store.database}.{table} "
        f"WHERE _part IN ({names}) AND late = 1 GROUP BY _part",
        fold=lambda rows: True,
        absent=False,
    )
    return {table: _naming("late = 1", known.get(table), lambda late: late) for table in tables}


def stored_since(store: Reader, tables: tuple[str, ...], since_ms: int) -> dict[str, str]:
    """Per table: the condition on its rows stored at or after `since_ms` (ms since the epoch)."""
    since = f"fromUnixTimestamp64Milli(toInt64({int(since_ms)}), 'UTC')"
    known = _stored.learnt(
        store,
        tables,
        lambda table, names: f"SELECT _part AS part, toUnixTimestamp64Milli(max(ingested_at)) AS ms "
        f"FROM {store.database}.{table} WHERE _part IN ({names}) AND ingested_at >= {since} GROUP BY _part",
        fold=lambda rows: int(rows[0]["ms"]),
        absent=since_ms - 1,
    )
    return {table: _naming(f"ingested_at >= {since}", known.get(table), lambda ms: ms >= since_ms) for table in tables}


def _naming(condition: str, parts: dict[str, V] | None, holds: Callable[[V], bool]) -> str:
    """`condition`, with the parts that can hold its rows named where the parts are known."""
    if not parts:
        return condition
    holding = [part for part, fact in parts.items() if holds(fact)]
    named = f"_part IN ({', '.join(map(literal, holding))}) OR " if holding else ""
    return f"{condition} AND ({named}_part NOT IN ({', '.join(map(literal, parts))}))"


def literal(text: str) -> str:
    """A string literal of text the store itself named (a table, a partition id, a part)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
