"""`dmm eval`: replay a labelled scenario through the real stack and score the alerts per kind."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer
from rich.table import Table

from dmm.broker import BrokerError, free_port
from dmm.cli.app import app, console, err_console
from dmm.cli.terminal import markup_safe
from dmm.evaluation import EvalReport, KindScore, run_scenario
from settings import ClickHouseSettings, KafkaSettings, Settings, get_settings


@app.command("eval")
def evaluate(
    events: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="scenario events (JSONL), e.g. from `dmm simulate --out`"
    ),
    truth: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="its ground truth (JSONL), from `dmm simulate --truth`"
    ),
    timeout: float = typer.Option(600.0, help="longest wait (s) for the worker to process the scenario"),
    workdir: Path | None = typer.Option(
        None, help="keep the stack's store and logs here (default: a temporary directory)"
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json"),
    strict: bool = typer.Option(
        False, "--strict", help="exit 1 unless every incident is found once and nothing else"
    ),
) -> None:
    """Replay a labelled scenario on a new embedded stack; print per kind: injected/detected/missed/false/duplicates."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    configured = get_settings()
    with tempfile.TemporaryDirectory(prefix="dmm-eval-") as tmp:
        where = workdir or Path(tmp)
        settings = Settings(
            kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}"),
            clickhouse=ClickHouseSettings(chdb_path=where / "chdb"),
            web_port=free_port(),
            rules=configured.rules,
            allowed_lateness_s=configured.allowed_lateness_s,
        )
        try:
            report = run_scenario(events, truth, settings, where, timeout)
        except (BrokerError, RuntimeError, TimeoutError, OSError) as exc:
            err_console.print(f"[red]evaluation failed:[/] {exc}")
            raise typer.Exit(2) from exc
    if fmt == "json":
        print(json.dumps(_as_json(report), ensure_ascii=False, indent=2))
    else:
        _print(report)
    if strict and not report.perfect:
        raise typer.Exit(1)


def _print(report: EvalReport) -> None:
    table = Table(
        title="dmm eval: alerts vs injected incidents",
        caption="latency: evidence stored -> alert detected, seconds (p50 / max)",
    )
    table.add_column("kind", no_wrap=True)
    for column in ("injected", "found", "missed", "false", "dup", "p50", "max"):
        table.add_column(column, justify="right")
    for row in [*report.kinds.values(), report.total]:
        table.add_row(
            f"[bold]{row.kind}[/]" if row.kind == "total" else row.kind,
            str(row.injected),
            str(row.detected),
            f"[red]{row.missed}[/]" if row.missed else "0",
            f"[red]{row.false_alerts}[/]" if row.false_alerts else "0",
            f"[yellow]{row.duplicates}[/]" if row.duplicates else "0",
            _seconds(row.latency_p50_s),
            _seconds(row.latency_max_s),
        )
    console.print(table)
    for incident in report.missed:
        console.print(
            f"[red]missed[/] {incident.kind} on {incident.exchange_id} {incident.product_id or ''}: {incident.note}"
        )
    for alert in report.false_alerts:
        console.print(f"[red]false[/] {markup_safe(alert.dedup_key)}: {markup_safe(alert.message)}")


def _as_json(report: EvalReport) -> dict[str, object]:
    def row(score: KindScore) -> dict[str, object]:
        return {
            "injected": score.injected,
            "detected": score.detected,
            "missed": score.missed,
            "false": score.false_alerts,
            "duplicates": score.duplicates,
            "latency_p50_s": score.latency_p50_s,
            "latency_max_s": score.latency_max_s,
        }

    return {
        "kinds": {kind: row(score) for kind, score in report.kinds.items()},
        "total": row(report.total),
        "missed": [incident.to_json() for incident in report.missed],
        "false_alerts": [alert.dedup_key for alert in report.false_alerts],
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
