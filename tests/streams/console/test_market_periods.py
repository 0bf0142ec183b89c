"""The period API on a real embedded store: every figure of a period of several China days, of the days before it
and of the same days a year earlier equals SQL written here over the raw tables (`trades FINAL`, `listings FINAL`,
`usage FINAL`) to the fen, whichever part of it the rollups, `first_seen` or the raw rows answer."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dmm.stack import EmbeddedStack
from sinks.clickhouse.console_queries import ROLLED_UP_EVENTS, AlertFilter, feed_events, first_seen_counts, snapshot
from sinks.clickhouse.first_seen import first_seen_rows, record_first_seen
from sinks.clickhouse.sql_guard import guard_select
from sinks.clickhouse.store import ChdbStore
from sinks.clickhouse.windows import recompute_console_days, recompute_days, recompute_hours, recompute_minutes
from streams.console.encode import plain
from streams.console.market import period_view
from streams.console.periods import DateRange, china_midnight_us
from streams.console.surveillance import alerts_view

pytestmark = pytest.mark.integration

CST = "+08:00"
TRADE = (
    "exchange_id, event_id, occurred_at, trade_id, product_id, buyer_id, seller_id, price, quantity, amount, venue, "
    "sector, source, high_quality, late, ingested_at"
)
LISTING = "exchange_id, event_id, occurred_at, action, product_id, seller_id, sector, high_quality, ingested_at"
# (China time, exchange, product, buyer, seller, amount, venue, sector, high quality, late)
HISTORY = [
    ("2025-11-18 23:59:59.999999", "SHDEX", "P1", "B1", "S1", "10.01", "on_exchange", "healthcare", 1, 0),
    ("2025-11-19 00:00:00", "SHDEX", "P1", "B1", "S1", "20.02", "on_exchange", "healthcare", 1, 0),
    ("2025-11-21 23:30:00", "SZDEX", "P-OLD", "B2", "S2", "30.03", "off_exchange_registered", "transportation", 0, 0),
    ("2025-11-22 00:00:00", "SZDEX", "P-OLD", "B2", "S2", "40.04", "on_exchange", "transportation", 0, 0),
    ("2026-11-16 00:00:00", "BJIDEX", "P-OLD", "B3", "S2", "50.05", "on_exchange", "transportation", 1, 0),
    ("2026-11-18 23:59:59.999999", "BJIDEX", "P-OLD", "B3", "S2", "60.06", "off_exchange_registered", "unknown", 0, 0),
    ("2026-11-19 00:00:00", "SHDEX", "P1", "B4", "S1", "70.07", "on_exchange", "healthcare", 1, 0),
    ("2026-11-19 13:15:00", "SZDEX", "P1", "B1", "S1", "80.08", "off_exchange_registered", "healthcare", 1, 0),
    ("2026-11-20 07:59:59", "SHDEX", "P2", "B5", "S3", "90.09", "on_exchange", "unknown", 0, 0),
    ("2026-11-20 23:00:00", "BJIDEX", "P-OLD", "B3", "S2", "100.10", "on_exchange", "transportation", 1, 0),
    ("2026-11-21 00:30:00", "SHDEX", "P1", "B6", "S1", "110.11", "on_exchange", "healthcare", 0, 0),
    ("2026-11-21 07:10:00", "SZDEX", "P2", "B5", "S3", "120.12", "off_exchange_registered", "unknown", 1, 0),
    ("2026-11-20 12:00:00", "SHDEX", "P1", "B7", "S1", "0.01", "on_exchange", "healthcare", 1, 1),  # late
]
# Stored after the rollups and `first_seen` were last written: what a live page reads raw.
RECENT = [
    ("2026-11-20 12:30:00", "SZDEX", "P1", "B8", "S1", "1.23", "on_exchange", "healthcare", 0, 1),  # late
    ("2026-11-21 09:30:00", "SHDEX", "P3", "B9", "S4", "140.14", "on_exchange", "sci_tech_innovation", 1, 0),
    ("2026-11-21 10:00:00", "SZDEX", "P1", "B1", "S1", "150.15", "off_exchange_registered", "healthcare", 0, 0),
]
# (China time, exchange, action, product, seller, sector)
LISTINGS = [
    ("2025-11-20 10:00:00", "SZDEX", "list", "P-OLD", "S2", "transportation"),
    ("2026-11-17 10:00:00", "SHDEX", "list", "P1", "S1", "healthcare"),
    ("2026-11-19 10:00:00", "SZDEX", "list", "P1", "S1", "healthcare"),
    ("2026-11-20 06:00:00", "SHDEX", "list", "P2", "S3", None),
    ("2026-11-20 09:00:00", "BJIDEX", "list", "P-OLD", "S2", "transportation"),
    ("2026-11-20 10:00:00", "SHDEX", "delist", "P2", "S3", None),
]
RECENT_LISTINGS = [("2026-11-21 09:20:00", "SHDEX", "list", "P3", "S5", "sci_tech_innovation")]
USAGE_COLUMNS = "exchange_id, event_id, occurred_at, product_id, buyer_id, calls, bytes, sector, late, ingested_at"
# (China time, exchange, product, calls, bytes, late)
USAGE = [
    ("2026-11-18 23:59:59.999999", "SHDEX", "P1", 7, 700, 0),  # the day before the period
    ("2026-11-19 08:00:00", "SHDEX", "P1", 10, 1_000, 0),
    ("2026-11-20 13:00:00", "SZDEX", "P1", 5, 50, 0),
    ("2026-11-20 14:00:00", "GZDEX", "P2", 0, 0, 0),  # a record with nothing metered still counts as one
    ("2026-11-21 07:59:00", "SHDEX", "P1", 3, 30, 0),
    ("2026-11-20 15:00:00", "SZDEX", "P1", 2, 20, 1),  # late: the rollups leave it out
]
RECENT_USAGE = [("2026-11-21 09:45:00", "SZDEX", "P1", 4, 40, 0), ("2026-11-19 09:00:00", "BJIDEX", "P1", 1, 10, 1)]


def utc(china: str) -> str:
    """A China time as the UTC text ClickHouse parses for a DateTime64(6, 'UTC')."""
    moment = datetime.fromisoformat(china + CST).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def literal(value: object) -> str:
    return "NULL" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


def insert(store: ChdbStore, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
    body = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    store.command(f"INSERT INTO datamarket.{table} ({columns}) VALUES {body}")


def usage(store: ChdbStore, rows: list[tuple[Any, ...]], first: int, ingested: str | None) -> None:
    insert(
        store,
        "usage",
        USAGE_COLUMNS,
        [
            (ex, f"U{first + i}", utc(at), p, "B1", calls, size, "healthcare", late, ingested or utc(at))
            for i, (at, ex, p, calls, size, late) in enumerate(rows)
        ],
    )


def trades(store: ChdbStore, rows: list[tuple[Any, ...]], first: int, ingested: str | None) -> None:
    insert(
        store,
        "trades",
        TRADE,
        [
            (
                ex,
                f"T{first + i}",
                utc(at),
                f"T{first + i}",
                p,
                b,
                s,
                amount,
                1,
                amount,
                venue,
                sector,
                "enterprise",
                hq,
                late,
                ingested or utc(at),
            )
            for i, (at, ex, p, b, s, amount, venue, sector, hq, late) in enumerate(rows)
        ],
    )


def listings(store: ChdbStore, rows: list[tuple[Any, ...]], first: int, ingested: str | None) -> None:
    insert(
        store,
        "listings",
        LISTING,
        [
            (ex, f"L{first + i}", utc(at), action, p, s, sector, 0, ingested or utc(at))
            for i, (at, ex, action, p, s, sector) in enumerate(rows)
        ],
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    """History rolled up and fed to `first_seen` as the worker's flush does, then rows stored after that."""
    opened = ChdbStore(tmp_path_factory.mktemp("periods") / "chdb")
    opened.apply_schema()
    trades(opened, HISTORY, 0, None)
    listings(opened, LISTINGS, 0, None)
    usage(opened, USAGE, 0, None)
    minutes = sorted(
        {int(datetime.fromisoformat(r[0] + CST).timestamp()) // 60 * 60_000 for r in [*HISTORY, *LISTINGS, *USAGE]}
    )
    flushed = datetime.now(UTC)
    recompute_minutes(opened, minutes, flushed)
    recompute_hours(opened, sorted({m - m % 3_600_000 for m in minutes}), flushed)
    days = sorted({china_midnight_us(_day(m)) // 1000 for m in minutes})
    recompute_days(opened, days, flushed)
    recompute_console_days(opened, days, flushed)
    record_first_seen(opened)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # stored after the flush
    trades(opened, RECENT, 100, now)
    listings(opened, RECENT_LISTINGS, 100, now)
    usage(opened, RECENT_USAGE, 100, now)
    yield opened
    opened.close()


def _day(ms: int) -> Any:
    return datetime.fromtimestamp(ms / 1000 + 8 * 3600, UTC).date()


def sql_figures(store: ChdbStore, period: dict[str, Any], as_of_us: int) -> dict[str, Any]:
    """The API's figures for a period, from the raw tables."""
    days = DateRange(datetime.fromisoformat(period["from"]).date(), datetime.fromisoformat(period["to"]).date())
    span = (
        f"occurred_at >= fromUnixTimestamp64Micro(toInt64({days.span.start_us}), 'UTC') "
        f"AND occurred_at < fromUnixTimestamp64Micro(toInt64({days.span.end_us}), 'UTC') "
        f"AND occurred_at <= fromUnixTimestamp64Micro(toInt64({as_of_us}), 'UTC')"
    )
    first = span.replace("occurred_at", "first_at")
    sums = (
        "count() AS trades, toString(sum(amount)) AS traded_amount, "
        "toString(sumIf(amount, venue = 'on_exchange')) AS on_exchange_amount, "
        "toString(sumIf(amount, high_quality = 1)) AS high_quality_amount"
    )
    totals = store.rows(f"SELECT {sums} FROM datamarket.trades FINAL WHERE {span}")[0]
    by = {
        dim: {
            r.pop("code"): r
            for r in store.rows(
                f"SELECT toString({dim}) AS code, {sums} FROM datamarket.trades FINAL WHERE {span} GROUP BY code"
            )
        }
        for dim in ("exchange_id", "sector")
    }
    products = (
        "SELECT product_id, min(occurred_at) AS first_at, argMin(ifNull(sector, 'unknown'), occurred_at) AS sector "
        "FROM datamarket.listings FINAL WHERE action = 'list' GROUP BY product_id"
    )
    new_by_sector = {
        r["sector"]: int(r["n"])
        for r in store.rows(f"SELECT sector, count() AS n FROM ({products}) WHERE {first} GROUP BY sector")
    }
    new_by_exchange = {
        r["code"]: int(r["n"])
        for r in store.rows(
            "SELECT toString(exchange_id) AS code, count() AS n FROM (SELECT exchange_id, product_id, "
            "min(occurred_at) AS first_at FROM datamarket.listings FINAL WHERE action = 'list' "
            f"GROUP BY exchange_id, product_id) WHERE {first} GROUP BY code"
        )
    }
    parties = store.rows(
        "SELECT count() AS n FROM (SELECT party, min(at) AS first_at FROM ("
        "SELECT buyer_id AS party, occurred_at AS at FROM datamarket.trades FINAL "
        "UNION ALL SELECT seller_id, occurred_at FROM datamarket.trades FINAL "
        "UNION ALL SELECT assumeNotNull(seller_id), occurred_at FROM datamarket.listings FINAL "
        f"WHERE action = 'list' AND seller_id IS NOT NULL) GROUP BY party) WHERE {first}"
    )[0]["n"]

    def money(text: str) -> str:
        return str(Decimal(text).quantize(Decimal("0.01")))

    def row(figures: dict[str, Any], code: str, new: dict[str, int]) -> dict[str, Any]:
        return {
            "trades": int(figures.get("trades", 0)),
            **{k: money(figures.get(k, "0")) for k in ("traded_amount", "on_exchange_amount", "high_quality_amount")},
            "new_products": new.get(code, 0),
        }

    return {
        "trades": int(totals["trades"]),
        **{k: money(totals[k]) for k in ("traded_amount", "on_exchange_amount", "high_quality_amount")},
        "new_products": sum(new_by_sector.values()),
        "new_participants": int(parties),
        "by_exchange": {c: row(f, c, new_by_exchange) for c, f in by["exchange_id"].items()}
        | {c: row({}, c, new_by_exchange) for c in new_by_exchange if c not in by["exchange_id"]},
        "by_sector": {c: row(f, c, new_by_sector) for c, f in by["sector"].items()}
        | {c: row({}, c, new_by_sector) for c in new_by_sector if c not in by["sector"]},
    }


def sql_metering(store: ChdbStore, period: dict[str, Any], as_of_us: int) -> dict[str, Any]:
    """The API's metering for a period, from `usage FINAL`."""
    days = DateRange(datetime.fromisoformat(period["from"]).date(), datetime.fromisoformat(period["to"]).date())
    rows = store.rows(
        "SELECT toString(exchange_id) AS code, count() AS records, sum(calls) AS calls, sum(bytes) AS bytes "
        "FROM datamarket.usage FINAL "
        f"WHERE occurred_at >= fromUnixTimestamp64Micro(toInt64({days.span.start_us}), 'UTC') "
        f"AND occurred_at < fromUnixTimestamp64Micro(toInt64({days.span.end_us}), 'UTC') "
        f"AND occurred_at <= fromUnixTimestamp64Micro(toInt64({as_of_us}), 'UTC') GROUP BY code ORDER BY code"
    )
    return {
        "records": sum(int(r["records"]) for r in rows),
        "calls": sum(int(r["calls"]) for r in rows),
        "bytes": sum(int(r["bytes"]) for r in rows),
        "by_exchange": {r["code"]: {"calls": int(r["calls"]), "bytes": int(r["bytes"])} for r in rows},
    }


def api_figures(answer: dict[str, Any]) -> dict[str, Any]:
    """The same figures from the API's answer (the lines of codes with nothing in them left out)."""
    keys = ("trades", "traded_amount", "on_exchange_amount", "high_quality_amount", "new_products")

    def lines(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {r["code"]: {k: r[k] for k in keys} for r in rows if r["trades"] or r["new_products"]}

    return {
        **{k: answer[k] for k in keys},
        "new_participants": answer["new_participants"],
        "by_exchange": lines(answer["by_exchange"]),
        "by_sector": lines(answer["by_sector"]),
    }


def test_every_figure_of_a_period_its_previous_and_a_year_ago_equals_sql_over_the_raw_tables(store: ChdbStore) -> None:
    # The rollups answer up to 08:00 on the 21st (the recent trade at 09:30 is not flushed yet), raw rows after.
    until = snapshot(store, allowed_lateness_s=300).rollups_until_us
    assert until == int(datetime.fromisoformat("2026-11-21T08:00:00+08:00").timestamp()) * 1_000_000
    answer = plain(period_view(store, "2026-11-19", "2026-11-21", allowed_lateness_s=300))
    as_of = answer["as_of_us"]
    assert answer["as_of"] == "2026-11-21T10:00:00.000+08:00"
    assert answer["period"] == {"from": "2026-11-19", "to": "2026-11-21", "days": 3}
    assert answer["previous"]["period"] == {"from": "2026-11-16", "to": "2026-11-18", "days": 3}
    assert answer["year_ago"]["period"] == {"from": "2025-11-19", "to": "2025-11-21", "days": 3}
    for section in (answer, answer["previous"], answer["year_ago"]):
        assert api_figures(section) == sql_figures(store, section["period"], as_of), section["period"]
    assert answer["metering"] == sql_metering(store, answer["period"], as_of)
    # The data is there in each of them, so the comparison compares something.
    assert (answer["trades"], answer["previous"]["trades"], answer["year_ago"]["trades"]) == (10, 2, 2)
    assert (answer["metering"]["records"], answer["metering"]["calls"]) == (7, 25)  # rolled up, late and recent
    assert answer["traded_amount"] == "862.10"  # the late trades among them
    assert (answer["new_products"], answer["new_participants"]) == (2, 9)
    codes = [row["code"] for row in answer["by_exchange"]]
    assert codes[:3] == ["SHDEX", "SZDEX", "BJIDEX"] and {"CSJDP", "DYDEC"} <= set(codes)  # zeros included
    assert all(row["traded_amount"] == "0.00" for row in answer["by_exchange"][3:])


@pytest.mark.parametrize("table", ["trades", "usage"])
def test_the_feeds_count_the_events_the_raw_table_holds(store: ChdbStore, table: str) -> None:
    """Trades and usage counted from `console_1d` for the rolled-up days, raw after them and the late ones raw: per
    exchange, what the table's FINAL holds, with its latest event time and arrival."""
    snap = snapshot(store, allowed_lateness_s=300)
    assert snap.rollups_until_us > int(datetime.fromisoformat("2026-11-20T00:00:00+08:00").timestamp()) * 1_000_000
    counted = {r["exchange_id"]: r for r in feed_events(store, snap) if r["type"] == table}
    raw = store.rows(
        "SELECT toString(exchange_id) AS exchange_id, count() AS events, sum(late) AS late, "
        "toUnixTimestamp64Micro(max(occurred_at)) AS last_us, toUnixTimestamp64Milli(max(ingested_at)) AS arrived_ms "
        f"FROM datamarket.{table} FINAL GROUP BY exchange_id"
    )
    figures = ("events", "late", "last_us", "arrived_ms")
    expected = {r["exchange_id"]: {"exchange_id": r["exchange_id"], "type": table} for r in raw}
    for r in raw:
        expected[r["exchange_id"]].update({k: int(r[k]) for k in figures})
    assert counted == expected
    assert sum(r["late"] for r in counted.values()) >= 2  # the late events of the history and the recent ones
    rolled = store.rows(f"SELECT sum({ROLLED_UP_EVENTS[table]}) AS n FROM datamarket.console_1d FINAL")[0]
    assert int(rolled["n"]) > 0  # so the rolled-up days are read from it


def test_a_first_sighting_stored_after_the_feed_moves_its_party_to_the_earlier_day(store: ChdbStore) -> None:
    """Rows stored since `first_seen` was fed: a party already fed seen earlier now leaves its fed day for the
    earlier one, a party never fed counts on its own day, one seen later again stays where it was, one fed before
    the days and seen in them again counts in none. (Late trades of January 2024, far from the other tests' days and
    rollups; only these are fed.)"""
    fed = [
        ("2024-01-10 10:00:00", "SHDEX", "P1", "X1", "XS", "1.00", "on_exchange", "healthcare", 1, 1),
        ("2024-01-11 09:00:00", "SHDEX", "P1", "X2", "XS", "1.00", "on_exchange", "healthcare", 1, 1),
        ("2024-01-05 09:00:00", "SHDEX", "P1", "X4", "Y4", "1.00", "on_exchange", "healthcare", 1, 1),
    ]
    trades(store, fed, 500, None)
    these = first_seen_rows("datamarket", "event_id IN ('T500', 'T501', 'T502')")
    store.command(
        "INSERT INTO datamarket.first_seen SELECT kind, id, exchange_id, min(first), max(fed_through) "
        f"FROM ({these}) GROUP BY kind, id, exchange_id"
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    stored = [
        ("2024-01-09 10:00:00", "SHDEX", "P1", "X2", "XS", "1.00", "on_exchange", "healthcare", 1, 1),
        ("2024-01-11 09:30:00", "SHDEX", "P1", "X3", "XS", "1.00", "on_exchange", "healthcare", 1, 1),
        ("2024-01-11 09:40:00", "SHDEX", "P1", "X1", "XS", "1.00", "on_exchange", "healthcare", 1, 1),
        ("2024-01-10 12:00:00", "SHDEX", "P1", "X4", "XS", "1.00", "on_exchange", "healthcare", 1, 1),  # seen the 5th
    ]
    trades(store, stored, 510, now)
    days = [DateRange(datetime(2024, 1, d).date(), datetime(2024, 1, d).date()).span for d in (9, 10, 11)]
    counted = first_seen_counts(store, snapshot(store, allowed_lateness_s=300), days)
    assert [c["participants"] for c in counted] == [2, 1, 1]  # X2, XS (its seller) the 9th; X1 the 10th; X3 the 11th


def test_the_trend_has_every_bucket_up_to_as_of_and_adds_up_to_the_period(store: ChdbStore) -> None:
    answer = plain(period_view(store, "2026-11-19", "2026-11-21", allowed_lateness_s=300))
    trend = answer["trend"]
    assert trend["grain"] == "day"
    assert [p["start"] for p in trend["points"]] == [f"2026-11-{d}T00:00:00+08:00" for d in (19, 20, 21)]
    expected = {
        r["day"]: (int(r["n"]), str(Decimal(r["amount"]).quantize(Decimal("0.01"))))
        for r in store.rows(
            "SELECT toString(toDate(occurred_at, 'Asia/Shanghai')) AS day, count() AS n, toString(sum(amount)) AS "
            "amount FROM datamarket.trades FINAL WHERE occurred_at >= '2026-11-18 16:00:00' GROUP BY day"
        )
    }
    assert {p["start"][:10]: (p["trades"], p["traded_amount"]) for p in trend["points"]} == expected
    hours = plain(period_view(store, "2026-11-21", None, allowed_lateness_s=300))["trend"]
    assert hours["grain"] == "hour" and len(hours["points"]) == 11  # 00:00 to the as_of's 10:00
    assert sum(p["trades"] for p in hours["points"]) == 4
    assert [p["trades"] for p in hours["points"] if p["trades"]] == [1, 1, 1, 1]
    months = plain(period_view(store, "2026-01-15", "2026-11-30", allowed_lateness_s=300))["trend"]
    assert months["grain"] == "month" and months["points"][0]["start"] == "2026-01-15T00:00:00+08:00"
    assert months["points"][-1]["start"] == "2026-11-01T00:00:00+08:00" and len(months["points"]) == 11


def test_a_day_is_the_china_day_of_the_watermark_by_default(store: ChdbStore) -> None:
    answer = plain(period_view(store, None, None, allowed_lateness_s=300))
    assert answer["period"] == {"from": "2026-11-21", "to": "2026-11-21", "days": 1}
    assert api_figures(answer) == sql_figures(store, answer["period"], answer["as_of_us"])
    assert answer["year_ago"]["period"]["from"] == "2025-11-21"
    since = plain(period_view(store, "2026-11-20", None, allowed_lateness_s=300))["period"]
    assert since == {"from": "2026-11-20", "to": "2026-11-21", "days": 2}


@pytest.fixture(scope="module")
def empty_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    from tests.support.stack import stack_settings

    workdir = tmp_path_factory.mktemp("empty")
    with EmbeddedStack(stack_settings(workdir), workdir / "stack") as stack:
        yield stack


def get(stack: EmbeddedStack, query: str) -> tuple[int, dict[str, Any]]:
    address = f"http://{stack.settings.web_host}:{stack.settings.web_port}/api/console/market{query}"
    try:
        with urllib.request.urlopen(address, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_api_refuses_bad_ranges_and_answers_zeros_on_an_empty_store(empty_stack: EmbeddedStack) -> None:
    for query, says in (
        ("?from=2026-13-01&to=2026-12-31", "YYYY-MM-DD"),
        ("?from=21/11/2026", "YYYY-MM-DD"),
        ("?from=2026-11-22&to=2026-11-21", "after"),
        ("?from=2023-01-01&to=2026-01-01", "3 years"),
    ):
        status, body = get(empty_stack, query)
        assert status == 400 and says in body["error"], (query, body)
    status, body = get(empty_stack, "?from=2023-01-01&to=2025-12-31")
    assert status == 200 and body["period"]["days"] == 1096
    assert body["as_of"] is None and body["as_of_us"] is None
    assert (body["traded_amount"], body["trades"], body["new_products"], body["new_participants"]) == ("0.00", 0, 0, 0)
    assert body["trend"]["points"] == [] and body["previous"]["traded_amount"] == "0.00"
    assert all(row["traded_amount"] == "0.00" for row in body["by_exchange"]) and len(body["by_exchange"]) > 5


def test_alerts_carry_their_event_time_apart_from_their_detection_wall_time(store: ChdbStore) -> None:
    store.command(
        "INSERT INTO datamarket.alerts (schema, alert_id, kind, severity, exchange_id, product_id, parties, "
        "event_ids, score, window_start, window_end, detected_at, dedup_key, message, message_zh) VALUES "
        f"('v1', 'A1', 'price_outlier', 'high', 'SHDEX', 'P1', [], [], 1.0, NULL, '{utc('2026-11-21 09:30:00')}', "
        f"'2026-12-01 00:00:00.123', 'k1', 'm', 'm'), ('v1', 'A2', 'volume_spike', 'low', 'SHDEX', NULL, [], [], 1.0, "
        f"'{utc('2026-11-21 09:00:00')}', '{utc('2026-11-21 09:01:00')}', '2026-12-01 00:00:01', 'k2', 'm', 'm')"
    )
    alerts = {a["dedup_key"]: a for a in alerts_view(store, AlertFilter(), 10)["alerts"]}
    minute = int(datetime.fromisoformat("2026-11-21T09:01:00+08:00").timestamp() * 1000)
    assert alerts["k2"]["event_time_ms"] == minute and alerts["k2"]["detected_wall_ms"] == 1_796_083_201_000
    assert alerts["k1"]["event_time_ms"] == minute + 29 * 60_000  # no window start: the end
    assert alerts["k1"]["detected_wall_ms"] == alerts["k1"]["detected_ms"] == 1_796_083_200_123


def test_the_readme_statements_say_what_the_api_says(store: ChdbStore) -> None:
    """Last here: it feeds `first_seen` the rows stored since, as the next window flush would."""
    record_first_seen(store)
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    statements = re.findall(r'^\.venv/bin/dmm sql "(.*2026-11-21.*)"$', readme, re.MULTILINE)
    assert len(statements) == 3
    said: dict[str, Any] = {}
    for statement in statements:
        said.update(store.rows(guard_select(statement, "datamarket"))[0])
    answer = plain(period_view(store, "2026-11-21", "2026-11-21", allowed_lateness_s=300))
    assert {key: Decimal(str(value)) for key, value in said.items()} == {key: Decimal(str(answer[key])) for key in said}
    assert answer["trades"] == 4 and answer["new_products"] == 1
