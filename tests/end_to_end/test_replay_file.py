"""Events in, rows out: replay a file with every kind of bad line through the real stack."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dmm.producer import EventProducer
from dmm.query import query_rows, wait_until_drained
from dmm.replay import replay_file
from dmm.stack import EmbeddedStack
from tests.support.market_file import Expected, build

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replayed(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Expected]:
    path = tmp_path_factory.mktemp("replay") / "market.jsonl"
    expected = build(path)
    with EventProducer(stack.settings.kafka) as producer:
        assert replay_file(path, producer) == expected.lines
    wait_until_drained(stack.settings, timeout=300)
    return path, expected


def one(stack: EmbeddedStack, sql: str) -> dict:
    rows = query_rows(stack.settings, sql)
    assert len(rows) == 1, rows
    return rows[0]


def counts(stack: EmbeddedStack) -> dict[str, int]:
    tables = ["listings", "trades", "usage", "heartbeats", "rejected_events", "duplicate_events", "alerts"]
    row = one(stack, "SELECT " + ", ".join(f"(SELECT count() FROM datamarket.{t} FINAL) AS {t}" for t in tables))
    return {k: int(v) for k, v in row.items()}


def test_every_line_is_accounted_for(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    _, expected = replayed
    n = counts(stack)
    accepted = n["listings"] + n["trades"] + n["usage"] + n["heartbeats"]
    assert accepted == expected.accepted
    assert n["duplicate_events"] == expected.duplicates
    assert n["rejected_events"] == sum(expected.rejected.values())
    assert accepted + n["duplicate_events"] + n["rejected_events"] == expected.lines


def test_rejections_carry_the_contract_reasons(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    _, expected = replayed
    rows = query_rows(stack.settings, "SELECT reason, count() AS n FROM datamarket.rejected_events GROUP BY reason")
    assert {r["reason"]: int(r["n"]) for r in rows} == dict(expected.rejected)
    details = query_rows(stack.settings, "SELECT detail FROM datamarket.rejected_events WHERE reason = 'invalid'")
    named = " ".join(r["detail"] for r in details)
    for field_name in ("quantity", "occurred_at", "price", "venue"):
        assert field_name in named


def test_traded_amounts_match_the_file_to_the_fen(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    _, expected = replayed
    by_exchange = query_rows(
        stack.settings, "SELECT exchange_id, toString(sum(amount)) AS s FROM datamarket.trades GROUP BY exchange_id"
    )
    assert {r["exchange_id"]: Decimal(r["s"]) for r in by_exchange} == dict(expected.amount_by_exchange)
    by_sector = query_rows(
        stack.settings, "SELECT sector, toString(sum(amount)) AS s FROM datamarket.trades GROUP BY sector"
    )
    assert {r["sector"]: Decimal(r["s"]) for r in by_sector} == dict(expected.amount_by_sector)


def test_late_events_are_stored_and_flagged(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    rows = query_rows(stack.settings, "SELECT event_id, late FROM datamarket.trades WHERE event_id LIKE 'LATE-%'")
    assert {r["event_id"]: int(r["late"]) for r in rows} == {"LATE-OK": 0, "LATE-FAR": 1}


def test_minute_aggregates_sum_to_the_trade_table(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    agg = one(
        stack,
        "SELECT toString(sum(traded_amount)) AS amount, sum(trades) AS trades, sum(quantity) AS quantity "
        "FROM datamarket.market_1m FINAL",
    )
    raw = one(
        stack,
        "SELECT toString(sum(amount)) AS amount, count() AS trades, sum(quantity) AS quantity "
        "FROM datamarket.trades FINAL WHERE late = 0",
    )
    assert Decimal(agg["amount"]) == Decimal(raw["amount"])
    assert int(agg["trades"]) == int(raw["trades"])
    assert int(agg["quantity"]) == int(raw["quantity"])
    for rollup in ("market_1h", "market_1d"):
        rolled = one(
            stack,
            "SELECT toString(sum(traded_amount)) AS amount, sum(trades) AS trades, sum(quantity) AS quantity "
            f"FROM datamarket.{rollup} FINAL",
        )
        assert (Decimal(rolled["amount"]), int(rolled["trades"]), int(rolled["quantity"])) == (
            Decimal(agg["amount"]), int(agg["trades"]), int(agg["quantity"])
        ), rollup
    late_window = one(
        stack,
        "SELECT count() AS n FROM datamarket.market_1m AS m FINAL "
        "INNER JOIN (SELECT toStartOfMinute(occurred_at) AS w, exchange_id FROM datamarket.trades "
        "WHERE event_id = 'LATE-OK') AS t ON m.window_start = t.w AND m.exchange_id = t.exchange_id "
        "WHERE m.trades > 0",
    )
    assert int(late_window["n"]) >= 1
    usage = one(
        stack,
        "SELECT (SELECT sum(usage_calls) FROM datamarket.market_1m FINAL) AS agg, "
        "(SELECT sum(calls) FROM datamarket.usage FINAL WHERE late = 0) AS raw",
    )
    assert int(usage["agg"]) == int(usage["raw"])


def test_replaying_the_same_file_twice_changes_nothing(stack: EmbeddedStack, replayed: tuple[Path, Expected]) -> None:
    path, expected = replayed
    before = counts(stack)
    amounts = query_rows(stack.settings, "SELECT toString(sum(traded_amount)) AS s FROM datamarket.market_1m FINAL")
    with EventProducer(stack.settings.kafka) as producer:
        replay_file(path, producer)
    wait_until_drained(stack.settings, timeout=300)
    after = counts(stack)
    for table in ("listings", "trades", "usage", "heartbeats", "alerts"):
        assert after[table] == before[table], table
    # Every line arrives again: each valid one is now a duplicate, each bad one is rejected again.
    assert after["duplicate_events"] == before["duplicate_events"] + expected.accepted + expected.duplicates
    assert after["rejected_events"] == 2 * before["rejected_events"]
    windows = "SELECT toString(sum(traded_amount)) AS s FROM datamarket.market_1m FINAL"
    assert query_rows(stack.settings, windows) == amounts
