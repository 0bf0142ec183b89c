"""Exact totals of a store against what was sent: every line in exactly one place, no row twice, amounts to the
fen, and the windows equal to a recompute from the stored events.

Read through a running worker's API or a store opened directly, so the fault-injection tests and the store
tests check the same things.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from settings import Settings
from sinks.clickhouse import Store
from sinks.clickhouse.windows import minute_cells_sql
from tests.support.market_file import Expected

EVENT_TABLES = ("listings", "trades", "usage", "heartbeats")
WINDOWED_TABLES = ("listings", "trades", "usage")
ACCOUNTED = (*EVENT_TABLES, "rejected_events", "duplicate_events")


class StoreReader:
    """Read-only SQL against either a running worker's API or a store opened directly."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store

    def rows(self, sql: str) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.rows(sql)
        from dmm.query import query_rows

        assert self.settings is not None
        return query_rows(self.settings, sql)

    def one(self, sql: str) -> dict[str, Any]:
        rows = self.rows(sql)
        assert len(rows) == 1, rows
        return rows[0]


def assert_exact_totals(reader: StoreReader, expected: Expected) -> dict[str, int]:
    """Every line in exactly one place, no row twice, amounts to the fen, windows summing to trades."""
    db = "datamarket"
    counts: dict[str, int] = {}
    for table in ACCOUNTED:
        key = "exchange_id, event_id" if table in EVENT_TABLES else "src_topic, src_partition, src_offset"
        row = reader.one(
            f"SELECT count() AS raw, (SELECT count() FROM {db}.{table} FINAL) AS final, "
            f"uniqExact({key}) AS uniq FROM {db}.{table}"
        )
        assert int(row["raw"]) == int(row["final"]) == int(row["uniq"]), (table, row)
        counts[table] = int(row["raw"])
    accepted = sum(counts[t] for t in EVENT_TABLES)
    assert accepted == expected.accepted, (counts, expected.accepted)
    assert counts["duplicate_events"] == expected.duplicates, counts
    assert counts["rejected_events"] == sum(expected.rejected.values()), counts
    assert accepted + counts["duplicate_events"] + counts["rejected_events"] == expected.lines
    # Offsets: every message of dm.events is in exactly one table (no offset both stored and rejected...).
    offsets = reader.one(
        "SELECT count() AS n, uniqExact(src_partition, src_offset) AS u FROM ("
        + " UNION ALL ".join(f"SELECT src_partition, src_offset FROM {db}.{t}" for t in ACCOUNTED)
        + ")"
    )
    assert int(offsets["n"]) == int(offsets["u"]) == expected.lines, offsets
    reasons = reader.rows(f"SELECT reason, count() AS n FROM {db}.rejected_events GROUP BY reason")
    assert {r["reason"]: int(r["n"]) for r in reasons} == dict(expected.rejected)
    by_exchange = reader.rows(f"SELECT exchange_id, toString(sum(amount)) AS s FROM {db}.trades GROUP BY exchange_id")
    assert {r["exchange_id"]: Decimal(r["s"]) for r in by_exchange} == dict(expected.amount_by_exchange)
    late = reader.one(f"SELECT countIf(late = 1) AS late FROM {db}.trades")
    assert int(late["late"]) == expected.late
    windows = reader.one(
        f"SELECT toString(sum(traded_amount)) AS amount, sum(trades) AS trades, sum(usage_calls) AS calls "
        f"FROM {db}.market_1m FINAL"
    )
    raw = reader.one(
        f"SELECT toString(sum(amount)) AS amount, count() AS trades, "
        f"(SELECT sum(calls) FROM {db}.usage WHERE late = 0) AS calls FROM {db}.trades WHERE late = 0"
    )
    assert Decimal(windows["amount"]) == Decimal(raw["amount"]), (windows, raw)
    assert int(windows["trades"]) == int(raw["trades"]) == expected.trades - expected.late
    assert int(windows["calls"]) == int(raw["calls"])
    for rollup in ("market_1h", "market_1d"):  # the rollups add up to the minutes, to the fen
        rolled = reader.one(
            f"SELECT toString(sum(traded_amount)) AS amount, sum(trades) AS trades, sum(usage_calls) AS calls "
            f"FROM {db}.{rollup} FINAL"
        )
        assert (Decimal(rolled["amount"]), int(rolled["trades"]), int(rolled["calls"])) == (
            Decimal(windows["amount"]),
            int(windows["trades"]),
            int(windows["calls"]),
        ), (rollup, rolled, windows)
    assert_windows_are_the_events(reader.rows)
    alerts = reader.one(f"SELECT count() AS n, uniqExact(dedup_key) AS u FROM {db}.alerts")
    assert int(alerts["n"]) == int(alerts["u"]), alerts
    return counts


