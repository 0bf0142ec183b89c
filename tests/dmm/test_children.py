"""Children of `dmm up` die with it, even when a thread that has since ended started them; stops are bounded."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from dmm.children import spawn, stop_all
from dmm.stack import StoreClaim, StoreInUse

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from dmm.children import spawn

    pids = []
    def start(sig):
        with open(sys.argv[1], "ab") as log:
            pids.append(spawn([sys.executable, "-c", "import time; time.sleep(120)"], on_parent_death=sig, log=log).pid)

    start(signal.SIGKILL)  # from the main thread
    for sig in (signal.SIGKILL, signal.SIGTERM):  # from threads that end at once
        thread = threading.Thread(target=start, args=(sig,))
        thread.start()
        thread.join()
    print(*pids, flush=True)
    time.sleep(120)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.integration
def test_children_outlive_the_thread_that_started_them_and_die_with_the_process(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "children.log")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 3
        time.sleep(0.5)
        assert not [pid for pid in pids if _gone(pid)], "a child died with the thread that started it"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while [pid for pid in pids if not _gone(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if not _gone(pid)] == []


@pytest.mark.integration
def test_stop_all_signals_every_child_at_once_and_kills_the_ones_that_linger(tmp_path: Path) -> None:
    ignores_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(120)"
    )
    with (tmp_path / "children.log").open("ab") as log:
        stubborn = [
            spawn([sys.executable, "-c", ignores_term], on_parent_death=signal.SIGKILL, log=log) for _ in range(3)
        ]
        polite = spawn([sys.executable, "-c", "import time; time.sleep(120)"], on_parent_death=signal.SIGKILL, log=log)
    deadline = time.monotonic() + 30
    while (tmp_path / "children.log").read_text().count("1") < 3:  # the SIGTERM handlers are in place
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    children = [*stubborn, polite, None]
    codes = stop_all([(child, signal.SIGTERM) for child in children], 1.0)
    took = time.monotonic() - began
    print(f"stop_all of 4 children (3 ignoring SIGTERM, 1 s grace): {took:.2f} s")
    assert codes == [-signal.SIGKILL] * 3 + [-signal.SIGTERM, None]
    assert took < 30  # the grace is shared, not one per child


def test_a_second_claim_on_a_held_store_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    store = tmp_path / "wd" / "chdb"
    refused = r"in use by another `dmm up` \(pid \d+\).*another --workdir"
    with StoreClaim(store), pytest.raises(StoreInUse, match=refused):
        StoreClaim(store).acquire()
    StoreClaim(store).acquire().release()


@pytest.mark.integration
def test_a_child_holding_the_claim_keeps_the_store_claimed_after_its_parent_let_go(tmp_path: Path) -> None:
    store = tmp_path / "wd" / "chdb"
    claim = StoreClaim(store).acquire()
    assert claim.descriptor is not None
    with (tmp_path / "child.log").open("ab") as log:
        child = spawn(
            [sys.executable, "-c", "import time; time.sleep(120)"],
            on_parent_death=signal.SIGKILL,
            log=log,
            pass_fds=(claim.descriptor,),
        )
    claim.release()
    try:
        with pytest.raises(StoreInUse):
            StoreClaim(store).acquire()
    finally:
        stop_all([(child, signal.SIGTERM)], 5)
    StoreClaim(store).acquire().release()
