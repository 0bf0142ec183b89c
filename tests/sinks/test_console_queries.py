"""The console's statements on a real embedded store with hand-made rows whose answers are known."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from settings import SqlSettings
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.records import record_alert_action
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration

US = 1_000_000
T0 = 1_795_219_200 * US  # 2026-11-21 08:00:00 CST
DAY = q.Span(T0 - 8 * 3600 * US, T0 + 16 * 3600 * US)
BEFORE = "2026-11-20 12:00:00"  # the day before, UTC


def at(minutes: int) -> str:
    """An occurred_at literal `minutes` after T0 (UTC text, as ClickHouse parses it)."""
    return datetime.fromtimestamp(T0 / US + minutes * 60, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert(store: ChdbStore, table: str, columns: str, *rows: tuple[object, ...]) -> None:
    """INSERT … VALUES of Python values: str quoted, None as NULL, lists as arrays, numbers as written."""

    def value(item: object) -> str:
        if item is None:
            return "NULL"
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        return f"'{item}'" if isinstance(item, str) else str(item)

    body = ", ".join("(" + ", ".join(value(item) for item in row) + ")" for row in rows)
    store.command(f"INSERT INTO datamarket.{table} ({columns}) VALUES {body}")


LISTING = (
    "exchange_id, event_id, occurred_at, action, product_id, seller_id, source, sector, pricing, high_quality, "
    "recognized_by"
)
TRADE = (
    "exchange_id, event_id, occurred_at, trade_id, product_id, buyer_id, seller_id, price, quantity, amount, venue, "
    "sector, source, high_quality, late"
)
T1 = (
    "SHDEX",
    "T1",
    at(5),
    "T1",
    "P1",
    "B-OLD",
    "S1",
    "0.10",
    3,
    "0.30",
    "on_exchange",
    "transportation",
    "public",
    1,
    0,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    opened = ChdbStore(tmp_path_factory.mktemp("console") / "chdb")
    opened.apply_schema()
    insert(
        opened,
        "listings",
        LISTING,
        ("SHDEX", "L1", BEFORE, "list", "P-OLD", "S-OLD", "enterprise", "healthcare", "paid", 0, ["SZDEX"]),
        ("SHDEX", "L2", at(1), "list", "P1", "S1", "public", "transportation", "free", 1, ["SZDEX", "BJIDEX"]),
        ("SZDEX", "L3", at(2), "list", "P1", "S1", "public", "transportation", "free", 1, ["SHDEX"]),
        ("SZDEX", "L4", at(3), "list", "P2", "S2", "public", "meteorology", "conditional_free", 0, ["GZDEX"]),
        ("SZDEX", "L5", at(40), "delist", "P2", None, None, None, None, 0, []),
        ("SZDEX", "L6", at(4), "list", "P3", "S3", "public", "meteorology", "paid", 0, []),
    )
    insert(
        opened,
        "trades",
        TRADE,
        (
            "SHDEX",
            "T0",
            BEFORE,
            "T0",
            "P-OLD",
            "B-OLD",
            "S-OLD",
            5,
            1,
            5,
            "on_exchange",
            "healthcare",
            "enterprise",
            0,
            0,
        ),
        T1,
        (
            "SHDEX",
            "T2",
            at(6),
            "T2",
            "P1",
            "B1",
            "S1",
            "0.20",
            1,
            "0.20",
            "off_exchange_registered",
            "transportation",
            "public",
            1,
            0,
        ),
        (
            "SZDEX",
            "T3",
            at(65),
            "T3",
            "P2",
            "B2",
            "S2",
            "1000000.01",
            1,
            "1000000.01",
            "on_exchange",
            "meteorology",
            "public",
            0,
            1,
        ),
    )
    insert(opened, "trades", TRADE, T1)  # a retried insert (same identity) must not count twice: FINAL collapses it
    insert(
        opened,
        "usage",
        "exchange_id, event_id, occurred_at, product_id, buyer_id, calls, bytes, source",
        ("SHDEX", "U1", at(7), "P1", "B1", 10, 1000, "public"),
        ("SZDEX", "U2", at(8), "P3", "B2", 5, 50, "public"),
    )
    # ingested_at given (now): the table's TTL would drop a heartbeat stored at the epoch.
    opened.command(
        "INSERT INTO datamarket.heartbeats (exchange_id, event_id, occurred_at, seq, ingested_at) "
        f"VALUES ('SHDEX', 'H1', '{at(90)}', 1, now64(3))"
    )
    insert(
        opened,
        "rejected_events",
        "src_topic, src_partition, src_offset, raw, reason, exchange_id",
        ("dm.events", 0, 1, "{", "malformed", ""),
        ("dm.events", 0, 2, "x", "invalid", "SHDEX"),
        ("dm.events", 0, 3, "y", "invalid", "SHDEX"),
    )
    insert(
        opened,
        "duplicate_events",
        "src_topic, src_partition, src_offset, exchange_id, event_id",
        ("dm.events", 0, 9, "SZDEX", "T3"),
    )
    insert(
        opened,
        "alerts",
        "alert_id, kind, severity, exchange_id, detected_at, dedup_key, message",
        ("a1", "self_dealing", "critical", "SHDEX", "2026-11-21 01:00:00", "k1", "one"),
        ("a2", "price_outlier", "warning", "SZDEX", "2026-11-21 01:00:01", "k2", "two"),
    )
    record_alert_action(opened, "k2", "ack", "ops-li", "looking")
    yield opened
    opened.close()


def test_watermark_is_the_latest_event_of_any_table(store: ChdbStore) -> None:
    assert q.watermark_us(store) == T0 + 90 * 60 * US


def period(store: q.Reader, grain: q.Grain | None = None) -> dict[str, Any]:
    """The day's trade and metering figures as the period API reads them, at one snapshot."""
    return q.period_figures(store, q.snapshot(store, allowed_lateness_s=300), [(DAY, grain)])[0]


