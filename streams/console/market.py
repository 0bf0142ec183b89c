"""The Market view (市场): what the seeds ask, in event time, for today or this hour."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from models.registry import Exchange, Sector, exchanges, sectors
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.store import Store
from streams.console.encode import share
from streams.console.periods import Period, buckets, span_of

FREE_PRICING = ("free", "conditional_free")


def market_view(store: Store, period: Period) -> dict[str, Any]:
    """Everything the Market view shows, read from the store (blocking: run it in a thread)."""
    watermark = q.watermark_us(store)
    if watermark is None:
        return {"watermark_us": None, "period": period}
    span = span_of(period, watermark)
    totals = q.trade_totals(store, span)
    today = totals if period == "day" else q.trade_totals(store, span_of("day", watermark))
    hour = totals if period == "hour" else q.trade_totals(store, span_of("hour", watermark))
    usage = q.usage_by_exchange(store, span)
    return {
        "watermark_us": watermark,
        "period": period,
        "span": {"start_us": span.start_us, "end_us": span.end_us},
        "today": today,
        "hour": hour,
        "totals": totals,
        "shares": {
            "on_exchange": share(totals["on_exchange"], totals["amount"]),
            "off_exchange": share(totals["off_exchange"], totals["amount"]),
            "high_quality": share(totals["high_quality"], totals["amount"]),
        },
        "trend": _trend(store, period, watermark),
        "new_products": q.new_products(store, span),
        "new_participants": q.new_participants(store, span),
        "recognition": {"products": q.recognized_products(store), "pairs": q.recognition_pairs(store)},
        "public": _public(store, span),
        "metering": {
            "records": sum(row["records"] for row in usage),
            "calls": sum(row["calls"] for row in usage),
            "bytes": sum(row["bytes"] for row in usage),
        },
        "exchanges": _exchange_rows(store, span, usage, totals["amount"]),
        "sectors": _sector_rows(store, span, totals["amount"]),
    }


def _trend(store: Store, period: Period, watermark: int) -> dict[str, Any]:
    """One point per hour of the day or minute of the hour up to the watermark, empty ones at zero."""
    step: q.TrendStep = "hour" if period == "day" else "minute"
    found = {point["t_ms"]: point for point in q.trade_trend(store, span_of(period, watermark), step)}
    zero = {"trades": 0, "amount": Decimal("0.00")}
    points = [
        {"t_ms": t, **{k: v for k, v in found.get(t, zero).items() if k != "t_ms"}} for t in buckets(period, watermark)
    ]
    return {"step": step, "points": points}


def _public(store: Store, span: q.Span) -> dict[str, Any]:
    """Public data supplied free or conditionally free: in the catalogue now, and delivered in the span."""
    catalogue = q.public_catalogue(store)
    supply = q.public_supply(store, span)
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


def _dimension_row(
    code: str, known: Exchange | Sector | None, traded: dict[str, Any], listed: dict[str, int], total: Decimal
) -> dict[str, Any]:
    """One exchange's or sector's line: names, trades, amount and shares, products traded and newly listed."""
    amount = traded.get("amount", Decimal("0.00"))
    return {
        "code": code,
        "name_zh": known.name_zh if known else code,
        "name_en": known.name_en if known else code,
        "trades": traded.get("trades", 0),
        "amount": amount,
        "market_share": share(amount, total),
        "high_quality_share": share(traded.get("high_quality", 0), amount),
        "products_traded": traded.get("products", 0),
        "new_products": listed.get(code, 0),
    }


def _exchange_rows(store: Store, span: q.Span, usage: list[dict[str, Any]], total: Decimal) -> list[dict[str, Any]]:
    """Every registered exchange (and any other code that traded), largest traded amount first."""
    trades = {row["key"]: row for row in q.trades_by(store, span, "exchange_id")}
    metered = {row["key"]: row for row in usage}
    listed = q.new_products_by(store, span, "exchange_id")
    registry = exchanges()
    rows = []
    for code in sorted(set(registry) | set(trades) | set(metered)):
        t = trades.get(code, {})
        row = _dimension_row(code, registry.get(code), t, listed, total)
        row.update(
            on_exchange_share=share(t.get("on_exchange", 0), row["amount"]),
            usage_calls=metered.get(code, {}).get("calls", 0),
            usage_bytes=metered.get(code, {}).get("bytes", 0),
        )
        rows.append(row)
    rows.sort(key=lambda row: (-row["amount"], row["code"]))
    return rows


def _sector_rows(store: Store, span: q.Span, total: Decimal) -> list[dict[str, Any]]:
    """Every sector of the "数据要素×" plan (and `unknown` if trades had no listing), largest first."""
    trades = {row["key"]: row for row in q.trades_by(store, span, "sector")}
    listed = q.new_products_by(store, span, "sector")
    registry = sectors()
    rows = []
    for code in sorted(set(registry) | set(trades)):
        rows.append(_dimension_row(code, registry.get(code), trades.get(code, {}), listed, total))
    rows.sort(key=lambda row: (-row["amount"], row["code"]))
    return rows
