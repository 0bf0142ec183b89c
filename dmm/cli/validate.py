"""`dmm validate FILE`: what the worker would say about each line of a JSONL file, offline.

For exchanges checking their output before they publish it. Each line is read as
`dmm replay` would send it (one message, without its newline; blank lines too)
and judged by the worker's own decoder (`streams.decode`), so reasons and details
are the ones `datamarket.rejected_events` would hold. Then, like the worker: a
second `(exchange_id, event_id)` within the duplicate horizon of event time is a
duplicate, and an event older than the watermark (latest `occurred_at` so far)
minus the allowed lateness is accepted but late. Detectors do not run here.

A JSONL file carries no Kafka headers, so no signature: with `--keys KEYS_FILE` each
line is judged as `dmm replay --keys KEYS_FILE` would send it (signed with the first
key of its exchange in the file, unsigned when it names no exchange with a key there)
to a monitor configured with those keys (contract, Amendment 1). A line of a known
exchange without a key in the file is then `unauthenticated`, as the worker would
reject it. Without `--keys`, signatures are not judged: a monitor without keys.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape
from rich.table import Table

from dmm.cli.app import app, console, err_console
from dmm.replay import line_signing_key
from models import AnyEvent, occurred_ms
from models.keys import KeyRing, KeysFileError, load_keys
from settings import get_settings
from streams.authenticate import Authenticator
from streams.decode import REASONS, Rejection, decode

Outcome = Literal["accepted", "duplicate", "rejected"]
_SHOWN = 50
_STYLE = {"accepted": "green", "duplicate": "yellow", "rejected": "bold red"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The worker's answer for one line (1-based)."""

    line: int
    outcome: Outcome
    type: str = ""
    exchange_id: str = ""
    event_id: str = ""
    reason: str = ""
    detail: str = ""
    late: bool = False
    duplicate_of: int = 0  # the line first carrying this (exchange_id, event_id)


def file_lines(path: Path) -> Iterator[bytes]:
    """Each line of the file as `dmm replay` publishes it: the bytes without the trailing newline."""
    with path.open("rb") as lines:
        for raw in lines:
            yield raw[:-1] if raw.endswith(b"\n") else raw


def judge(
    lines: Iterable[bytes], dedup_horizon_s: int, allowed_lateness_s: int, keys: KeyRing | None = None
) -> Iterator[Verdict]:
    """A verdict per line, in order, with the worker's decoder, duplicate rule and lateness; with `keys`, its
    producer authentication too, each line signed as `dmm replay` signs it with those keys."""
    first_seen: dict[tuple[str, str], tuple[int, int]] = {}  # identity -> (line, occurred ms)
    watermark_ms = 0
    authenticated = _signed_replay(keys) if keys is not None else None
    for number, line in enumerate(lines, start=1):
        outcome: AnyEvent | Rejection = decode(line)
        if authenticated is not None:
            outcome = authenticated(outcome, line)
        if isinstance(outcome, Rejection):
            yield Verdict(number, "rejected", "", outcome.exchange_id, outcome.event_id, outcome.reason, outcome.detail)
            continue
        at = occurred_ms(outcome.occurred_at)
        first = first_seen.get(outcome.key)
        if first is not None and first[1] >= watermark_ms - dedup_horizon_s * 1000:
            yield Verdict(number, "duplicate", outcome.type, *outcome.key, duplicate_of=first[0])
            continue
        late = at < watermark_ms - allowed_lateness_s * 1000
        first_seen[outcome.key] = (number, at)
        watermark_ms = max(watermark_ms, at)
        yield Verdict(number, "accepted", outcome.type, *outcome.key, late=late)


def _signed_replay(keys: KeyRing) -> Callable[[AnyEvent | Rejection, bytes], AnyEvent | Rejection]:
    """What a monitor holding `keys` makes of a line's decoded outcome, the line signed as `dmm replay --keys`
    signs it (the worker's own check, `streams.authenticate`)."""
    authenticator = Authenticator(keys)

    def authenticated(outcome: AnyEvent | Rejection, line: bytes) -> AnyEvent | Rejection:
        signing_key = line_signing_key(line, keys)
        return authenticator.verified(outcome, signing_key.headers(line) if signing_key else [], line)

    return authenticated


@app.command()
def validate(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL file, one event per line"),
    as_json: bool = typer.Option(False, "--json", help="one JSON verdict per line of FILE, for scripts"),
    keys_file: Path | None = typer.Option(
        None,
        "--keys",
        exists=True,
        dir_okay=False,
        readable=True,
        help="keys file (exchange_id,key_id,secret): judge each line as `dmm replay --keys` sends it (signed with "
        "its exchange's first key here) to a monitor holding these keys; a line of a known exchange without a "
        "key here is unauthenticated. Without it, signatures are not judged",
    ),
) -> None:
    """Say for each line of FILE what the worker would do: accept, count as duplicate, or reject (and why).

    Exit code 1 if any line would be rejected, 2 if the keys file is unusable.
    """
    settings = get_settings()
    try:
        keys = load_keys(keys_file) if keys_file is not None else None
    except KeysFileError as exc:
        err_console.print(f"[red]unusable keys file:[/] {exc}")
        raise typer.Exit(2) from exc
    verdicts = judge(file_lines(file), settings.dedup_horizon_s, settings.allowed_lateness_s, keys)
    counts: Counter[str] = Counter()
    late = 0
    problems: list[Verdict] = []
    for verdict in verdicts:
        counts[verdict.reason or verdict.outcome] += 1
        late += verdict.late
        if as_json:
            print(json.dumps(asdict(verdict), ensure_ascii=False))
        elif verdict.outcome != "accepted" and len(problems) < _SHOWN:
            problems.append(verdict)
    rejected = sum(counts[reason] for reason in REASONS)
    if not as_json:
        _print(file, counts, late, rejected, problems)
    if rejected:
        raise typer.Exit(1)


def _print(file: Path, counts: Counter[str], late: int, rejected: int, problems: list[Verdict]) -> None:
    total = sum(counts.values())
    summary = Table(title=f"{file.name}: {total} line(s)")
    summary.add_column("outcome")
    summary.add_column("lines", justify="right")
    summary.add_row(f"[{_STYLE['accepted']}]accepted[/]", str(counts["accepted"]))
    if late:
        summary.add_row("  of which late (stored, window closed)", str(late))
    summary.add_row(f"[{_STYLE['duplicate']}]duplicate[/] (counted once)", str(counts["duplicate"]))
    for reason in REASONS:
        if counts[reason]:
            summary.add_row(f"[{_STYLE['rejected']}]rejected[/]: {reason}", str(counts[reason]))
    console.print(summary)
    if problems:
        shown = "" if len(problems) < _SHOWN else f" (first {_SHOWN}; --json lists all)"
        table = Table(title=f"lines the worker would not store as new events{shown}", show_lines=True)
        table.add_column("line", justify="right")
        table.add_column("outcome")
        table.add_column("exchange_id / event_id", overflow="fold")
        table.add_column("why", overflow="fold", min_width=30)
        for v in problems:
            why = f"{v.reason}: {v.detail}" if v.outcome == "rejected" else f"same event as line {v.duplicate_of}"
            identity = f"{v.exchange_id} / {v.event_id}" if v.exchange_id or v.event_id else ""
            table.add_row(str(v.line), f"[{_STYLE[v.outcome]}]{v.outcome}[/]", escape(identity), escape(why))
        console.print(table)
    if rejected:
        console.print(f"[bold red]{rejected} line(s) would be rejected[/] (stored in rejected_events, not counted).")
    else:
        console.print("[green]No line would be rejected.[/]")
