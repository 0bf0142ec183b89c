"""The console's public data delivered (`console_queries.public_supply`): from `public_1mo` where it holds whole months
as their days are, `public_1d` where it holds whole days for good, the rest raw, it equals its definition on the raw
rows to the fen, on a seeded market in a real embedded store (a store per test: chdb opens one path at a time, so not
beside `test_console_queries`'s)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from models.clock import CHINA_STANDARD_TIME
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.store import ChdbStore
from sinks.clickhouse.synthetic import build_rollups
from sinks.clickhouse.windows import recompute_console_days_sql, recompute_public_days_sql
from tests.sinks.test_console_feed_counts import Recorded
from tests.sinks.test_console_queries import LISTING, TRADE, US, insert

pytestmark = pytest.mark.integration


MARKET_START = datetime(2026, 11, 9, 16, tzinfo=UTC)  # 2026-11-10 00:00 CST
MARKET_DAYS = 4  # the fourth China day partial: the snapshot's rollups end in it
MONTHS_START = datetime(2026, 8, 28, 16, tzinfo=UTC)  # 2026-08-29 00:00 CST: three days of August, all September,
MONTHS_DAYS = 36  # and October up to its third day (partial)
SEPTEMBER = date(2026, 9, 1)
PRICING = {"P0": "free", "P1": "free", "P2": "conditional_free", "P3": "paid", "P4": "conditional_free"}  # P5: none


def raw_public_supply(store: ChdbStore, snap: q.Snapshot, span: q.Span) -> dict[str, dict[str, Any]]:
    """The published definition, as `public_supply` read it before `public_1d`: every trade and usage record of a
    public product in the span from `trades FINAL` and `usage FINAL`, per the pricing of its latest listing, bounded
    by the snapshot."""
    db = store.database
    pricing = (
        f"SELECT product_id, toString(ifNull(argMax(pricing, occurred_at), 'unknown')) AS pricing "
        f"FROM {db}.listings FINAL WHERE action = 'list' GROUP BY product_id"
    )
    rows = store.rows(
        f"SELECT if(p.pricing = '', 'unknown', p.pricing) AS pricing, sum(d.trades) AS trades, "
        f"toString(sum(d.amount)) AS amount, sum(d.calls) AS calls FROM ("
        f"SELECT product_id, 1 AS trades, amount, toUInt64(0) AS calls FROM {db}.trades FINAL "
        f"WHERE source = 'public' AND {span.where()} AND {snap.raw()} "
        f"UNION ALL SELECT product_id, 0, toDecimal128(0, 2), calls FROM {db}.usage FINAL "
        f"WHERE source = 'public' AND {span.where()} AND {snap.raw()}) AS d "
        f"LEFT JOIN ({pricing}) AS p ON d.product_id = p.product_id GROUP BY pricing"
    )
    return {
        r["pricing"]: {"trades": int(r["trades"]), "amount": q.money(r["amount"]), "calls": int(r["calls"])}
        for r in rows
    }


def china_day(n: int, start: datetime = MARKET_START) -> q.Span:
    """The n-th China day of the seeded market (from 0)."""
    first = int(start.timestamp()) * US + n * 86_400 * US
    return q.Span(first, first + 86_400 * US)


@pytest.fixture
def market(tmp_path: Path) -> Iterator[ChdbStore]:
    """Three and most of a fourth China day of trades and usage (a third public), some late, stored when they
    occurred, every rollup built as the worker builds them; products listed with their pricing."""
    opened = seeded(tmp_path, MARKET_START, MARKET_DAYS)
    yield opened
    opened.close()


@pytest.fixture
def months(tmp_path: Path) -> Iterator[ChdbStore]:
    """The same market over 35 China days and most of a 36th: the end of August, all September, October begun."""
    opened = seeded(tmp_path, MONTHS_START, MONTHS_DAYS)
    yield opened
    opened.close()


def seeded(tmp_path: Path, start: datetime, days: int) -> ChdbStore:
    """`days` China days from `start` (the last one to 20:00) of 6000 trades and 3000 usage records."""
    opened = ChdbStore(tmp_path / "chdb")
    opened.apply_schema()
    start_s, span_s = int(start.timestamp()), (days - 1) * 86_400 + 20 * 3_600
    occurred = f"toDateTime64({start_s} + intDiv(number * {span_s}, 6000), 6, 'UTC')"
    common = (
        f"'SHDEX', concat('E', toString(number)), {occurred}, concat('P', toString(cityHash64(number, 1) % 6))"
    )
    stored = f"toDateTime64({start_s} + intDiv(number * {span_s}, 6000), 3, 'UTC')"
    opened.command(
        "INSERT INTO datamarket.trades (exchange_id, event_id, occurred_at, product_id, trade_id, buyer_id, "
        "seller_id, price, quantity, amount, currency, venue, purpose, sector, category, source, high_quality, late, "
        f"ingested_at) SELECT {common}, concat('T', toString(number)), 'B1', 'S1', "
        "toDecimal128(1 + cityHash64(number, 2) % 100000, 2) / 100 AS p, 1, p, 'CNY', 'on_exchange', 'research', "
        "'transportation', 'dataset', ['public', 'enterprise', 'personal'][1 + cityHash64(number, 3) % 3], 0, "
        f"toUInt8(cityHash64(number, 4) % 10 = 0), {stored} FROM numbers(6000)"
    )
    opened.command(
        "INSERT INTO datamarket.usage (exchange_id, event_id, occurred_at, product_id, buyer_id, calls, bytes, sector, "
        f"category, source, high_quality, late, ingested_at) SELECT {common}, 'B1', 1 + cityHash64(number, 5) % 50, "
        "100, 'transportation', 'api', ['public', 'enterprise'][1 + cityHash64(number, 6) % 2], 0, "
        f"toUInt8(cityHash64(number, 7) % 10 = 0), {stored} FROM numbers(3000)"
    )
    insert(
        opened,
        "listings",
        LISTING,
        *(
            ("SHDEX", f"L{product}", "2026-08-01 00:00:00", "list", product, "S1", "public", "transportation", pricing,
             0, [])
            for product, pricing in PRICING.items()
        ),
    )
    build_rollups(opened, start, days)
    return opened


def test_public_supply_from_public_1d_is_the_raw_definition_to_the_fen(market: ChdbStore) -> None:
    snap = q.snapshot(market, allowed_lateness_s=300)
    whole, partial = q.Span(china_day(0).start_us, china_day(3).start_us), china_day(3)
    assert q._china_midnight_us(snap.rollups_until_us) == partial.start_us  # the fourth day is read raw
    assert len(q._public_held(market, whole)[0]) == 3, "public_1d does not hold the whole days"
    late = market.rows("SELECT count() AS n FROM datamarket.trades WHERE late = 1 AND source = 'public'")[0]["n"]
    assert int(late) > 0
    for span in (q.Span(whole.start_us, partial.end_us), whole, partial, china_day(1)):
        supply = q.public_supply(market, snap, span)
        assert supply == raw_public_supply(market, snap, span), span
        assert supply.keys() == {"free", "conditional_free", "paid", "unknown"}


def test_public_supply_follows_a_pricing_changed_after_the_trades(market: ChdbStore) -> None:
    span = q.Span(china_day(0).start_us, china_day(3).end_us)
    before = q.public_supply(market, q.snapshot(market, allowed_lateness_s=300), span)
    insert(market, "listings", LISTING, ("SHDEX", "L-P0-again", at_us(china_day(3).start_us), "list", "P0", "S1",
                                         "public", "transportation", "paid", 0, []))
    snap = q.snapshot(market, allowed_lateness_s=300)
    after = q.public_supply(market, snap, span)
    assert after == raw_public_supply(market, snap, span)
    assert after["paid"]["trades"] > before["paid"]["trades"] and after["free"]["trades"] < before["free"]["trades"]


def flushed_again_with_a_trade(market: ChdbStore) -> list[date]:
    """A public trade of P1 (free) on the market's second China day, stored on time as the day ended, after its
    rollups were built, and that day's console_1d rebuilt as a flush does: the day's date."""
    day = china_day(1)
    insert(market, "trades", TRADE + ", ingested_at", ("SHDEX", "T-more", at_us(day.start_us + 3_600 * US), "T-more",
                                                       "P1", "B1", "S1", "7.77", 1, "7.77", "on_exchange",
                                                       "transportation", "public", 0, 0, at_us(day.end_us)))
    dates = [(MARKET_START + timedelta(days=1)).astimezone(CHINA_STANDARD_TIME).date()]
    market.command(recompute_console_days_sql("datamarket", dates, datetime.now(UTC)))
    return dates


def test_a_day_flushed_again_since_public_1d_was_rebuilt_is_read_raw(market: ChdbStore) -> None:
    """A public trade stored (long ago, on time) after its day's public_1d rows were rebuilt, then counted by a flush
    of its day's console_1d: the day is read raw until public_1d is rebuilt."""
    flushed_again_with_a_trade(market)
    snap = q.snapshot(market, allowed_lateness_s=300)
    span = q.Span(china_day(0).start_us, china_day(3).end_us)
    assert len(q._public_held(market, q.Span(span.start_us, china_day(3).start_us))[0]) == 2
    assert q.public_supply(market, snap, span) == raw_public_supply(market, snap, span)


