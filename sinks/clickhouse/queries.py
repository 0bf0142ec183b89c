"""Read-only questions the CLI, the evaluator and the benchmark ask, as SQL text.

They are text, not calls, because on the embedded store the running worker holds
the data directory: `dmm` sends the statement to the worker's SQL socket, or runs
it on the store itself when it can open it; either way it passes `sql_guard`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from models.clock import to_ms
from sinks.clickhouse.state import EVENT_TABLES
from sinks.clickhouse.windows import CHINA

EXAMPLE = "SELECT exchange_id, sum(amount) FROM datamarket.trades GROUP BY 1 ORDER BY 2 DESC"  # dmm up's hint


class Query(NamedTuple):
    """A question that names values someone gave (a dedup key, an exchange, event ids): its text holds
    `{name:Type}` placeholders, and the values travel beside it, bound by the store, never spliced in."""

    sql: str
    parameters: dict[str, str | int]


def alert_list(
    database: str,
    *,
    kind: str | None = None,
    severity: str | None = None,
    exchange: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> Query:
    """Alerts with their lifecycle status (resolved > acked > open) and latest action, newest first."""
    given = {"kind": kind, "severity": severity, "exchange_id": exchange, "status": status}
    parameters: dict[str, str | int] = {column: value for column, value in given.items() if value}
    where = [f"{column} = {{{column}:String}}" for column in parameters]
    if since is not None:
        where.append(f"detected_ms >= {to_ms(since)}")
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    sql = (
        "SELECT * FROM (SELECT a.dedup_key AS dedup_key, a.alert_id AS alert_id, a.kind AS kind, "
        "a.severity AS severity, toString(a.exchange_id) AS exchange_id, a.product_id AS product_id, "
        "a.parties AS parties, a.event_ids AS event_ids, a.score AS score, "
        "toUnixTimestamp64Milli(a.window_start) AS window_start_ms, "
        "toUnixTimestamp64Milli(a.window_end) AS window_end_ms, "
        "toUnixTimestamp64Milli(a.detected_at) AS detected_ms, a.message AS message, a.message_zh AS message_zh, "
        "multiIf(x.resolved = 1, 'resolved', x.acted = 1, 'acked', 'open') AS status, "
        "x.actor AS actor, x.note AS note, if(x.acted = 1, toUnixTimestamp64Milli(x.last_at), NULL) AS action_ms "
        f"FROM {database}.alerts AS a FINAL LEFT JOIN (SELECT dedup_key, toUInt8(1) AS acted, "
        "toUInt8(max(action = 'resolve')) AS resolved, argMax(actor, at) AS actor, argMax(note, at) AS note, "
        f"max(at) AS last_at FROM {database}.alert_actions GROUP BY dedup_key) AS x ON a.dedup_key = x.dedup_key) "
        f"{condition}ORDER BY detected_ms DESC, dedup_key LIMIT {int(limit)}"
    )
    return Query(sql, parameters)


def alert_exists(database: str, dedup_key: str) -> Query:
    return Query(
        f"SELECT count() AS n FROM {database}.alerts WHERE dedup_key = {{dedup_key:String}}", {"dedup_key": dedup_key}
    )


def alerts_in_detection_order(database: str) -> str:
    """Every alert, times as ms since the epoch: what `dmm eval` scores."""
    return (
        "SELECT * EXCEPT (window_start, window_end, detected_at), "
        "toUnixTimestamp64Milli(window_start) AS window_start_ms, toUnixTimestamp64Milli(window_end) AS window_end_ms, "
        f"toUnixTimestamp64Milli(detected_at) AS detected_ms FROM {database}.alerts FINAL ORDER BY detected_at"
    )


def evidence_stored_at(database: str, event_ids: Iterable[str]) -> Query:
    """When each of these events was stored (first `ingested_at`, ms), per exchange and event id."""
    parameters: dict[str, str | int] = {f"event_{n}": event_id for n, event_id in enumerate(sorted(set(event_ids)))}
    listed = ", ".join(f"{{{name}:String}}" for name in parameters)
    union = " UNION ALL ".join(
        f"SELECT toString(exchange_id) AS exchange_id, event_id, ingested_at FROM {database}.{table} "
        f"WHERE event_id IN ({listed})"
        for table in EVENT_TABLES
    )
    sql = (
        "SELECT exchange_id, event_id, toUnixTimestamp64Milli(min(ingested_at)) AS ms "
        f"FROM ({union}) GROUP BY exchange_id, event_id"
    )
    return Query(sql, parameters)


def ingest_span(database: str) -> str:
    """First and last `ingested_at` (ms) over every event table: the worker's busy time in a benchmark."""
    union = " UNION ALL ".join(f"SELECT ingested_at FROM {database}.{table}" for table in EVENT_TABLES)
    return (
        "SELECT toUnixTimestamp64Milli(min(ingested_at)) AS a, toUnixTimestamp64Milli(max(ingested_at)) AS b, "
        f"count() AS n FROM ({union})"
    )


