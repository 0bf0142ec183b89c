"""Keep `dmm up`'s worker alive: restart it with backoff when it dies, never touch the broker.

The embedded broker keeps its log in memory, so stopping it with the worker would lose
every message not yet consumed. The worker, on the other hand, rebuilds all its state
from ClickHouse on start and is told a redelivery from a duplicate, so a restart loses
and doubles nothing: restarting the worker alone is always the right move.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dmm.query import wait_until_ready
from dmm.stack import EmbeddedStack

Report = Callable[[str], None]

_POLL_S = 0.5
_READY_TIMEOUT_S = 120.0


@dataclass
class Backoff:
    """Delay before the next restart: `first_s` doubling up to `max_s`, back to `first_s`
    once a worker has stayed up `stable_s` (so a crash a day never waits 30 s).

    Not tenacity (which the webhook's retries use): tenacity retries a call until it succeeds, counting
    attempts that only grow, and sleeps between them. Here nothing is called again: a process that ran for
    a while died, its uptime resets the count, and the wait is `stop.wait` so Ctrl-C ends it at once. Fitting
    that into tenacity's retry loop would take more code than the doubling below."""

    first_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0
    _next_s: float = field(init=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def after(self, uptime_s: float) -> float:
        """The delay to wait after a worker that ran `uptime_s` died."""
        if uptime_s >= self.stable_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay


def describe_exit(returncode: int) -> str:
    """'killed by SIGKILL' or 'exited with code 70': what a console reader needs to know."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class WorkerSupervisor:
    """Watch the stack's worker until `stop` is set; restart it each time it dies."""

    def __init__(self, stack: EmbeddedStack, report: Report, backoff: Backoff | None = None) -> None:
        self.stack = stack
        self.report = report
        self.backoff = backoff or Backoff()
        self.restarts = 0

    def run(self, stop: threading.Event) -> None:
        """Block until `stop` is set (Ctrl-C arrives as KeyboardInterrupt, as everywhere in `dmm up`)."""
        while not stop.is_set():
            worker = self.stack.worker
            if worker is None or worker.poll() is None:
                stop.wait(_POLL_S)
                continue
            uptime = time.monotonic() - self.stack.worker_started
            delay = self.backoff.after(uptime)
            self.restarts += 1
            self.report(
                f"worker (pid {worker.pid}) {describe_exit(worker.returncode)} after {uptime:.0f} s; "
                f"restart {self.restarts} in {delay:g} s (broker kept up, log: {self.stack.worker_log})"
            )
            if stop.wait(delay):
                return
            self._restart()

    def _restart(self) -> None:
        self.stack.start_worker(wait=False, restarts=self.restarts)
        worker = self.stack.worker
        assert worker is not None
        try:
            wait_until_ready(self.stack.settings, _READY_TIMEOUT_S, alive=lambda: worker.poll() is None)
        except RuntimeError:
            return  # died while starting: the next turn of `run` reports it and backs off further
        except TimeoutError as exc:
            self.report(f"worker (pid {worker.pid}) restarted but not ready yet: {exc}; still watching it")
            return
        self.report(f"worker back: pid {worker.pid}, restart {self.restarts}, consuming again")
