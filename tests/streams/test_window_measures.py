"""The market window measures are declared once (`sinks.clickhouse.windows.MEASURES`): the tables' Arrow schemas,
the minute and rollup statements and the worker's kept cells all follow it."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from sinks.clickhouse.windows import (
    ADDED_UP,
    CELL,
    MARKET_1D,
    MARKET_1H,
    MARKET_1M,
    MEASURES,
    minute_cells_sql,
    recompute_days_sql,
    recompute_hours_sql,
)
from streams.windows import Cell

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_each_grain_has_the_measures_that_add_up_and_only_a_minute_has_distinct_counts() -> None:
    columns = [measure.column for measure in MEASURES]
    assert MARKET_1M.names == ["window_start", *CELL, *columns, "updated_at"]
    assert MARKET_1H.names == ["window_start", *CELL, *ADDED_UP, "updated_at"]
    assert MARKET_1D.names == ["day", *CELL, *ADDED_UP, "updated_at"]
    assert set(columns) - set(ADDED_UP) == {"buyers", "sellers"}


def test_the_worker_keeps_a_running_total_of_every_measure() -> None:
    kept = {field.name for field in fields(Cell)}
    assert kept == {measure.column for measure in MEASURES}


def test_every_statement_computes_every_measure_of_its_grain() -> None:
    minute = minute_cells_sql("datamarket", [1_795_000_020_000], NOW)
    for measure in MEASURES:
        assert f"{measure.of_events} AS {measure.column}" in minute
    for rollup in (
        recompute_hours_sql("datamarket", [1_795_000_000_000], NOW),
        recompute_days_sql("datamarket", [NOW.date()], NOW),
    ):
        assert [column for column in ADDED_UP if f"sum({column}) AS {column}" in rollup] == list(ADDED_UP)
        assert "buyers" not in rollup and "sellers" not in rollup