def ingest_lag(database: str, since: datetime) -> str:
    """Percentiles (ms) of occurred_at -> stored, for events that happened after `since`."""
    return (
        "SELECT quantileExact(0.5)(d) AS p50, quantileExact(0.99)(d) AS p99, max(d) AS mx, count() AS n FROM ("
        f"SELECT dateDiff('millisecond', occurred_at, stored_at) AS d FROM ({_stored_since(database, since)}))"
    )


def ingest_stored_at(database: str, since: datetime) -> str:
    """When each event that happened after `since` was stored (ms), by identity: to measure the lag from the
    moment it was published."""
    return (
        "SELECT exchange_id, event_id, toUnixTimestamp64Milli(stored_at) AS stored_ms "
        f"FROM ({_stored_since(database, since)})"
    )


def _stored_since(database: str, since: datetime) -> str:
    """Every event that happened after `since`, with when it was stored: an event counts as stored when its
    batch is (the batch's progress marker, written after its rows, stamps `processed_at`)."""
    union = " UNION ALL ".join(
        f"SELECT exchange_id, event_id, src_partition, src_offset, occurred_at FROM {database}.{table} "
        f"WHERE occurred_at >= fromUnixTimestamp64Milli(toInt64({to_ms(since)}), 'UTC')"
        for table in EVENT_TABLES
    )
    return (
        "SELECT e.exchange_id AS exchange_id, e.event_id AS event_id, e.occurred_at AS occurred_at, "
        f"b.processed_at AS stored_at FROM ({union}) AS e ASOF INNER JOIN {database}.processed_batches AS b "
        "ON e.src_partition = b.src_partition AND e.src_offset <= b.last_offset"
    )


def regulator_questions(database: str, now: datetime) -> dict[str, str]:
    """The console's and dashboards' questions over a long history, answered from the rollups (and one from the
    raw trades, for comparison). `now`: the market's current time; days are China Standard Time days."""
    today = f"toDate({to_ms(now) // 1000}, '{CHINA}')"
    hour = f"toStartOfHour(toDateTime({to_ms(now) // 1000}, 'UTC'))"
    d = f"{database}.market_1d FINAL"
    h = f"{database}.market_1h FINAL"
    return {
        "traded today by exchange (1d)": f"SELECT exchange_id, sum(traded_amount) AS a FROM {d} WHERE day = {today} "
        "GROUP BY exchange_id ORDER BY a DESC",
        "traded this hour (1h)": f"SELECT sum(traded_amount) AS a, sum(trades) AS n FROM {h} "
        f"WHERE window_start = {hour}",
        "hourly trend, last 24 h (1h)": f"SELECT window_start, sum(traded_amount) FROM {h} "
        f"WHERE window_start > {hour} - INTERVAL 24 HOUR GROUP BY window_start ORDER BY window_start",
        "daily trend, last year (1d)": f"SELECT day, sum(traded_amount) FROM {d} WHERE day > {today} - 365 "
        "GROUP BY day ORDER BY day",
        "venue share, last year (1d)": f"SELECT venue, sum(traded_amount) AS a FROM {d} WHERE day > {today} - 365 "
        "GROUP BY venue",
        "high-quality share, last year (1d)": "SELECT sumIf(traded_amount, high_quality = 1) / sum(traded_amount) "
        f"FROM {d} WHERE day > {today} - 365",
        "by sector, last 30 days (1d)": f"SELECT sector, sum(traded_amount) AS a, sum(trades) FROM {d} "
        f"WHERE day > {today} - 30 GROUP BY sector ORDER BY a DESC",
        "exchange x sector, last year (1d)": f"SELECT exchange_id, sector, sum(traded_amount) FROM {d} "
        f"WHERE day > {today} - 365 GROUP BY exchange_id, sector",
        "traded today by exchange (raw trades)": "SELECT exchange_id, sum(amount) AS a "
        f"FROM {database}.trades FINAL WHERE toDate(occurred_at, '{CHINA}') = {today} "
        "GROUP BY exchange_id ORDER BY a DESC",
    }
