"""A rich progress bar over simulated time, for runs long enough to want one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dmm.simulator.wire import Message


def track_event_time(
    messages: Iterable[Message], start_ms: int, duration_s: float | None, console: Console
) -> Iterator[Message]:
    """Pass messages through while showing how much simulated time they cover (of `duration_s`)."""
    columns = (
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.completed:.0f} s event time"),
        TextColumn("{task.fields[events]} events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("simulate", total=duration_s, events=0)
        for count, message in enumerate(messages, start=1):
            yield message
            progress.update(task, completed=(message.occurred_ms - start_ms) / 1_000, events=count)
        if duration_s is not None:
            progress.update(task, completed=duration_s)
