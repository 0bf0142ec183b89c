"""Child processes that die with the process that started them.

`dmm up` starts a broker, a worker and a store server. Killed with SIGKILL, it gets no chance to stop them:
a broker left behind keeps its port and the next `dmm up` refuses to start. Linux's `PR_SET_PDEATHSIG`
has the kernel signal the child when its parent goes, whatever the cause (systemd, supervisord and
Kubernetes' pause container rely on the same). Elsewhere the children are stopped on a clean exit only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when this process dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return arrange