def held_read(reader: Recorded, span: q.Span) -> tuple[dict[str, dict[str, Any]], bool]:
    """Public data delivered in the span, and whether `public_1d`'s rows were read for it (not only its marks)."""
    reader.statements.clear()
    supply = q.public_supply(reader, q.snapshot(reader, allowed_lateness_s=300), span)
    return supply, any("public_1d FINAL" in sql for sql in reader.statements)


def test_the_held_days_are_read_again_only_when_their_marks_or_the_listings_change(market: ChdbStore) -> None:
    """A day's rollup rebuilt with a trade it lacked: the same days held as before, each but one with the same mark."""
    reader = Recorded(market)
    span = q.Span(china_day(0).start_us, china_day(3).end_us)
    supply, read = held_read(reader, span)
    assert read and supply == raw_public_supply(market, q.snapshot(market, allowed_lateness_s=300), span)
    assert held_read(reader, span) == (supply, False)  # nothing changed: the held days' figures kept
    dates = flushed_again_with_a_trade(market)
    market.command(recompute_public_days_sql("datamarket", dates, datetime.now(UTC)))  # held again, a new mark
    rebuilt, read = held_read(reader, span)
    assert read and rebuilt == raw_public_supply(market, q.snapshot(market, allowed_lateness_s=300), span)
    assert rebuilt["free"]["trades"] == supply["free"]["trades"] + 1  # P1's pricing
    insert(market, "listings", LISTING, ("SHDEX", "L-P1-again", at_us(china_day(3).start_us), "list", "P1", "S1",
                                         "public", "transportation", "paid", 0, []))
    repriced, read = held_read(reader, span)
    assert read and repriced == raw_public_supply(market, q.snapshot(market, allowed_lateness_s=300), span)
    assert repriced["paid"]["trades"] > rebuilt["paid"]["trades"]


