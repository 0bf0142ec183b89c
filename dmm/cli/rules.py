"""`dmm rules`: show the surveillance rules in force, or change them at runtime via dm.rules."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from dmm.cli.app import app as root
from dmm.cli.app import console, err_console
from settings import get_settings

rules_app = typer.Typer(help="Show or change surveillance rules at runtime (no restart).", no_args_is_help=True)
root.add_typer(rules_app, name="rules")


@rules_app.command("show")
def show() -> None:
    """The rules the running worker applies now (configured, plus runtime changes)."""
    from dmm.query import WorkerUnavailable, worker_status

    settings = get_settings()
    try:
        rules = worker_status(settings).get("rules") or {}
    except WorkerUnavailable as exc:
        err_console.print(f"[red]{exc}[/]; start it with `dmm up` (configured defaults: DMM_RULES__*)")
        raise typer.Exit(1) from exc
    table = Table("rule", "in force", "configured")
    configured = settings.rules.model_dump(mode="json")
    for name, value in rules.items():
        changed = value != configured.get(name)
        table.add_row(name, f"[bold yellow]{value}[/]" if changed else str(value), str(configured.get(name)))
    console.print(table)


@rules_app.command("set")
def set_rules(
    assignments: list[str] = typer.Argument(..., help="RULE=VALUE, e.g. price_outlier_ratio=4"),
    by: str = typer.Option(..., "--by", help="who makes the change (recorded)"),
) -> None:
    """Publish a rule change to dm.rules; the worker applies and records it."""
    changes: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            err_console.print(f"[red]expected RULE=VALUE, got {assignment!r}[/]")
            raise typer.Exit(2)
        changes[name.strip()] = value.strip()
    _publish({"set": changes, "actor": by})


@rules_app.command("reset")
def reset(by: str = typer.Option(..., "--by", help="who resets (recorded)")) -> None:
    """Drop every runtime change: back to the configured DMM_RULES__* values."""
    _publish({"reset": True, "actor": by})


def _publish(message: dict[str, object]) -> None:
    from dmm.producer import EventProducer

    settings = get_settings()
    with EventProducer(settings.kafka, topic=settings.kafka.rules_topic) as producer:
        producer.publish_raw(json.dumps(message).encode(), None)
        producer.flush()
    console.print(f"sent to {settings.kafka.rules_topic}: {message}; check with `dmm rules show`")