def assert_windows_are_the_events(rows: Callable[[str], list[dict[str, Any]]]) -> None:
    """`market_1m`, cell by cell (distinct buyers and sellers too), is what a recompute from the stored events
    gives, `market_1h` and `market_1d` what their minutes add up to, `console_1d` what its days' cells add up to, and
    `public_1d` what its days' public events add up to (`assert_public_days_are_the_events`) and `public_1mo` what
    its days add up to (`assert_public_months_are_the_days`), whether the worker kept a window's totals itself or
    recomputed them."""
    db = "datamarket"
    minute = "toUnixTimestamp(toStartOfMinute(occurred_at))"
    minutes = [
        int(row["w"]) * 1000
        for row in rows(" UNION DISTINCT ".join(f"SELECT {minute} AS w FROM {db}.{t}" for t in WINDOWED_TABLES))
    ]
    cell = "exchange_id, sector, category, source, venue, high_quality"
    sums = (
        "sum(trades) AS trades, toString(sum(traded_amount)) AS amount, sum(quantity) AS quantity, "
        "sum(data_bytes) AS data_bytes, sum(usage_calls) AS usage_calls, sum(usage_bytes) AS usage_bytes, "
        "sum(usage_records) AS usage_records, sum(new_listings) AS new_listings"
    )
    measures = f"{sums}, sum(buyers) AS buyers, sum(sellers) AS sellers"  # one row per cell: the row's own
    order = f"ORDER BY w, {cell}"
    written = rows(
        f"SELECT toString(window_start) AS w, {cell}, {measures} FROM {db}.market_1m FINAL GROUP BY w, {cell} {order}"
    )
    recomputed = (
        rows(
            f"SELECT toString(window_start) AS w, {cell}, {measures} "
            f"FROM ({minute_cells_sql(db, minutes, datetime.now(UTC))}) GROUP BY w, {cell} {order}"
        )
        if minutes
        else []
    )
    assert written == recomputed, [row for row in written if row not in recomputed][:5]
    for rollup, window, of_minute in (
        ("market_1h", "window_start", "toStartOfHour(window_start)"),
        ("market_1d", "day", "toDate(window_start, 'Asia/Shanghai')"),
    ):
        rolled = rows(
            f"SELECT toString({window}) AS w, {cell}, {sums} FROM {db}.{rollup} FINAL GROUP BY w, {cell} {order}"
        )
        added = rows(
            f"SELECT toString({of_minute}) AS w, {cell}, {sums} FROM {db}.market_1m FINAL GROUP BY w, {cell} {order}"
        )
        assert rolled == added, (rollup, [row for row in rolled if row not in added][:5])
    console = (
        "sum(trades) AS trades, toString(sum(traded_amount)) AS amount, sum(usage_records) AS records, "
        "sum(usage_calls) AS calls, sum(usage_bytes) AS bytes"
    )
    something = "HAVING trades > 0 OR records > 0 ORDER BY d, exchange_id, sector"
    days = rows(
        f"SELECT toString(day) AS d, exchange_id, sector, {console}, toString(sum(on_exchange_amount)) AS on_ex, "
        f"toString(sum(high_quality_amount)) AS hq FROM {db}.console_1d FINAL GROUP BY d, exchange_id, sector "
        f"{something}"
    )
    cells = rows(
        f"SELECT toString(day) AS d, exchange_id, sector, {console}, "
        f"toString(sumIf(traded_amount, venue = 'on_exchange')) AS on_ex, "
        f"toString(sumIf(traded_amount, high_quality = 1)) AS hq FROM {db}.market_1d FINAL "
        f"GROUP BY d, exchange_id, sector {something}"
    )
    assert days == cells, ("console_1d", [row for row in days if row not in cells][:5])
    assert_public_days_are_the_events(rows)
    assert_public_months_are_the_days(rows)


