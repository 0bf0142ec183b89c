"""The embedded store's engine in a child process: it answers as chdb does in-process, goes when its parent
goes (so a restarted worker can open the directory), and comes back after it died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sinks.clickhouse.store import ChdbStore, StoreError


def exited(pid: int, within_s: float) -> bool:
    """Whether the process ended (gone, or a zombie its new parent has not reaped yet) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line[:6] == "State:")
        except FileNotFoundError:
            return True
        if "Z" in state.split()[1]:
            return True
        time.sleep(0.05)
    return False


def engine_pid(store: ChdbStore) -> int:
    return store._session._process.pid  # type: ignore[attr-defined]


@pytest.fixture
def store(tmp_path: Path) -> ChdbStore:
    opened = ChdbStore(tmp_path / "chdb", own_process=True)
    opened.apply_schema()
    yield opened
    opened.close()


def test_it_answers_as_the_in_process_engine(store: ChdbStore, tmp_path: Path) -> None:
    sql = "SELECT number AS n, toString(number) AS s FROM numbers(3)"
    assert store.rows(sql) == [{"n": 0, "s": "0"}, {"n": 1, "s": "1"}, {"n": 2, "s": "2"}]
    in_process = ChdbStore(tmp_path / "in-process")
    assert store.arrow(sql).equals(in_process.arrow(sql))  # types, nullability and values alike
    in_process.close()
    assert store.arrow(sql).column("n").to_pylist() == [0, 1, 2]
    assert store.arrow("SELECT 1 AS n WHERE 0").num_rows == 0
    assert store.text(sql, "CSV") == '0,"0"\n1,"1"\n2,"2"\n'
    with pytest.raises(StoreError, match="Syntax error"):
        store.command("SELEC 1")
    assert store.rows("SELECT 1 AS still_there") == [{"still_there": 1}]  # an error does not end the engine
    with pytest.raises(StoreError, match="cannot open the embedded store"):  # one process per directory
        ChdbStore(tmp_path / "chdb", own_process=True)


def test_an_engine_that_died_is_started_again(store: ChdbStore) -> None:
    """As an outage: the statement it died under fails (the worker retries it), the next one starts another."""
    store.command("INSERT INTO datamarket.rule_changes (change, accepted, error) VALUES ('{}', 0, 'kept')")
    pid = engine_pid(store)
    os.kill(pid, signal.SIGKILL)
    assert exited(pid, 5)
    answers = []
    for _ in range(2):
        try:
            answers.append(store.rows("SELECT error FROM datamarket.rule_changes"))
        except StoreError as exc:
            assert "restarts it" in str(exc)
    assert answers and answers[-1] == [{"error": "kept"}]
    assert engine_pid(store) != pid


def test_the_engine_goes_with_its_parent_and_lets_go_of_the_directory(tmp_path: Path) -> None:
    """A worker SIGKILLed in the middle of a statement: its engine exits at once, and the restarted worker
    opens the same directory."""
    path = tmp_path / "chdb"
    killed_mid_statement = (
        "import sys; from pathlib import Path; from sinks.clickhouse.store import ChdbStore\n"
        "store = ChdbStore(Path(sys.argv[1]), own_process=True)\n"
        "print(store._session._process.pid, flush=True)\n"
        "store.command('SELECT sleepEachRow(1) FROM numbers(60) SETTINGS max_block_size = 1, "
        "function_sleep_max_microseconds_per_block = 100000000')\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", killed_mid_statement, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    engine = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.kill()
    parent.wait()
    assert exited(engine, 3)
    reopened = ChdbStore(path, own_process=True)
    assert reopened.rows("SELECT 1 AS ok") == [{"ok": 1}]
    reopened.close()
