"""Local state left by a graceful stop, and the checks before the next start takes it instead of rebuilding.

Rebuilding a day of the duplicate index and the wash-trading legs from the store
takes tens of minutes at national rates (`dmm bench --restore-trades`). After a
graceful stop with nothing in flight, that state is exactly what a rebuild from
the store would give, so the worker leaves it in `DMM_STATE_DIR/kept/` with a
manifest naming what it was built from (`origin`: the log's id, every partition's
progress mark, the settings that shape it), a SHA-256 of each file of its own and
the size of each of RocksDB's (RocksDB checksums its blocks and its manifest itself).

The next start takes it only if the store's origin is the same (nothing stored
since, no stray rows) and every file is as written. Any doubt (no manifest, an
unreadable or older one, a missing or changed file, another log, the store moved
on) discards it and the state is rebuilt from the store: lost or damaged local
state costs time, never an outcome. A start takes the directory by renaming it
(one process wins) and removes the manifest before anything else, so a crash
afterwards never takes the same state twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sinks.clickhouse.store import process_running

log = logging.getLogger("dmm.kept_state")

VERSION = 1  # of the manifest and of what the parts write: a change makes older kept state unusable
KEPT = "kept"
MANIFEST = "manifest.json"
DATABASE = "db"  # within a part: RocksDB's directory, checksummed by RocksDB itself


def keep(state_dir: Path, origin: Mapping[str, Any], parts: Mapping[str, Callable[[Path], None]]) -> Path:
    """Have each part write itself into a directory of its own (`parts`: name -> writer, given that directory;
    RocksDB's directories go by the name `DATABASE`), then seal them with a manifest, in place of any state
    kept before."""
    staging = state_dir / f"keeping-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, write in parts.items():
        (staging / name).mkdir()
        write(staging / name)
    manifest = {"version": VERSION, "origin": dict(origin), "files": _digests(staging)}
    (staging / MANIFEST).write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
    kept = state_dir / KEPT
    shutil.rmtree(kept, ignore_errors=True)
    staging.rename(kept)
    return kept


def take(state_dir: Path, origin: Mapping[str, Any]) -> tuple[Path | None, str]:
    """The kept state as this process's own directory (its parts inside, by name) if it was built from
    `origin` and every file is as written, else None; with why, for the log."""
    _sweep(state_dir)
    kept = state_dir / KEPT
    if not kept.exists():
        return None, "no state kept"
    mine = state_dir / f"taking-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    try:
        kept.rename(mine)  # one process takes it
    except OSError as exc:
        return None, f"taken by another process ({exc.strerror})"
    why = _check(mine, origin)
    if why:
        shutil.rmtree(mine, ignore_errors=True)
        return None, why
    return mine, "taken"


def take_or_rebuild(part: Path | None, take: Callable[[Path], None], rebuild: Callable[[], None]) -> None:
    """One piece of state: from its kept `part` if there is one and it reads back whole, else (`take` raised:
    the store still has it all) rebuilt from the store."""
    if part is not None and part.is_dir():
        try:
            take(part)
            return
        except Exception:
            log.warning("kept state unusable; rebuilding it from the store", extra={"part": part.name}, exc_info=True)
    rebuild()


def _sweep(state_dir: Path) -> None:
    """Remove what a process that died while keeping or taking state left (`keeping-<pid>`, `taking-<pid>`)."""
    for path in [*state_dir.glob("keeping-*"), *state_dir.glob("taking-*")]:
        pid = path.name.split("-", 1)[1]
        if pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _check(directory: Path, origin: Mapping[str, Any]) -> str:
    """Why the state in `directory` must not be used ('' if it may); its manifest is gone either way."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"no readable manifest ({type(exc).__name__})"
    path.unlink()
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
        return "kept by another version"
    kept, now = manifest.get("origin"), json.loads(json.dumps(dict(origin)))
    if kept != now:
        differs = sorted(key for key in {*dict(kept or {}), *now} if dict(kept or {}).get(key) != now.get(key))
        return f"built from other {', '.join(differs)} than the store holds now"
    if manifest.get("files") != _digests(directory):
        return "its files are not as they were written"
    return ""


def _digests(directory: Path) -> dict[str, str]:
    """Per file under `directory` (by relative path) but the manifest: its SHA-256, or for RocksDB's own files
    (checksummed by RocksDB, and tens of GiB at national rates) its size; RocksDB's diagnostic log aside."""
    found = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if not path.is_file() or relative.as_posix() == MANIFEST:
            continue
        if DATABASE not in relative.parts[:-1]:
            with path.open("rb") as file:
                found[relative.as_posix()] = hashlib.file_digest(file, "sha256").hexdigest()
        elif not relative.name.startswith("LOG"):  # RocksDB's diagnostic log: written until its last handle goes
            found[relative.as_posix()] = f"size {path.stat().st_size}"
    return found
