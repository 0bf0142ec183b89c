"""A worker process watched from outside, as the fault-injection tests do: its metrics, its memory, its log lines,
and waiting for it to reach a state."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dmm.query import worker_metrics as scrape  # noqa: F401  (the tests' name for it)


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines (non-JSON lines, e.g. from Faust's banner, are skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def wait_for(condition: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """`condition()`'s first truthy value, polled every `interval` s; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
