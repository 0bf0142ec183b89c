"""Child processes that die with the process that started them, and stop in bounded time.

`dmm up` starts a broker, a worker (or several, and a store server). Killed with SIGKILL, it gets no chance to
stop them: a broker left behind keeps its port, a worker keeps the store, and the next `dmm up` refuses to
start. Linux's `PR_SET_PDEATHSIG` has the kernel signal the child when its parent goes, whatever the cause
(systemd, supervisord and Kubernetes' pause container rely on the same). Elsewhere the children are stopped on
a clean exit only.

The kernel sends that signal when the *thread* that forked the child ends, not the process: a child started
from a short-lived thread would be killed with it. So `spawn` forks from the main thread, and from any other
thread hands the fork to one spawner thread that lives as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO

_PR_SET_PDEATHSIG = 1

_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmm-spawner")


def dies_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when this process dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return arrange


def spawn(
    command: Sequence[str],
    *,
    on_parent_death: signal.Signals,
    log: IO[bytes],
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start `command` with its output appended to `log`; it gets `on_parent_death` when this process dies.

    Each child leads a session of its own: Ctrl-C in the terminal reaches `dmm up` alone, which stops its
    children in order (`stop_all`) rather than each of them racing the others."""

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=dies_with_parent(on_parent_death),
        )

    if threading.current_thread() is threading.main_thread():
        return fork()
    return _spawner.submit(fork).result()


def stop_all(
    children: Sequence[tuple[subprocess.Popen[bytes] | None, signal.Signals]], grace_s: float
) -> list[int | None]:
    """Send each running child its stop signal at once, wait for all of them together at most `grace_s`,
    then SIGKILL whichever is left. Returns their exit codes (None for a child never started)."""
    running = [(child, sig) for child, sig in children if child is not None and child.poll() is None]
    for child, sig in running:
        child.send_signal(sig)
    deadline = time.monotonic() + grace_s
    for child, _ in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return [None if child is None else child.returncode for child, _ in children]