def test_public_supply_in_a_store_created_before_public_1d(market: ChdbStore) -> None:
    market.command("TRUNCATE TABLE datamarket.public_1d")
    snap = q.snapshot(market, allowed_lateness_s=300)
    span = q.Span(china_day(0).start_us, china_day(3).end_us)
    assert q.public_supply(market, snap, span) == raw_public_supply(market, snap, span)


def held_months(store: ChdbStore, span: q.Span) -> set[date]:
    """The months `public_supply` reads from `public_1mo` for the span's rolled part."""
    return set(q._public_held(store, span)[1])


def test_public_supply_reads_whole_months_from_public_1mo_to_the_fen(months: ChdbStore) -> None:
    snap = q.snapshot(months, allowed_lateness_s=300)
    last = china_day(MONTHS_DAYS - 1, MONTHS_START)
    assert q._china_midnight_us(snap.rollups_until_us) == last.start_us  # October's third day is read raw
    september = q.Span(china_day(3, MONTHS_START).start_us, china_day(33, MONTHS_START).start_us)
    everything = q.Span(china_day(0, MONTHS_START).start_us, last.end_us)
    assert held_months(months, september) == held_months(months, everything) == {SEPTEMBER}
    part = q.Span(china_day(5, MONTHS_START).start_us, last.end_us)  # from September's third day
    assert held_months(months, part) == set()
    for span in (everything, september, part, q.Span(september.start_us, last.start_us)):
        supply = q.public_supply(months, snap, span)
        assert supply == raw_public_supply(months, snap, span), span
        assert supply.keys() == {"free", "conditional_free", "paid", "unknown"}


