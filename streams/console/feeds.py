"""The Feeds view (数据源): each exchange's feed health and data quality.

Freshness is measured in event time against the market's watermark (the same clock
the `exchange_silent` rule uses); the latest arrival is wall-clock time, to tell a
quiet exchange from a stalled pipeline. An exchange whose latest event runs ahead of
every other exchange's by more than DMM_MAX_CLOCK_SKEW_S likely has its clock set
wrong (the others then look behind the market): its lead is shown, flagged.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from models.registry import exchanges
from settings import get_settings
from sinks.clickhouse import console_queries as q
from sinks.clickhouse.console_queries import Reader
from streams import decode
from streams.batch_records import PROCESSING_ERROR
from streams.console.encode import share

REASONS = (*decode.REASONS, PROCESSING_ERROR)  # the contract's, in its order, then the monitor's own
TYPES = {"listings": "listing", "trades": "trade", "usage": "usage", "heartbeats": "heartbeat"}


def feeds_view(store: Reader, silent_after_s: int, max_clock_skew_s: float | None = None) -> dict[str, Any]:
    """Per registered exchange: events, freshness, clock lead, rejections by reason (conflicting resends among
    them), duplicates, late events. `max_clock_skew_s`: default DMM_MAX_CLOCK_SKEW_S."""
    settings = get_settings()
    skew_s = settings.max_clock_skew_s if max_clock_skew_s is None else max_clock_skew_s
    snap = q.snapshot(store, settings.allowed_lateness_s, skew_s)
    watermark = snap.as_of_us
    registry = exchanges()
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in q.feed_events(store, snap):
        events[row["exchange_id"]].append(row)
    latest = {code: max(row["last_us"] for row in rows) for code, rows in events.items()}
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
            _ahead_s(code, latest),
        )
        for code, exchange in registry.items()
    ]
    rows.sort(key=lambda row: (row["status"] == "ok", row["code"]))
    reasons = [reason for reason in REASONS if any(reason in r for r in rejected.values())]
    reasons += sorted({reason for r in rejected.values() for reason in r} - set(reasons))
    return {
        "watermark_us": watermark,
        "silent_after_s": silent_after_s,
        "max_clock_skew_s": skew_s,
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
    clock_ahead_s: int | None,
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
        "clock_ahead_s": clock_ahead_s,
        "late": sum(row["late"] for row in events),
        "duplicates": duplicates,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "accepted_share": share(accepted, accepted + sum(rejected.values())),
    }


def _ahead_s(code: str, latest: dict[str, int]) -> int | None:
    """Whole seconds of event time the exchange's latest event leads every other exchange's by (0 if it does not
    lead; None if it never sent, or no other exchange did)."""
    others = [at for other, at in latest.items() if other != code]
    if code not in latest or not others:
        return None
    return max(0, (latest[code] - max(others)) // 1_000_000)


def _age_s(watermark: int | None, at: int | None) -> int | None:
    """Whole seconds of event time `at` is behind the watermark, never negative: an event at or past the watermark
    (its exchange's clock running ahead, whose lead `clock_ahead_s` shows, or stored after the watermark was read)
    is not behind the market."""
    if watermark is None or at is None:
        return None
    return max(0, (watermark - at) // 1_000_000)
