"""`dmm simulate`: generate market traffic, to a JSONL file or live to dm.events, with labelled anomalies."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from dmm.cli.app import app, console, err_console
from dmm.simulator import (
    KINDS,
    SECONDS_PER_YEAR,
    MarketSimulator,
    SimulationConfig,
    figures,
    parse_injections,
    parse_shares,
    publish_live,
    track_event_time,
    write_jsonl,
    write_truth,
)
from settings import get_settings

_DEFAULT_HQ = ", ".join(f"{code}={share}" for code, share in figures.HIGH_QUALITY_VALUE_SHARE.items())


@app.command()
def simulate(
    seed: int = typer.Option(1, help="random seed; with a fixed --start the output is byte-identical"),
    rate: float = typer.Option(1.0, help="business events (listing, trade, usage) per simulated second"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="simulated seconds per wall-clock second (live)"),
    duration: float = typer.Option(2_700.0, help="simulated seconds to generate"),
    start: str | None = typer.Option(
        None,
        help="event time of the first event, RFC 3339 with offset (default: now live; with --out, so that the file "
        "ends now: the monitor rejects events stamped ahead of its clock)",
    ),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="write JSONL here instead of publishing"),
    truth: Path | None = typer.Option(
        None, "--truth", dir_okay=False, help="write the injected incidents here (JSONL)"
    ),
    inject: list[str] = typer.Option([], "--inject", help=f"KIND=N, repeatable; KIND: {', '.join(KINDS)}"),
    scenario: str | None = typer.Option(None, help="'all': inject every kind twice (--inject overrides counts)"),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="broker host:port list (default: DMM_KAFKA__BOOTSTRAP)"
    ),
    growth: float = typer.Option(figures.ANNUAL_GROWTH, help="growth of every rate per market year (0.3 = +30%)"),
    year_seconds: float = typer.Option(
        SECONDS_PER_YEAR, "--year-seconds", help="simulated seconds in a market year; shorten to see growth quickly"
    ),
    new_products: float = typer.Option(
        figures.NEW_PRODUCTS_PER_HALF_YEAR, help="new products listed nationally per half year"
    ),
    new_participants: float = typer.Option(
        figures.NEW_PARTICIPANTS_PER_QUARTER, help="new participants nationally per quarter"
    ),
    cny_per_day: float | None = typer.Option(
        None,
        "--cny-per-day",
        help="CNY traded per day of event time at the start (default: the statements' for the start date: 160 "
        "billion a year in 2024, +30% a year since), whatever the rate: prices scale with it",
    ),
    on_exchange_share: float | None = typer.Option(
        None,
        "--on-exchange-share",
        help="a fixed share of traded value on exchange (default: the statements', rising as on-exchange value "
        "doubles each year)",
    ),
    hq_share: list[str] = typer.Option(
        [],
        "--hq-share",
        help="EXCHANGE=SHARE, repeatable: high-quality datasets carry SHARE of that exchange's traded value "
        f"(replaces the default {_DEFAULT_HQ}; 'none' for no targets)",
    ),
) -> None:
    """Simulate the national data market: clean traffic plus labelled anomalies, in event-time order."""
    settings = get_settings()
    try:
        config = SimulationConfig(
            seed=seed,
            start=_parse_start(start) or (datetime.now(UTC) - timedelta(seconds=duration) if out else None),
            duration_s=duration,
            rate=rate,
            injections=parse_injections(inject, scenario),
            rules=settings.rules,
            growth=growth,
            year_s=year_seconds,
            new_products_per_half_year=new_products,
            new_participants_per_quarter=new_participants,
            traded_cny_per_day=cny_per_day,
            on_exchange_share=on_exchange_share,
            high_quality_value_share=parse_shares(hq_share) if hq_share else figures.HIGH_QUALITY_VALUE_SHARE,
        )
        simulator = MarketSimulator(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if time_scale <= 0:
        raise typer.BadParameter("--time-scale must be > 0 simulated seconds per wall-clock second")
    stream = track_event_time(simulator, simulator.start_ms, duration, err_console)
    if out is not None:
        sent = write_jsonl(stream, out)
        destination = str(out)
    else:
        from kafka.errors import KafkaError

        from dmm.producer import EventProducer

        kafka = settings.kafka if bootstrap is None else settings.kafka.model_copy(update={"bootstrap": bootstrap})
        try:
            with EventProducer(kafka) as producer:
                sent = publish_live(stream, lambda key, value: producer.publish_raw(value, key), time_scale)
                producer.flush()
        except KafkaError as exc:
            err_console.print(f"[red]cannot publish to {kafka.bootstrap}:[/] {exc}")
            err_console.print("Start the stack with `dmm up`, or point --bootstrap at the broker.")
            raise typer.Exit(1) from exc
        destination = f"{kafka.events_topic} on {kafka.bootstrap}"
    console.print(f"[green]sent[/] {sent} event(s) to {destination}")
    if config.injections:
        _print_incidents(simulator)
    if truth is not None:
        count = write_truth(simulator.incidents, truth)
        console.print(f"[green]wrote[/] {count} incident(s) to {truth}")


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"--start needs a UTC offset, e.g. {text}+08:00")
    return moment


def _print_incidents(simulator: MarketSimulator) -> None:
    counts = Counter(incident.kind for incident in simulator.incidents)
    table = Table("kind", "incidents", title="injected")
    for kind in KINDS:
        if counts[kind]:
            table.add_row(kind, str(counts[kind]))
    console.print(table)
