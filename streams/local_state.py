"""The worker's local disk state: RocksDB directories of its own under `DMM_STATE_DIR`.

What the worker remembers for 24 h of event time (the duplicate index's exact
entries, the wash-trading rule's older legs) is larger than RAM at national
rates, so it lives on local disk. None of it needs a backup: the store is the
truth and every piece is rebuilt from it on start. Each holder therefore opens a
directory of its own, named after its process (`<kind>-<pid>-<random>`), removes
it when it goes, and sweeps the ones whose process is gone (a killed worker
leaves its own behind). Within a directory, state is kept in one column family
per span of event time, so a span is forgotten whole, in one drop, once it is
behind the horizon.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

from rocksdict import (
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from sinks.clickhouse.store import process_running

HOUR_MS = 3_600_000
SPAN_HOURS = 4  # local state is kept per span of event time, dropped whole once the span is behind the horizon
SPAN_MS = SPAN_HOURS * HOUR_MS


class LocalDB:
    """One RocksDB directory of this process's own, in raw-bytes mode, its column families made and dropped by
    name. No write-ahead log: a crash loses the directory anyway (the store restores what it held)."""

    def __init__(
        self, state_dir: Path | None, kind: str, cache_bytes: int = 4 << 20, taken: Path | None = None
    ) -> None:
        """`state_dir`: where (None: the system's temporary directory); `kind`: the directory's name prefix;
        `taken`: a kept directory (`keep`) to open as this process's own, with its column families."""
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            _sweep(state_dir, kind)
        self.path = Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=state_dir))
        self.cache = Cache(cache_bytes)
        self.options = _options(self.cache)
        families = None
        if taken is not None:
            self.path.rmdir()
            taken.rename(self.path)  # this process's now: swept with it if it is killed
            names = [name for name in Rdict.list_cf(str(self.path), self.options) if name != "default"]
            families = dict.fromkeys(names, self.options)
        self.db = Rdict(str(self.path), self.options, column_families=families)
        self.unlogged = WriteOptions()
        # A property, stubbed as a method.
        self.unlogged.disable_wal = True  # type: ignore[method-assign, assignment]
        self._closing = weakref.finalize(self, _discard, self.db, self.path)

    def column(self, name: str) -> tuple[Rdict, ColumnFamily]:
        """A new column family: its own view (reads, iteration, properties) and its handle (batched writes)."""
        column = self.db.create_column_family(name, self.options)
        return column, self.db.get_column_family_handle(name)

    def existing(self, name: str) -> tuple[Rdict, ColumnFamily]:
        """A column family of a taken directory, as `column` gives a new one."""
        return self.db.get_column_family(name), self.db.get_column_family_handle(name)

    def drop(self, name: str) -> None:
        self.db.drop_column_family(name)

    def write(self, writes: WriteBatch) -> None:
        self.db.write(writes, self.unlogged)

    def keep(self, into: Path, columns: list[Rdict]) -> None:
        """Flush `columns` (every column family written: there is no log to replay), close, and move the
        directory to `into` for a later process to take; it is no longer removed with this one."""
        for column in columns:
            column.flush()
        self._closing.detach()
        self.db.close()
        self.path.rename(into)

    def close(self) -> None:
        """Close the database and remove its directory (also done when it is collected)."""
        self._closing()


def _options(cache: Cache) -> Options:
    """Raw bytes, no compression (digests and ids barely compress), small memtables (a batch goes into a 4 MiB
    one twice as fast as into a 64 MiB one: it stays in the CPU's cache), bounded in all, and one small block
    cache for every column family (reads are rare: resends, false positives, wash-trading candidates)."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_compression_type(DBCompressionType.none())
    options.set_write_buffer_size(4 << 20)
    options.set_db_write_buffer_size(16 << 20)
    tables = BlockBasedOptions()
    tables.set_block_cache(cache)
    tables.set_block_size(16 << 10)  # a table file's index, held in RAM, is then ~0.04 bytes a key, not ~0.17
    options.set_block_based_table_factory(tables)
    return options


def _sweep(state_dir: Path, kind: str) -> None:
    """Remove the directories of this kind whose process is gone."""
    for path in state_dir.glob(f"{kind}-*-*"):
        pid = path.name.removeprefix(f"{kind}-").split("-", 1)[0]
        if pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _discard(db: Rdict, path: Path) -> None:
    db.close()
    shutil.rmtree(path, ignore_errors=True)
