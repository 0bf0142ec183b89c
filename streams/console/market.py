"""The Market view (市场): what the seeds ask, in event time, for any range of China days beside the period
before it and the same days a year earlier (`period_view`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from models.clock import CHINA_STANDARD_TIME, EPOCH
from models.registry import Exchange, Sector, exchanges, sectors
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.console_queries import Grain, Reader
from streams.console.encode import share
from streams.console.periods import DateRange, china_midnight_us, date_range, trend_buckets

FREE_PRICING = ("free", "conditional_free")
SIDE_BY_SIDE = 4  # the period's statements after the snapshot: figures, first sightings, catalogue, public supply
ZERO = Decimal("0.00")


def _public(supply: dict[str, dict[str, Any]], catalogue: dict[str, int]) -> dict[str, Any]:
    """Public data supplied free or conditionally free: in the catalogue now (public-data products listed, per
    pricing), and delivered in the span (`supply`, per pricing, as of the snapshot)."""
    free_products = sum(catalogue.get(p, 0) for p in FREE_PRICING)
    free_trades = sum(supply[p]["trades"] for p in FREE_PRICING if p in supply)
    return {
        "catalogue": catalogue,
        "catalogue_products": sum(catalogue.values()),
        "free_products": free_products,
        "free_products_share": share(free_products, sum(catalogue.values())),
        "supply": supply,
        "free_deliveries": free_trades,
        "free_deliveries_share": share(free_trades, sum(row["trades"] for row in supply.values())),
        "free_calls": sum(supply[p]["calls"] for p in FREE_PRICING if p in supply),
    }


def period_view(
    store: Reader, first: str | None, last: str | None, allowed_lateness_s: float, now_us: int | None = None
) -> dict[str, Any]:
    """The period API's answer (docs: `GET /api/console/market?from=&to=`): the China days `first` to `last` beside
    the days just before and the same days a year earlier, every figure read as of one snapshot (see
    `console_queries.Snapshot`). Raises `BadRange` for a range it refuses (blocking: run it in a thread)."""
    snap = q.snapshot(store, allowed_lateness_s)
    period = date_range(first, last, snap.as_of_us, time.time_ns() // 1000 if now_us is None else now_us)
    compared = (period, period.previous(), period.year_ago())
    grain = period.grain()
    # The statements below depend on the snapshot only, not on one another: run side by side (a store's `reads`
    # open a connection each), they overlap where the store has cores to spare.
    with ThreadPoolExecutor(SIDE_BY_SIDE, thread_name_prefix="period-read") as pool:
        figures_read = pool.submit(
            q.period_figures, store, snap, [(p.span, grain if p is period else None) for p in compared]
        )
        firsts_read = pool.submit(q.first_seen_counts, store, snap, [p.span for p in compared])
        catalogue_read = pool.submit(q.catalogue, store)
        supply_read = pool.submit(q.public_supply, store, snap, period.span)
        figures, firsts, catalogue = figures_read.result(), firsts_read.result(), catalogue_read.result()
        supply = supply_read.result()
    current, previous, year_ago = (_period_figures(p, t, f) for p, t, f in zip(compared, figures, firsts, strict=True))
    as_of = snap.as_of_us
    points = [] if as_of is None else _trend_points(period, grain, figures[0]["trend"], as_of)
    return {
        "as_of": None if as_of is None else cst_text(as_of, "milliseconds"),
        "as_of_us": as_of,
        **current,
        "trend": {"grain": grain, "points": points},
        "previous": previous,
        "year_ago": year_ago,
        # The catalogue's state (recognition, public data listed now) beside the snapshot, not compared with other
        # periods; public data delivered and the period's metering are read as of the snapshot.
        "recognition": {"products": catalogue.recognized_products, "pairs": catalogue.pairs},
        "public": _public(supply, catalogue.public),
        "metering": _metering(figures[0]),
    }


def _metering(figures: dict[str, Any]) -> dict[str, Any]:
    """Usage metered in the period (events, calls, bytes), in total and per exchange that metered any."""
    totals = figures["totals"]
    return {
        "records": totals["usage_records"],
        "calls": totals["usage_calls"],
        "bytes": totals["usage_bytes"],
        "by_exchange": {
            code: {"calls": row["usage_calls"], "bytes": row["usage_bytes"]}
            for code, row in sorted(figures["by"].get("exchange_id", {}).items())
            if row["usage_records"]
        },
    }


def cst_text(at_us: int, timespec: str = "seconds") -> str:
    """An instant as ISO 8601 in China Standard Time (`…+08:00`)."""
    return (EPOCH + timedelta(microseconds=at_us)).astimezone(CHINA_STANDARD_TIME).isoformat(timespec=timespec)


def _period_figures(period: DateRange, figures: dict[str, Any], firsts: dict[str, Any]) -> dict[str, Any]:
    totals = figures["totals"]
    return {
        "period": period.as_dict(),
        "traded_amount": totals["amount"],
        "trades": totals["trades"],
        "new_products": firsts["products"],
        "new_participants": firsts["participants"],
        "on_exchange_amount": totals["on_exchange"],
        "high_quality_amount": totals["high_quality"],
        "by_exchange": _breakdown(
            exchanges(), figures["by"].get("exchange_id", {}), firsts["by"].get("exchange_id", {})
        ),
        "by_sector": _breakdown(sectors(), figures["by"].get("sector", {}), firsts["by"].get("sector", {})),
    }


def _breakdown(
    registry: Mapping[str, Exchange | Sector], traded: dict[str, dict[str, Any]], listed: dict[str, int]
) -> list[dict[str, Any]]:
    """Every registered code (and any other that traded or listed, e.g. `unknown`), largest traded amount first."""
    rows = []
    for code in sorted(
        set(registry) | {c for c, t in traded.items() if t["trades"]} | {c for c, n in listed.items() if n}
    ):
        known, figures = registry.get(code), traded.get(code, {})
        rows.append(
            {
                "code": code,
                "name_zh": known.name_zh if known else code,
                "name_en": known.name_en if known else code,
                "trades": figures.get("trades", 0),
                "traded_amount": figures.get("amount", ZERO),
                "on_exchange_amount": figures.get("on_exchange", ZERO),
                "high_quality_amount": figures.get("high_quality", ZERO),
                "new_products": listed.get(code, 0),
            }
        )
    rows.sort(key=lambda row: (-row["traded_amount"], row["code"]))
    return rows


def _trend_points(period: DateRange, grain: Grain, found: dict[str, Any], as_of_us: int) -> list[dict[str, Any]]:
    """Every bucket of the period up to `as_of_us`, empty ones at zero."""
    by_start = {}
    for key, figures in found.items():
        start = int(key) * 1_000_000 if grain == "hour" else china_midnight_us(date.fromisoformat(key))
        by_start[max(start, period.span.start_us)] = figures
    points = []
    for start in trend_buckets(period, grain, as_of_us):
        figures = by_start.get(start, {})
        points.append(
            {
                "start": cst_text(start),
                "t_ms": start // 1000,
                "trades": figures.get("trades", 0),
                "traded_amount": figures.get("amount", ZERO),
            }
        )
    return points
