"""The Feeds view (数据源): each exchange's feed health and data quality.

Freshness is measured in event time against the market's watermark (the same clock
the `exchange_silent` rule uses); the latest arrival is wall-clock time, to tell a
quiet exchange from a stalled pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from models.registry import exchanges
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.store import Store
from streams.console.encode import share

REASONS = ("malformed", "unsupported_schema", "invalid", "unknown_exchange", "amount_mismatch", "processing_error")
TYPES = {"listings": "listing", "trades": "trade", "usage": "usage", "heartbeats": "heartbeat"}


def feeds_view(store: Store, silent_after_s: int) -> dict[str, Any]:
    """Per registered exchange: events, freshness, rejections by reason, duplicates, late events."""
    watermark = q.watermark_us(store)
    registry = exchanges()
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in q.feed_events(store):
        events[row["exchange_id"]].append(row)
    rejected: dict[str, dict[str, int]] = defaultdict(dict)
    for row in q.rejected_by_exchange(store):
        code = row["exchange_id"] if row["exchange_id"] in registry else ""
        rejected[code][row["reason"]] = rejected[code].get(row["reason"], 0) + row["messages"]
    duplicates = q.duplicates_by_exchange(store)
    rows = [
        _feed(
            code,
            exchange.name_zh,
            exchange.name_en,
            events[code],
            rejected[code],
            duplicates.get(code, 0),
            watermark,
            silent_after_s,
        )
        for code, exchange in registry.items()
    ]
    rows.sort(key=lambda row: (row["status"] == "ok", row["code"]))
    reasons = [reason for reason in REASONS if any(reason in r for r in rejected.values())]
    reasons += sorted({reason for r in rejected.values() for reason in r} - set(reasons))
    return {
        "watermark_us": watermark,
        "silent_after_s": silent_after_s,
        "reasons": reasons,
        "exchanges": rows,
        "unattributed_rejected": rejected.get("", {}),
        "totals": {
            "events": sum(row["events"] for row in rows),
            "rejected": sum(sum(r.values()) for r in rejected.values()),
            "duplicates": sum(duplicates.values()),
            "late": sum(row["late"] for row in rows),
        },
    }


def _feed(
    code: str,
    name_zh: str,
    name_en: str,
    events: list[dict[str, Any]],
    rejected: dict[str, int],
    duplicates: int,
    watermark: int | None,
    silent_after_s: int,
) -> dict[str, Any]:
    by_type = {TYPES[row["type"]]: row["events"] for row in events}
    heartbeat = next((row["last_us"] for row in events if row["type"] == "heartbeats"), None)
    last_event = max((row["last_us"] for row in events), default=None)
    accepted = sum(by_type.values())
    lag_s = _age_s(watermark, last_event)
    heartbeat_age_s = _age_s(watermark, heartbeat)
    # As the exchange_silent rule sees it: any event keeps a feed alive; the heartbeat age is shown apart.
    status = "never" if lag_s is None else "silent" if lag_s > silent_after_s else "ok"
    return {
        "code": code,
        "name_zh": name_zh,
        "name_en": name_en,
        "status": status,
        "events": accepted,
        "by_type": by_type,
        "last_event_us": last_event,
        "lag_s": lag_s,
        "last_heartbeat_us": heartbeat,
        "heartbeat_age_s": heartbeat_age_s,
        "last_arrival_ms": max((row["arrived_ms"] for row in events), default=None),
        "late": sum(row["late"] for row in events),
        "duplicates": duplicates,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "accepted_share": share(accepted, accepted + sum(rejected.values())),
    }


def _age_s(watermark: int | None, at: int | None) -> int | None:
    """Whole seconds of event time between `at` and the watermark."""
    if watermark is None or at is None:
        return None
    return (watermark - at) // 1_000_000