def test_a_month_with_a_day_rebuilt_after_it_is_read_from_its_days(months: ChdbStore) -> None:
    """A public trade stored (long ago, on time) after September's public_1mo was built, counted by a flush of its
    day: the day is read raw while public_1d is behind, then from public_1d once it is rebuilt, and the month from
    its days (not public_1mo, which lacks the trade) until it is rebuilt too."""
    september = q.Span(china_day(3, MONTHS_START).start_us, china_day(33, MONTHS_START).start_us)
    before = q.public_supply(months, q.snapshot(months, allowed_lateness_s=300), september)
    day = china_day(12, MONTHS_START)  # 2026-09-10
    insert(months, "trades", TRADE + ", ingested_at", ("SHDEX", "T-more", at_us(day.start_us + 3_600 * US), "T-more",
                                                       "P1", "B1", "S1", "7.77", 1, "7.77", "on_exchange",
                                                       "transportation", "public", 0, 0, at_us(day.end_us)))
    dates = [date(2026, 9, 10)]
    months.command(recompute_console_days_sql("datamarket", dates, datetime.now(UTC)))
    for rebuilt in (False, True):  # public_1d behind the day's flush, then rebuilt after public_1mo
        if rebuilt:
            months.command(recompute_public_days_sql("datamarket", dates, datetime.now(UTC)))
        snap = q.snapshot(months, allowed_lateness_s=300)
        supply = q.public_supply(months, snap, september)
        assert supply == raw_public_supply(months, snap, september), rebuilt
        assert supply["free"]["trades"] == before["free"]["trades"] + 1  # P1's pricing
        assert len(q._public_held(months, september)[0]) == (30 if rebuilt else 29)
        assert held_months(months, september) == set()


def at_us(us: int) -> str:
    """An occurred_at literal at `us` (UTC text)."""
    return datetime.fromtimestamp(us / US, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def public_1d_parts(store: ChdbStore) -> set[str]:
    rows = store.rows("SELECT name FROM system.parts WHERE database = 'datamarket' AND table = 'public_1d' AND active")
    return {row["name"] for row in rows}


def test_the_rollups_marks_are_read_from_the_parts_written_since_only(market: ChdbStore) -> None:
    """Each part's marks are learnt once: a refresh of an unchanged store reads nothing of `public_1d`, one after a
    rebuild reads the marks of the rebuild's part alone."""
    reader = Recorded(market)
    span = q.Span(china_day(0).start_us, china_day(3).end_us)
    q.public_supply(reader, q.snapshot(reader, allowed_lateness_s=300), span)
    reader.statements.clear()
    q.public_supply(reader, q.snapshot(reader, allowed_lateness_s=300), span)
    assert not [sql for sql in reader.statements if "datamarket.public_1d" in sql]
    before = public_1d_parts(market)
    dates = flushed_again_with_a_trade(market)
    market.command(recompute_public_days_sql("datamarket", dates, datetime.now(UTC)))
    written = public_1d_parts(market) - before
    reader.statements.clear()
    supply = q.public_supply(reader, q.snapshot(reader, allowed_lateness_s=300), span)
    assert supply == raw_public_supply(market, q.snapshot(market, allowed_lateness_s=300), span)
    [marks] = [sql for sql in reader.statements if "datamarket.public_1d WHERE _part IN" in sql]
    named = set(marks.split("public_1d WHERE _part IN (")[1].split(")")[0].replace("'", "").split(", "))
    assert written and named == written
