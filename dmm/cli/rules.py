"""`dmm rules`: show the surveillance rules in force, or change them at runtime via dm.rules."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from dmm.cli.app import app as root
from dmm.cli.app import console, err_console
from settings import Settings, get_settings
from streams.rules import OpsKey, RuleChangeError, signing_key

rules_app = typer.Typer(help="Show or change surveillance rules at runtime (no restart).", no_args_is_help=True)
root.add_typer(rules_app, name="rules")

_WORKDIR_HELP = "`dmm up`'s work directory: its operators' key (ops.key) signs the change when DMM_OPS_KEY is unset"


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
    workdir: Path = typer.Option(Path(".dmm"), help=_WORKDIR_HELP),
) -> None:
    """Publish a rule change to dm.rules, signed with the operators' key; the worker applies and records it."""
    changes: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            err_console.print(f"[red]expected RULE=VALUE, got {assignment!r}[/]")
            raise typer.Exit(2)
        changes[name.strip()] = value.strip()
    _publish({"set": changes, "actor": by}, workdir)


@rules_app.command("reset")
def reset(
    by: str = typer.Option(..., "--by", help="who resets (recorded)"),
    workdir: Path = typer.Option(Path(".dmm"), help=_WORKDIR_HELP),
) -> None:
    """Drop every runtime change: back to the configured DMM_RULES__* values."""
    _publish({"reset": True, "actor": by}, workdir)


def publish_change(settings: Settings, message: dict[str, object], key: OpsKey) -> None:
    """Send one rule change to dm.rules, signed with `key` (`dm-key: ops`, `dm-sig`), and wait for the broker."""
    from kafka import KafkaProducer

    from streams.kafka_client import client_options

    value = json.dumps(message).encode()
    producer = KafkaProducer(**client_options(settings.kafka), acks="all", max_block_ms=15_000)
    try:
        producer.send(settings.kafka.rules_topic, value=value, headers=key.sign(value)).get(timeout=30)
    finally:
        producer.close(timeout=10)


def _publish(message: dict[str, object], workdir: Path) -> None:
    from kafka.errors import KafkaError

    settings = get_settings()
    try:
        key = signing_key(settings, workdir)
    except RuleChangeError as exc:
        err_console.print(f"[red]cannot sign the change:[/] {exc}")
        raise typer.Exit(1) from exc
    try:
        publish_change(settings, message, key)
    except KafkaError as exc:
        err_console.print(f"[red]cannot publish to {settings.kafka.bootstrap}:[/] {exc}; is the stack up (`dmm up`)?")
        raise typer.Exit(1) from exc
    console.print(f"sent to {settings.kafka.rules_topic}, signed: {message}; check with `dmm rules show`")