def test_trade_totals_are_exact_to_the_fen_and_count_a_retried_insert_once(store: ChdbStore) -> None:
    totals = period(store)["totals"]
    assert totals["trades"] == 3
    assert totals["amount"] == Decimal("1000000.51")
    assert totals["on_exchange"] == Decimal("1000000.31")
    assert totals["high_quality"] == Decimal("0.50")


def test_periods_that_overlap_each_count_the_rows_they_share(store: ChdbStore) -> None:
    """A year-ago period overlaps the previous one when a period is longer than a year: the raw rows of both are
    read in one pass per table, and each row must count in every period it is in."""
    snap = q.snapshot(store, allowed_lateness_s=300)
    later = q.Span(DAY.start_us + 12 * 3600 * US, DAY.end_us)  # the day's second half, inside it
    whole, again, half = q.period_figures(store, snap, [(DAY, "hour"), (DAY, None), (later, None)])
    assert whole["totals"] == again["totals"] and whole["totals"]["trades"] == 3
    assert sum(t["trades"] for t in whole["trend"].values()) == 3
    assert half["totals"] == q.period_figures(store, snap, [(later, None)])[0]["totals"]


def test_trend_buckets_by_hour(store: ChdbStore) -> None:
    hours = period(store, "hour")["trend"]
    assert sorted((int(k), v["trades"], v["amount"]) for k, v in hours.items()) == [
        (T0 // US, 2, Decimal("0.50")),
        (T0 // US + 3_600, 1, Decimal("1000000.01")),
    ]


def test_new_products_are_distinct_products_and_participants_first_seen(store: ChdbStore) -> None:
    [firsts] = q.first_seen_counts(store, q.snapshot(store, allowed_lateness_s=300), [DAY])
    assert firsts["products"] == 3  # from 4 `list` events
    assert firsts["by"]["exchange_id"] == {"SHDEX": 1, "SZDEX": 3}
    assert {k: n for k, n in firsts["by"]["sector"].items() if n} == {"transportation": 1, "meteorology": 2}
    # B-OLD and S-OLD were seen the day before; S1, S2, S3 list today; B1, B2 buy today.
    assert firsts["participants"] == 5


def test_recognition_counts_active_listings_by_exchange_pair(store: ChdbStore) -> None:
    catalogue = q.catalogue(store)
    pairs = {(p["listed_on"], p["recognized_by"]): p["products"] for p in catalogue.pairs}
    # P2's recognition by GZDEX ended with its delisting.
    assert pairs == {("SHDEX", "SZDEX"): 2, ("SHDEX", "BJIDEX"): 1, ("SZDEX", "SHDEX"): 1}
    assert catalogue.recognized_products == 2


def test_public_data_by_pricing(store: ChdbStore) -> None:
    assert q.catalogue(store).public == {"free": 1, "paid": 1}
    supply = q.public_supply(store, q.snapshot(store, allowed_lateness_s=300), DAY)
    assert supply["free"] == {"trades": 2, "amount": Decimal("0.50"), "calls": 10}
    assert supply["conditional_free"] == {"trades": 1, "amount": Decimal("1000000.01"), "calls": 0}
    assert supply["paid"] == {"trades": 0, "amount": Decimal("0.00"), "calls": 5}


def test_metering_per_exchange(store: ChdbStore) -> None:
    figures = period(store)
    metered = {
        code: (row["usage_records"], row["usage_calls"], row["usage_bytes"])
        for code, row in figures["by"]["exchange_id"].items()
        if row["usage_records"]
    }
    assert metered == {"SHDEX": (1, 10, 1000), "SZDEX": (1, 5, 50)}
    totals = figures["totals"]
    assert (totals["usage_records"], totals["usage_calls"], totals["usage_bytes"]) == (2, 15, 1050)


def test_feed_health_rows(store: ChdbStore) -> None:
    snap = q.snapshot(store, allowed_lateness_s=300)
    events = {(r["exchange_id"], r["type"]): (r["events"], r["late"]) for r in q.feed_events(store, snap)}
    assert events[("SHDEX", "trades")] == (3, 0)
    assert events[("SZDEX", "trades")] == (1, 1)
    assert events[("SHDEX", "heartbeats")] == (1, 0)
    rejected = {(r["exchange_id"], r["reason"]): r["messages"] for r in q.rejected_by_exchange(store)}
    assert rejected == {("", "malformed"): 1, ("SHDEX", "invalid"): 2}
    assert q.duplicates_by_exchange(store) == {"SZDEX": 1}


def test_alerts_carry_their_lifecycle_and_filters(store: ChdbStore) -> None:
    assert q.alert_status_counts(store, q.AlertFilter()) == {"open": 1, "acked": 1, "resolved": 0}
    acked = q.alerts(store, q.AlertFilter(status="acked"))
    assert [(a["dedup_key"], a["actor"], a["note"]) for a in acked] == [("k2", "ops-li", "looking")]
    assert [a["dedup_key"] for a in q.alerts(store, q.AlertFilter(exchange_id="SHDEX"))] == ["k1"]
    assert q.alert_status_counts(store, q.AlertFilter(kind="self_dealing")) == {"open": 1, "acked": 0, "resolved": 0}
    assert q.alert_exists(store, "k1") and not q.alert_exists(store, "k1' OR '1'='1")


def test_every_console_query_runs_as_a_read_only_user(store: ChdbStore) -> None:
    reader = store.reads(SqlSettings())  # what the console reads with: readonly = 1 and ClickHouse's limits
    answers = [
        q.watermark_us(reader),
        period(reader, "hour"),
        q.first_seen_counts(reader, q.snapshot(reader, allowed_lateness_s=300), [DAY]),
        q.catalogue(reader),
        q.public_supply(reader, q.snapshot(reader, allowed_lateness_s=300), DAY),
        q.alerts(reader, q.AlertFilter()),
        q.alert_status_counts(reader, q.AlertFilter()),
        q.alert_exists(reader, "k1"),
        q.feed_events(reader, q.snapshot(reader, allowed_lateness_s=300)),
        q.rejected_by_exchange(reader),
        q.duplicates_by_exchange(reader),
    ]
    assert answers[1] == period(store, "hour") and answers[-1] == {"SZDEX": 1}

