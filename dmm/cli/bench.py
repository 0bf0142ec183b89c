"""`dmm bench`: sustained throughput, stage costs, event lag and memory of the real pipeline, with a baseline."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from dmm.cli.app import app, console, err_console
from settings import ClickHouseSettings, KafkaSettings, Settings


@app.command()
def bench(
    events: int = typer.Option(50_000, min=1, help="simulated events to push through"),
    live_seconds: float = typer.Option(20.0, min=1.0, help="duration of the live-latency phase (at least 1 s)"),
    live_rate: float = typer.Option(0.0, help="events/s of the live phase (0: a quarter of the measured throughput)"),
    partitions: int = typer.Option(1, help="partitions of dm.events"),
    workers: int = typer.Option(1, help="worker processes in one group (> 1: the store shared by dmm store-serve)"),
    seed: int = typer.Option(5),
    query_rows: int = typer.Option(
        0, help="instead: generate this many trades straight into ClickHouse and time the regulator's questions"
    ),
    query_days: int = typer.Option(365, help="days of history the --query-rows trades span"),
    query_usage_per_trade: float = typer.Option(
        1.0, min=0.0, help="usage events in that history per trade (a live market has ~4: the console meters them)"
    ),
    restore_trades: int = typer.Option(
        0, help="instead: this many trades over the last 24 h into a fresh store, and a worker's restore timed"
    ),
    soak_seconds: float = typer.Option(
        0.0, help="instead: live traffic for this long, the worker's and the store's RSS sampled (memory)"
    ),
    soak_rate: float = typer.Option(5000.0, help="events/s of the --soak-seconds traffic"),
    soak_event_hours: float = typer.Option(
        0.0, help="the --soak-seconds traffic's event time spans this many hours up to now (0: it moves as sent)"
    ),
    signed: bool = typer.Option(
        False,
        "--signed",
        help="then the throughput phase again on a fresh stack whose worker holds producer keys, every event "
        "signed (contract, Amendment 1): signed events/s beside unsigned, and their ratio",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the figures as one JSON object (for scripts)"),
) -> None:
    """Run broker -> worker -> store on a fresh embedded stack; print events/s against a bare consumer,
    the worker's time per stage, live event lag p50/p99/max and peak RSS (and, with --signed, the cost of
    verifying producer signatures)."""
    from dmm import bench as benchmark

    out = err_console if as_json else console

    def say(text: str) -> None:
        out.print(f"[dim]{text}[/]")

    if query_rows:
        _query_bench(query_rows, query_days, query_usage_per_trade, as_json, say)
        return
    if restore_trades:
        _restore_bench(restore_trades, as_json, say)
        return
    if soak_seconds:
        _soak(soak_seconds, soak_rate, soak_event_hours, seed, as_json, say)
        return
    if not 1 <= workers <= partitions:
        err_console.print(
            f"[red]--workers {workers}:[/] give 1 to --partitions ({partitions}) workers (a worker owns partitions)"
        )
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="dmm-bench-") as tmp:
        workdir = Path(tmp)
        settings = _fresh_stack(workdir, partitions)
        result = benchmark.run(
            settings,
            workdir,
            events,
            seed=seed,
            live_seconds=live_seconds,
            live_rate=live_rate or None,
            workers=workers,
            say=say,
            signed=signed,
        )
    if _printed_as_json(result, as_json):
        return
    title = f"dmm bench: {result.events:,} events, {result.partitions} partition(s), {result.workers} worker(s)"
    table = _table(title, "value")
    table.add_row("bare aiokafka consumer, decode+validate only (events/s)", f"{result.baseline_events_per_s:,.0f}")
    table.add_row("dmm worker, broker -> ClickHouse, sustained (events/s)", f"{result.worker_events_per_s:,.0f}")
    table.add_row("worker / baseline", f"{result.worker_share:.0%}")
    table.add_row("worker wall time incl. start-up and drain (s)", f"{result.worker_seconds:.1f}")
    table.add_row(
        "  of it, start-up: launched to first records taken, state restored (s)", f"{result.worker_startup_s:.1f}"
    )
    table.add_row("worker time per event, by stage (µs)", f"{sum(result.stages_us_per_event.values()):,.1f}")
    for stage, micros in result.stages_us_per_event.items():
        table.add_row(f"  {stage}", f"{micros:,.1f}")
    table.add_row("  of store: the writes in their thread (µs)", f"{result.store_write_us_per_event:,.1f}")
    table.add_row(
        "worker CPU per event, all threads, first records taken to drained (µs)",
        f"{result.worker_cpu_us_per_event:,.1f}",
    )
    table.add_row(f"live phase: {result.live_events:,} events at {result.live_achieved_rate:,.0f}/s", "")
    table.add_row("  event lag to stored, p50 (ms)", f"{result.lag_p50_ms:,.0f}")
    table.add_row("  event lag to stored, p99 (ms)", f"{result.lag_p99_ms:,.0f}")
    table.add_row("  event lag to stored, max (ms)", f"{result.lag_max_ms:,.0f}")
    table.add_row(
        "  from published to stored, p50 / p99 / max (ms)",
        f"{result.published_lag_p50_ms:,.0f} / {result.published_lag_p99_ms:,.0f} / {result.published_lag_max_ms:,.0f}",
    )
    table.add_row(
        "  of it, the publisher behind its pace, p50 / p99 (ms)",
        f"{result.publisher_behind_p50_ms:,.0f} / {result.publisher_behind_p99_ms:,.0f}",
    )
    if result.signed is not None:
        verified = result.signed
        table.add_row(
            "signed: the worker verifying producer keys, sustained (events/s)", f"{verified.events_per_s:,.0f}"
        )
        table.add_row("  signed / unsigned throughput", f"{verified.events_per_s / result.worker_events_per_s:.1%}")
        table.add_row(
            "  worker CPU per event, signed / unsigned (µs)",
            f"{verified.worker_cpu_us_per_event:,.1f} / {result.worker_cpu_us_per_event:,.1f}",
        )
        table.add_row(
            "  decode stage per event, signed / unsigned (µs)",
            f"{verified.stages_us_per_event['decode']:,.1f} / {result.stages_us_per_event['decode']:,.1f}",
        )
        table.add_row(
            "  messages per batch, signed / unsigned (a fetch is capped in bytes)",
            f"{verified.batch_messages:,.0f} / {result.worker_batch_messages:,.0f}",
        )
        table.add_row("  signed messages rejected as unauthenticated", f"{verified.unauthenticated:,}")
    table.add_row("worker peak RSS (MiB)", f"{result.worker_peak_rss_mb:,.0f}")
    table.add_row("bench process peak RSS, incl. bare consumer (MiB)", f"{result.baseline_peak_rss_mb:,.0f}")
    console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


def _query_bench(rows: int, days: int, usage_per_trade: float, as_json: bool, say: Callable[[str], None]) -> None:
    from dmm import bench as benchmark

    with tempfile.TemporaryDirectory(prefix="dmm-bench-") as tmp, Progress(console=err_console) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        result = benchmark.run_queries(
            Path(tmp), rows, days=days, usage_rows=round(rows * usage_per_trade), say=say, progress=progress
        )
    if _printed_as_json(result, as_json):
        return
    title = (
        f"regulator questions and console endpoints, {result.rows:,} trades and {result.usage_rows:,} usage events "
        f"over {result.days} days (embedded)"
    )
    table = _table(title, "p50 (ms)", "max (ms)", first="question or endpoint")
    for question, timing in result.queries_ms.items():
        table.add_row(question, f"{timing['p50']:,.1f}", f"{timing['max']:,.1f}")
    console.print(table)
    console.print(
        f"generated in {result.generate_s:,.0f} s, rollups built in {result.rollup_s:,.0f} s, "
        f"store {result.store_mib:,.0f} MiB on disk"
    )


def _restore_bench(trades: int, as_json: bool, say: Callable[[str], None]) -> None:
    from dmm import bench as benchmark

    with tempfile.TemporaryDirectory(prefix="dmm-bench-") as tmp, Progress(console=err_console) as bar:
        task = bar.add_task("trades", total=trades)
        result = benchmark.run_restore(
            Path(tmp), trades, say=say, progress=lambda what, done, total: bar.update(task, completed=done)
        )
    if _printed_as_json(result, as_json):
        return
    table = _table(f"a worker's restore from {result.trades:,} trades of the last 24 h (embedded store)", "value")
    table.add_row("restore (s)", f"{result.seconds:,.1f}")
    for part, seconds in result.seconds_by_part.items():
        table.add_row(f"  {part} (s)", f"{seconds:,.1f}")
    table.add_row("trades restored per second", f"{result.trades_per_s:,.0f}")
    table.add_row("a day at 5,000 events/s at this pace (minutes)", f"{result.day_at_5k_per_s_minutes:,.1f}")
    table.add_row(
        "RSS before / after / peak during (MiB)",
        f"{result.rss_before_mib:,.0f} / {result.rss_after_mib:,.0f} / {result.peak_rss_mib:,.0f}",
    )
    table.add_row("wash-trading legs left in RAM", f"{result.wash_trading_legs_in_ram:,}")
    table.add_row("local state on disk (MiB)", f"{result.state_disk_mib:,.0f}")
    table.add_row("graceful stop keeping that state (s)", f"{result.keep_seconds:,.1f}")
    table.add_row(f"next start from the state kept ({result.restart_kept_state}) (s)", f"{result.restart_seconds:,.1f}")
    console.print(table)


def _soak(
    seconds: float, rate: float, event_hours: float, seed: int, as_json: bool, say: Callable[[str], None]
) -> None:
    from dmm import bench as benchmark

    with tempfile.TemporaryDirectory(prefix="dmm-soak-") as tmp:
        stack = _fresh_stack(Path(tmp), 1)
        result = benchmark.run_soak(stack, Path(tmp), rate, seconds, seed=seed, say=say, event_hours=event_hours)
    if _printed_as_json(result, as_json):
        return
    spanning = f", event time over {result.event_hours:,.0f} h" if result.event_hours else ""
    title = f"soak: {result.events:,} events at {result.rate:,.0f}/s for {result.seconds:,.0f} s{spanning}"
    table = _table(title, "value")
    first = result.rss_mib[0][1] if result.rss_mib else 0
    table.add_row("worker RSS first sample / at the end (MiB)", f"{first:,.0f} / {result.rss_end_mib:,.0f}")
    slope = f"{result.slope_mib_per_hour:,.1f}"
    table.add_row(f"worker RSS slope after {result.warm_up_s:,.0f} s of warm-up (MiB/hour)", slope)
    store_first = result.store_rss_mib[0][1] if result.store_rss_mib else 0
    table.add_row(
        "store process (dmm store-serve) RSS first sample / at the end (MiB)",
        f"{store_first:,.0f} / {result.store_rss_end_mib:,.0f}",
    )
    store_slope = f"{result.store_slope_mib_per_hour:,.1f}"
    table.add_row("store process RSS slope after the same warm-up (MiB/hour)", store_slope)
    table.add_row("dedup index at the end (events)", f"{result.dedup_index_events:,.0f}")
    ram, disk = result.dedup_ram_bytes_per_event, result.dedup_disk_bytes_per_event
    table.add_row("dedup RAM per remembered event (bytes: filters, memtables)", f"{ram:,.1f}")
    table.add_row("dedup disk per remembered event (bytes: its state directory)", f"{disk:,.1f}")
    table.add_row("dedup lookups read from disk", f"{result.dedup_disk_probe_rate:.3%}")
    if result.rss_at_horizon_mib is not None and result.rss_end_over_horizon is not None:
        table.add_row(
            "worker RSS when event time passed 24 h / at the end (MiB)",
            f"{result.rss_at_horizon_mib:,.0f} / {result.rss_end_mib:,.0f} ({result.rss_end_over_horizon - 1:+.1%})",
        )
    growth = f"{result.expected_index_mib_per_hour:,.1f}"
    table.add_row("expected index RAM growth at this rate (MiB/hour, flat after 24 h)", growth)
    console.print(table)


def _fresh_stack(workdir: Path, partitions: int) -> Settings:
    """Settings for a benchmark's own embedded stack: free ports, a store in `workdir`."""
    from dmm.broker import free_port

    return Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", events_partitions=partitions),
        clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"),
        web_port=free_port(),
    )


def _printed_as_json(result: Any, as_json: bool) -> bool:
    """`--json`: the figures as one JSON object on stdout, for scripts (progress went to stderr)."""
    if as_json:
        print(json.dumps(result.as_dict()))
    return as_json


def _table(title: str, *figures: str, first: str = "measure") -> Table:
    table = Table(title=title)
    table.add_column(first)
    for figure in figures:
        table.add_column(figure, justify="right")
    return table
