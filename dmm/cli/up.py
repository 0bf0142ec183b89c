"""`dmm up`: the whole monitor on this machine, in the foreground, until Ctrl-C.

Everything it keeps is in its work directory (`--workdir`): the embedded store, the console token, the SQL socket,
the operators' key, Faust's state and the logs. It claims the store first (`dmm.stack.StoreClaim`): a second
`dmm up` on a store a live one holds refuses to start instead of sharing it.

Unless DMM_CONSOLE_TOKEN is set, each start generates a console token, kept beside the store (mode 0600) for
`dmm alerts` to send, and prints the console's address with it in the fragment (`/#token=…`), as Jupyter does:
a fragment never reaches a server log or a Referer, and the page keeps the token for the tab. So the regulator
can acknowledge and resolve from the page, and no other page or user on the machine can.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import SecretStr
from rich.markup import escape
from rich.panel import Panel

from dmm.cli.app import app, console, err_console
from dmm.simulator import KINDS, MarketSimulator, SimulationConfig, parse_injections, publish_live
from settings import ClickHouseSettings, Settings, get_settings
from sinks.clickhouse import queries

if TYPE_CHECKING:
    from dmm.stack import StoreClaim

# The `--scenario` injections fall within the market's first minutes of event time: the volume spike needs
# half an hour of history first.
SCENARIO_MINUTES = 45
# How long Ctrl-C lets the worker flush and commit before it is killed: well over a normal stop (about a
# second), and a SIGKILL is a crash the worker recovers from without losing or doubling anything.
_STOP_GRACE_S = 5.0


@app.command()
def up(
    simulate: bool = typer.Option(True, "--simulate/--no-simulate", help="generate market traffic of its own"),
    rate: float = typer.Option(5.0, help="simulated business events per simulated second"),
    time_scale: float = typer.Option(1.0, help="simulated seconds per wall-clock second"),
    seed: int = typer.Option(1, help="simulator seed (same seed, same market)"),
    scenario: str | None = typer.Option(
        None,
        help="'all': the simulator injects every alert kind twice within the scenario's first "
        f"{SCENARIO_MINUTES} minutes of event time, so the console shows alerts (with --time-scale N the market "
        "starts in the past and plays them N times faster, then runs in real time)",
    ),
    workdir: Path = typer.Option(
        Path(".dmm"),
        help="where everything is kept: the embedded store (WORKDIR/chdb unless DMM_CLICKHOUSE__CHDB_PATH is set; "
        "its console token, SQL socket and Faust state beside it), the operators' key (ops.key) and the logs",
    ),
) -> None:
    """Run the embedded stack: Tansu broker, worker, embedded ClickHouse, /metrics (and the simulator).

    Refuses to start on a store another live `dmm up` holds.

    Ctrl-C (or SIGTERM) stops everything within seconds; killed, `dmm up` takes the processes it started along."""
    from dmm.stack import StoreClaim, StoreInUse

    settings = in_workdir(get_settings(), workdir)
    try:
        claim = StoreClaim(settings.clickhouse.chdb_path).acquire()
    except StoreInUse as exc:
        err_console.print(f"[red]not starting:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    try:
        market = live_market(seed, rate, time_scale, scenario) if simulate else None
    except ValueError as exc:
        claim.release()
        raise typer.BadParameter(str(exc)) from exc
    try:
        _run(settings, workdir, claim, market, rate, time_scale)
    finally:
        claim.release()


def live_market(
    seed: int, rate: float, time_scale: float, scenario: str | None, now: datetime | None = None
) -> MarketSimulator:
    """The endless market `dmm up` publishes. With a scenario, its injections fall within its first
    SCENARIO_MINUTES of event time, and the market starts early enough that, played `time_scale` times faster
    than real time, those minutes end when its event time meets the wall clock (at 1: it starts now)."""
    if time_scale <= 0:
        raise ValueError("--time-scale must be > 0 simulated seconds per wall-clock second")
    now = now or datetime.now(UTC).replace(microsecond=0)
    span_s = SCENARIO_MINUTES * 60.0
    injections = parse_injections([], scenario)
    lead_s = span_s * (1 - 1 / max(time_scale, 1.0)) if injections else 0.0
    config = SimulationConfig(
        seed=seed,
        start=now - timedelta(seconds=lead_s),
        duration_s=None,
        rate=rate,
        injections=injections,
        injections_within_s=span_s if injections else None,
    )
    return MarketSimulator(config)


def in_workdir(settings: Settings, workdir: Path) -> Settings:
    """`settings` with the embedded store in `workdir`, unless DMM_CLICKHOUSE__CHDB_PATH says where it is."""
    if "chdb_path" in settings.clickhouse.model_fields_set:
        return settings
    clickhouse = settings.clickhouse.model_copy(update={"chdb_path": workdir / "chdb"})
    return settings.model_copy(update={"clickhouse": clickhouse})


def _run(
    settings: Settings,
    workdir: Path,
    claim: StoreClaim,
    market: MarketSimulator | None,
    rate: float,
    time_scale: float,
) -> None:
    """The stack, from the moment the store is claimed until it has stopped."""
    from dmm.broker import BrokerError
    from dmm.stack import EmbeddedStack
    from dmm.supervisor import WorkerSupervisor
    from streams.rules import provision_ops_key

    settings = provision_ops_key(settings, workdir)  # DMM_OPS_KEY, or one generated into the work directory
    settings = with_console_token(settings)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, _interrupt)
    console.print(f"[bold]Starting Data Market Monitor[/] (broker {settings.kafka.bootstrap}, logs in {workdir}/)")
    try:
        stack = EmbeddedStack(settings, workdir, claim=claim, stop_grace_s=_STOP_GRACE_S).__enter__()
    except (BrokerError, RuntimeError, OSError) as exc:
        err_console.print(f"[red]could not start the stack:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[green]stopped[/] before it was up")
        return
    stop = threading.Event()
    # From here on the stack is up: Ctrl-C at any moment, even while the banner is printed, stops it in order.
    try:
        if market is not None:
            threading.Thread(target=publish_market, args=(settings, market, time_scale, stop), daemon=True).start()
        store = settings.clickhouse.url or f"embedded chdb at {settings.clickhouse.chdb_path}"
        # `dmm sql` and `dmm alerts` find the worker's socket and token beside the store
        elsewhere = settings.clickhouse.chdb_path != ClickHouseSettings.model_fields["chdb_path"].default
        reach = f"DMM_CLICKHOUSE__CHDB_PATH={settings.clickhouse.chdb_path} " if elsewhere else ""
        token = settings.console_token.get_secret_value() if settings.console_token else ""
        console.print(
            Panel.fit(
                f"[green]running[/]\n"
                f"console:   {escape(settings.web_url)}/  (监管控制台 / regulator's console; with its token: below)\n"
                f"metrics:   {escape(settings.web_url)}/metrics\n"
                f"status:    {escape(settings.web_url)}/api/status\n"
                f"kafka:     {settings.kafka.bootstrap}  (topic {settings.kafka.events_topic})\n"
                f"store:     {store}\n"
                f"simulator: {_describe(market, rate, time_scale)}\n\n"
                f'query:     {escape(reach)}dmm sql "{queries.EXAMPLE}"\n'
                f"alerts:    {escape(reach)}dmm alerts list\n"
                f"send:      dmm replay events.jsonl\n"
                f"worker log: {stack.worker_log}  (restarted with backoff if it dies)\n\n"
                f"Ctrl-C stops everything.",
                title="Data Market Monitor",
            )
        )
        console.print(f"console with its token: {escape(settings.web_url)}/#token={escape(token)}", soft_wrap=True)
        supervisor = WorkerSupervisor(
            stack, report=lambda line: err_console.print(f"[yellow]supervisor:[/] {escape(line)}")
        )
        supervisor.run(stop)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        stop.set()
        stack.stop()
        console.print("[green]stopped[/]")


def with_console_token(settings: Settings) -> Settings:
    """`settings` with a console token: DMM_CONSOLE_TOKEN, else a new one, written (mode 0600) to
    `settings.console_token_file` for `dmm alerts` to read."""
    if settings.console_token is not None and settings.console_token.get_secret_value():
        return settings
    token = secrets.token_urlsafe(32)
    path = settings.console_token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # also when an earlier file had another mode
    with os.fdopen(descriptor, "w", encoding="utf-8") as kept:
        kept.write(token + "\n")
    return settings.model_copy(update={"console_token": SecretStr(token)})


def _describe(market: MarketSimulator | None, rate: float, time_scale: float) -> str:
    if market is None:
        return "off"
    injected = f", injecting {len(KINDS)} alert kinds in its first {SCENARIO_MINUTES} min" if market.planned else ""
    return f"on, {rate} events/s x{time_scale}{injected}"


def publish_market(settings: Settings, market: MarketSimulator, time_scale: float, stop: threading.Event) -> None:
    """Publish an endless simulated market to the stack's broker, paced by event time, until `stop` is set."""
    from dmm.producer import EventProducer

    with EventProducer(settings.kafka) as producer:

        def publish(key: bytes, value: bytes) -> None:
            if stop.is_set():
                raise _Stopped
            producer.publish_raw(value, key)

        with contextlib.suppress(_Stopped):
            publish_live(market, publish, time_scale)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the stack like Ctrl-C does."""
    raise KeyboardInterrupt


class _Stopped(Exception):
    """The stack is shutting down."""
