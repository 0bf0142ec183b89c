"""`dmm alerts`: list alerts with their lifecycle status, and acknowledge or resolve them.

Status comes from `alert_actions` (who did what, when): *resolved* once anyone
resolved the alert, else *acked* once anyone acknowledged it, else *open*. A
resolved incident that recurs comes back as a new alert `<dedup_key>#2` (see
`streams.alerts`). Reads and writes go through the running worker when it holds
the embedded store (`dmm.query`: reads on its SQL socket, ack / resolve on its web port
with the console token), else straight to the store. Stored text is printed through
`dmm.cli.terminal`: an id or a note is shown, never obeyed by the terminal or by rich.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import typer
from rich.table import Table

from dmm.cli.app import app, console, err_console
from dmm.cli.terminal import markup_safe, printable
from dmm.query import UnknownAlert, alert_action, console_token, query_rows
from models import AlertKind, Severity
from models.clock import CHINA_STANDARD_TIME, from_ms, rfc3339
from settings import get_settings
from sinks.clickhouse import StoreError, queries

STATUSES = ("open", "acked", "resolved")
_DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
_STATUS_STYLE = {"open": "bold", "acked": "yellow", "resolved": "green"}

alerts_app = typer.Typer(name="alerts", help="List, acknowledge and resolve surveillance alerts.", no_args_is_help=True)
app.add_typer(alerts_app)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `24h`, `7d` ago, or an RFC 3339 / ISO timestamp (naive means UTC)."""
    match = _DURATION.match(text.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(seconds=int(match["n"]) * _UNIT_S[match["unit"]])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {text!r}: use e.g. 30m, 24h, 7d or 2026-11-21T10:00:00+08:00") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_record(row: dict[str, Any]) -> dict[str, Any]:
    """A listed row in the contract's alert shape (RFC 3339 times) plus its lifecycle."""
    record = {key: value for key, value in row.items() if not key.endswith("_ms")}
    for name in ("window_start", "window_end", "detected_at", "action_at"):
        ms = row[{"detected_at": "detected_ms", "action_at": "action_ms"}.get(name, f"{name}_ms")]
        record[name] = rfc3339(from_ms(int(ms))) if ms is not None else None
    if record["status"] == "open":
        record.update(actor=None, note=None)
    return record


@alerts_app.command("list")
def list_alerts(
    kind: str | None = typer.Option(None, help=f"one of: {', '.join(get_args(AlertKind))}"),
    severity: str | None = typer.Option(None, help="info, warning or critical"),
    exchange: str | None = typer.Option(None, help="exchange code, e.g. SHDEX"),
    status: str | None = typer.Option(None, help="open, acked or resolved"),
    since: str | None = typer.Option(None, help="detected since: 30m, 24h, 7d or a timestamp"),
    limit: int = typer.Option(100, min=1, help="most alerts shown (newest first)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, or json (one JSON object per line)"),
    zh: bool = typer.Option(False, "--zh", help="show the Chinese message in the table"),
) -> None:
    """List alerts, newest first, with their status (open / acked / resolved)."""
    _check_choice("kind", kind, get_args(AlertKind))
    _check_choice("severity", severity, get_args(Severity))
    _check_choice("status", status, STATUSES)
    _check_choice("format", fmt, ("table", "json"))
    settings = get_settings()
    try:
        moment = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    query = queries.alert_list(
        settings.clickhouse.database, kind=kind, severity=severity, exchange=exchange, status=status,
        since=moment, limit=limit,
    )
    records = [as_record(row) for row in _rows(query)]
    if fmt == "json":
        for record in records:
            print(printable(json.dumps(record, ensure_ascii=False)))
        return
    console.print(_table(records, zh))


@alerts_app.command("ack")
def ack(
    dedup_key: str = typer.Argument(..., help="the alert's dedup_key (see `dmm alerts list`)"),
    by: str = typer.Option(..., "--by", help="who acknowledges it"),
    note: str = typer.Option("", "--note", help="why, or what happens next"),
) -> None:
    """Acknowledge an alert: someone is on it (it stays one incident)."""
    _act(dedup_key, "ack", by, note)


@alerts_app.command("resolve")
def resolve(
    dedup_key: str = typer.Argument(..., help="the alert's dedup_key (see `dmm alerts list`)"),
    by: str = typer.Option(..., "--by", help="who resolves it"),
    note: str = typer.Option("", "--note", help="how it was resolved"),
) -> None:
    """Resolve an alert; if the incident recurs with new evidence, a new alert `<key>#2` is raised."""
    _act(dedup_key, "resolve", by, note)


def _act(dedup_key: str, action: str, actor: str, note: str) -> None:
    settings = get_settings()
    if not actor.strip():
        raise typer.BadParameter("--by must name who acts")
    try:
        recorded = alert_action(settings, dedup_key, action, actor.strip(), note)
    except UnknownAlert as exc:
        err_console.print(f"[red]{markup_safe(exc)}[/]")
        raise typer.Exit(1) from exc
    except (StoreError, RuntimeError, ValueError) as exc:
        err_console.print(f"[red]could not record the {action}:[/] {markup_safe(exc)}")
        if console_token(settings) is None:
            err_console.print(
                f"A running worker takes alert actions with its console token: set DMM_CONSOLE_TOKEN "
                f"(`dmm up` keeps the one it generated in {markup_safe(settings.console_token_file)})."
            )
        raise typer.Exit(2) from exc
    verb = "acknowledged" if action == "ack" else "resolved"
    console.print(
        f"[green]{verb}[/] {markup_safe(dedup_key)} by {markup_safe(actor.strip())} "
        f"at {markup_safe(recorded.get('at', ''))}"
    )


def _rows(query: queries.Query) -> list[dict[str, Any]]:
    try:
        return query_rows(get_settings(), *query)
    except (StoreError, RuntimeError, ValueError) as exc:
        err_console.print(f"[red]cannot read alerts:[/] {markup_safe(exc)}")
        raise typer.Exit(2) from exc


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"--{name} must be one of: {', '.join(allowed)}")


def _table(records: list[dict[str, Any]], zh: bool) -> Table:
    table = Table(title=f"{len(records)} alert(s), newest first (times in China Standard Time)", show_lines=True)
    table.add_column("detected", no_wrap=True)
    table.add_column("severity")
    table.add_column("status")
    table.add_column("score", justify="right")
    table.add_column("alert: dedup_key (for `dmm alerts ack`), then what happened", overflow="fold", min_width=40)
    for record in records:
        status, severity = record["status"], record["severity"]
        who = f"\n{markup_safe(record['actor'])}" if record.get("actor") else ""
        table.add_row(
            _china_time(record["detected_at"]),
            f"[{_SEVERITY_STYLE[severity]}]{severity}[/]" if severity in _SEVERITY_STYLE else markup_safe(severity),
            f"[{_STATUS_STYLE[status]}]{status}[/]{who}",
            f"{record['score']:.2f}",
            f"[bold]{markup_safe(record['dedup_key'])}[/]\n"
            + markup_safe(record["message_zh"] if zh else record["message"]),
        )
    return table


def _china_time(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(CHINA_STANDARD_TIME)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
