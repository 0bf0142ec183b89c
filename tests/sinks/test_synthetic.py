"""The query bench's synthetic history (`dmm bench --query-rows`): what the console answers over it is what its raw
rows hold, so the bench times correct answers (trades, metering, catalogue, feeds) and not an empty or half-built
store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.clock import CHINA_STANDARD_TIME
from models.registry import exchanges, sectors
from sinks.clickhouse.console_queries import catalogue
from sinks.clickhouse.first_seen import record_first_seen
from sinks.clickhouse.store import ChdbStore
from sinks.clickhouse.synthetic import (
    HEARTBEAT_EVERY_S,
    PRODUCTS,
    build_rollups,
    insert_heartbeats,
    insert_listings,
    insert_trades,
    insert_usage,
)
from streams.console.encode import plain
from streams.console.feeds import feeds_view
from streams.console.market import period_view

pytestmark = pytest.mark.integration

DAYS = 20


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("synthetic") / "chdb")
    store.apply_schema()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DAYS)
    insert_trades(store, 30_000, start, DAYS, sorted(exchanges()), sorted(sectors()))
    insert_usage(store, 40_000, start, DAYS, sorted(exchanges()), sorted(sectors()))
    insert_listings(store, start, DAYS, sorted(exchanges()), sorted(sectors()))
    insert_heartbeats(store, end, 2, sorted(exchanges()))
    build_rollups(store, start, DAYS)
    record_first_seen(store)
    yield store
    store.close()


def test_the_console_over_the_synthetic_history_is_its_raw_rows(history: ChdbStore) -> None:
    today = datetime.now(CHINA_STANDARD_TIME).date()
    first = today - timedelta(days=DAYS - 2)  # whole China days from the rollups, today raw
    answer = plain(period_view(history, first.isoformat(), today.isoformat(), allowed_lateness_s=300))
    within = (
        f"toDate(occurred_at, 'Asia/Shanghai') >= toDate('{first.isoformat()}') "
        f"AND occurred_at <= fromUnixTimestamp64Micro(toInt64({answer['as_of_us']}), 'UTC')"
    )
    trades = history.rows(
        f"SELECT count() AS n, toString(sum(amount)) AS amount FROM datamarket.trades FINAL WHERE {within}"
    )[0]
    usage = history.rows(
        f"SELECT count() AS n, sum(calls) AS calls, sum(bytes) AS bytes FROM datamarket.usage FINAL WHERE {within}"
    )[0]
    assert int(trades["n"]) > 20_000 and int(usage["n"]) > 30_000
    assert (answer["trades"], Decimal(answer["traded_amount"])) == (int(trades["n"]), Decimal(trades["amount"]))
    metering = answer["metering"]
    assert (metering["records"], metering["calls"], metering["bytes"]) == tuple(
        int(usage[k]) for k in ("n", "calls", "bytes")
    )
    assert sum(answer["public"]["catalogue"].values()) == answer["public"]["catalogue_products"] > PRODUCTS // 4
    assert answer["new_products"] > 0 and answer["recognition"]["products"] > PRODUCTS // 2


def test_the_catalogue_over_the_synthetic_listings_is_their_rows(history: ChdbStore) -> None:
    """One `list` event a product, none delisted: the catalogue read in one pass is what each question asks."""
    found = catalogue(history)
    public = history.rows(
        "SELECT toString(pricing) AS pricing, count() AS n FROM datamarket.listings WHERE source = 'public' "
        "GROUP BY pricing"
    )
    assert found.public == {r["pricing"]: int(r["n"]) for r in public}
    pairs = history.rows(
        "SELECT toString(exchange_id) AS listed_on, toString(recognized_by[1]) AS recognizer, count() AS n "
        "FROM datamarket.listings WHERE recognized_by[1] != exchange_id GROUP BY listed_on, recognizer"
    )
    assert {(p["listed_on"], p["recognized_by"]): p["products"] for p in found.pairs} == {
        (r["listed_on"], r["recognizer"]): int(r["n"]) for r in pairs
    }
    assert found.recognized_products == sum(int(r["n"]) for r in pairs) > PRODUCTS // 2


def test_the_feeds_over_the_synthetic_heartbeats_are_their_rows(history: ChdbStore) -> None:
    """Every exchange sent a heartbeat every `HEARTBEAT_EVERY_S` for the last two days: the feeds count each one and
    show the latest."""
    feeds = {row["code"]: row for row in feeds_view(history, 120)["exchanges"]}
    sent = history.rows(
        "SELECT toString(exchange_id) AS code, count() AS n, toUnixTimestamp64Micro(max(occurred_at)) AS last_us "
        "FROM datamarket.heartbeats FINAL GROUP BY code"
    )
    assert {r["code"] for r in sent} == set(exchanges()) == set(feeds)
    for r in sent:
        assert int(r["n"]) == 2 * 86_400 // HEARTBEAT_EVERY_S
        assert feeds[r["code"]]["by_type"]["heartbeat"] == int(r["n"])
        assert feeds[r["code"]]["last_heartbeat_us"] == int(r["last_us"])