def assert_public_days_are_the_events(rows: Callable[[str], list[dict[str, Any]]]) -> int:
    """Every day `public_1d` holds for good (its mark no older than the day's `console_1d`) is, product by product,
    what the on-time public trades and usage of that day add up to. Returns how many such days there are."""
    db = "datamarket"
    held = (
        f"SELECT day FROM (SELECT day, max(updated_at) AS built FROM {db}.public_1d WHERE product_id = '' GROUP BY day)"
        f" AS p LEFT JOIN (SELECT day, max(updated_at) AS flushed FROM {db}.console_1d GROUP BY day) AS c USING (day) "
        f"WHERE p.built >= c.flushed"
    )
    rolled = rows(
        f"SELECT toString(day) AS d, product_id, sum(trades) AS trades, toString(sum(amount)) AS amount, "
        f"sum(calls) AS calls FROM {db}.public_1d FINAL WHERE product_id != '' AND day IN ({held}) "
        f"GROUP BY d, product_id ORDER BY d, product_id"
    )
    day = "toDate(occurred_at, 'Asia/Shanghai')"
    of_events = " UNION ALL ".join(
        f"SELECT {day} AS day, product_id, {trade} AS trade, {amount} AS amount, {calls} AS calls "
        f"FROM {db}.{table} FINAL WHERE late = 0 AND source = 'public' AND {day} IN ({held})"
        for table, trade, amount, calls in (
            ("trades", "toUInt64(1)", "amount", "toUInt64(0)"),
            ("usage", "toUInt64(0)", "toDecimal128(0, 2)", "calls"),
        )
    )
    added = rows(
        f"SELECT toString(day) AS d, product_id, sum(trade) AS trades, toString(sum(amount)) AS amount, "
        f"sum(calls) AS calls FROM ({of_events}) GROUP BY d, product_id ORDER BY d, product_id"
    )
    assert rolled == added, ("public_1d", [row for row in rolled if row not in added][:5])
    return len(rows(held))


def assert_public_months_are_the_days(rows: Callable[[str], list[dict[str, Any]]]) -> int:
    """Every month `public_1mo` holds as its days are (its mark no older than theirs) is, product by product, what
    its days in `public_1d` add up to. Returns how many such months there are."""
    db = "datamarket"
    held = (
        f"SELECT month FROM (SELECT month, max(updated_at) AS built FROM {db}.public_1mo WHERE product_id = '' "
        f"GROUP BY month) AS m LEFT JOIN (SELECT toStartOfMonth(day) AS month, max(updated_at) AS days_built "
        f"FROM {db}.public_1d WHERE product_id = '' GROUP BY month) AS d USING (month) WHERE m.built >= d.days_built"
    )
    measures = "sum(trades) AS trades, toString(sum(amount)) AS amount, sum(calls) AS calls"
    rolled = rows(
        f"SELECT toString(month) AS m, product_id, {measures} FROM {db}.public_1mo FINAL "
        f"WHERE product_id != '' AND month IN ({held}) GROUP BY m, product_id ORDER BY m, product_id"
    )
    added = rows(
        f"SELECT toString(toStartOfMonth(day)) AS m, product_id, {measures} FROM {db}.public_1d FINAL "
        f"WHERE product_id != '' AND toStartOfMonth(day) IN ({held}) GROUP BY m, product_id ORDER BY m, product_id"
    )
    assert rolled == added, ("public_1mo", [row for row in rolled if row not in added][:5])
    return len(rows(held))


def alert_keys(reader: StoreReader) -> set[str]:
    return {r["dedup_key"] for r in reader.rows("SELECT dedup_key FROM datamarket.alerts")}


