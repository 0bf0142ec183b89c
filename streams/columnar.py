"""Usage events of a fetch decoded as Arrow columns: no Python object per event.

Usage is most of the market's traffic (more than four events in five). The
per-message path (`streams.decode`) builds a pydantic model per event and every
later stage reads its attributes one by one; here a fetch's usage messages are
parsed at once by Arrow's JSON reader (C++, off the GIL, on every core) and
checked column by column against the contract's rules for usage.

It only ever *accepts*: a row is `ok` when it is provably an event `decode`
would accept, with the same field values and the same event time. Anything else
(a rule broken, an unusual shape, a message Arrow cannot read or reads
differently from pydantic) is left to `decode`, which accepts or rejects it
with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from models import CONTENT_SEPARATOR, SCHEMA, Dims, occurred_us
from models.digest import md5
from models.registry import exchanges
from sinks.clickhouse.batches import event_columns
from streams.decode import EARLIEST_MS, LATEST_MS, WallClock

# Longest message taken here. pydantic refuses JSON nested 255 deep (`malformed`), Arrow does not: a message
# this short cannot nest that deep (two bytes a level), so both read it alike.
LONGEST = 480
_USAGE_TAG = b'"usage"'
_OPEN, _CLOSE = ord("{"), ord("}")
_TEXT = ("exchange_id", "event_id", "product_id", "buyer_id")
_FIELDS = pa.schema(
    [
        ("schema", pa.string()),
        ("type", pa.string()),
        ("occurred_at", pa.string()),
        *[(name, pa.string()) for name in _TEXT],
        ("calls", pa.int64()),
        ("bytes", pa.int64()),
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=_FIELDS, unexpected_field_behavior="ignore")
_READ = pj.ReadOptions(use_threads=True, block_size=1 << 20)
# RFC 3339 as `models.fields.RFC3339` (RE2 here: ASCII digits only, `$` only at the very end, so it is stricter
# where the two differ, and the stricter answer goes to `decode`).
_TIMESTAMP = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})$"
)
_NO_SECOND = -(2**62)  # an instant Python refuses (e.g. second 60): the row goes to `decode`
# A control character (Unicode category Cc), which no identifier may hold (`models.fields.NO_CONTROL`).
_CONTROL = r"[\x00-\x1f\x7f-\x{9f}]"
_EPOCH_TEXT = "1970-01-01T00:00:00Z"  # stands in for a stamp of the wrong shape, so the others can be read


@dataclass(frozen=True, slots=True)
class UsageColumns:
    """Row i is the i-th candidate message given to `decode_usage`."""

    table: pa.Table  # exchange_id, event_id, product_id, buyer_id (string), calls, bytes, content_digest (uint64)
    at_us: np.ndarray  # int64: event time in µs since the epoch (meaningful where `ok`)
    contents: np.ndarray  # uint64: what each row says, as `models.content_digest` (meaningful where `ok`)
    ok: np.ndarray  # bool: a valid usage event, exactly as `decode` accepts it
    keys: list[tuple[str, str]]  # (exchange_id, event_id) per row
    products: list[str | None]  # product_id per row


def earliest(exchange_ids: pa.Array, at_ms: np.ndarray) -> dict[str, int]:
    """Per exchange, the earliest of these events' times (ms)."""
    chosen = pa.table({"exchange_id": exchange_ids, "at_ms": at_ms})
    first = chosen.group_by("exchange_id", use_threads=False).aggregate([("at_ms", "min")])
    return dict(zip(first["exchange_id"].to_pylist(), first["at_ms_min"].to_pylist(), strict=True))


def candidates(values: Sequence[bytes | None]) -> list[bool]:
    """Per message, whether it is worth reading here: one short JSON object that mentions usage (cheap tests; the
    rest is checked after). One comprehension for a fetch, not a call per message: it runs for every message."""
    return [
        _USAGE_TAG in value and len(value) <= LONGEST and value[0] == _OPEN and value[-1] == _CLOSE if value else False
        for value in values
    ]


def decode_usage(values: list[bytes], clock: WallClock | None = None) -> UsageColumns:
    """Read candidate messages (see `candidates`) as columns, one row each. `clock`: as `decode`'s, a row further
    ahead of it than it accepts is left to `decode` (a `future_event`)."""
    table = _read(values)
    ok = _true(pc.equal(table.column("schema"), SCHEMA)) & _true(pc.equal(table.column("type"), "usage"))
    ok &= _true(pc.is_in(table.column("exchange_id"), value_set=_exchange_codes()))
    for name in _TEXT:
        length = pc.utf8_length(table.column(name))
        ok &= _true(pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, 64)))
        ok &= ~_true(pc.match_substring_regex(table.column(name), _CONTROL))
    for name in ("calls", "bytes"):
        ok &= _true(pc.greater_equal(table.column(name), 0))
    at_us = _event_time_us(table.column("occurred_at"))
    latest_ms = LATEST_MS if clock is None else min(LATEST_MS, clock.latest_ms)
    ok &= (at_us // 1000 >= EARLIEST_MS) & (at_us // 1000 <= latest_ms)
    columns = table.select(list(_TEXT)).append_column("calls", _count(table.column("calls")))
    columns = columns.append_column("bytes", _count(table.column("bytes")))
    contents = _content_digests(columns, at_us)
    columns = columns.append_column("content_digest", pa.array(contents, pa.uint64()))
    keys = list(zip(columns.column("exchange_id").to_pylist(), columns.column("event_id").to_pylist(), strict=True))
    return UsageColumns(columns, at_us, contents, ok, keys, columns.column("product_id").to_pylist())


def _content_digests(columns: pa.Table, at_us: np.ndarray) -> np.ndarray:
    """Per row, `models.content_digest` of the text `models.content_text` gives the same event: its parts joined
    by Arrow at once, then one MD5 a row over slices of the joined bytes (no Python object per text; a row not
    `ok` gets the digest of whatever it holds, never read)."""
    parts = [
        pc.cast(pa.array(at_us), pa.string()),
        "usage",
        *(pc.fill_null(columns.column(name), "") for name in ("product_id", "buyer_id")),
        *(pc.cast(pc.fill_null(columns.column(name), 0), pa.string()) for name in ("calls", "bytes")),
    ]
    joined = pc.binary_join_element_wise(*parts, CONTENT_SEPARATOR)
    texts = joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
    ends = np.frombuffer(texts.buffers()[1], np.int32)[texts.offset : texts.offset + len(texts) + 1].tolist()
    data = memoryview(texts.buffers()[2])
    halves = b"".join([md5(data[start:end], usedforsecurity=False).digest()[:8] for start, end in pairwise(ends)])
    digests = np.frombuffer(halves, ">u8").astype(np.uint64)
    digests[digests == 0] = 1  # as `content_digest`: 0 stands for "not known"
    return digests


def _read(values: list[bytes]) -> pa.Table:
    """One row per message. A message Arrow cannot read (or not as one row) is found by halving the list, and
    is a row of nulls (not `ok`): one bad message leaves the others to the columns."""
    data = b"\n".join(values)
    try:
        if not data.isascii():  # (ASCII is UTF-8, and a tenth of the cost to tell)
            data.decode("utf-8")  # pydantic rejects a message with invalid UTF-8 anywhere, even in a field ignored
        table = pj.read_json(pa.BufferReader(data), read_options=_READ, parse_options=_PARSE)
    except (UnicodeDecodeError, pa.ArrowInvalid):
        table = None
    if table is not None and table.num_rows == len(values):  # else a message held two objects, or a line break
        return table
    if len(values) == 1:
        return pa.table([pa.nulls(1, field.type) for field in _FIELDS], schema=_FIELDS)
    half = len(values) // 2
    return pa.concat_tables([_read(values[:half]), _read(values[half:])])


def _event_time_us(text: pa.ChunkedArray) -> np.ndarray:
    """µs since the epoch as Python's `datetime.fromisoformat` reads each stamp (a fraction beyond 6 digits
    truncated), `_NO_SECOND` where the stamp is not one. Arrow's own parser reads a fetch's stamps at once; it
    refuses the whole column for one impossible instant (a 30 February, a second 60, a lower-case T), and then
    Python parses each distinct second once."""
    shaped = _true(pc.match_substring_regex(text, _TIMESTAMP))
    try:
        ns = pc.cast(pc.if_else(shaped, text, _EPOCH_TEXT), pa.timestamp("ns", "UTC"))
    except pa.ArrowInvalid:
        return _event_time_us_by_second(text)
    return np.where(shaped, pc.cast(ns, pa.int64()).to_numpy(zero_copy_only=False) // 1000, _NO_SECOND)


def _event_time_us_by_second(text: pa.ChunkedArray) -> np.ndarray:
    """`_event_time_us`, for stamps Arrow does not read (all rows of the fetch)."""
    parts = pc.extract_regex(text, _TIMESTAMP)
    date, time, fraction, offset = (pc.fill_null(pc.struct_field(parts, name), "") for name in range(4))
    second = pc.binary_join_element_wise(
        pc.binary_join_element_wise(date, time, "T"), pc.utf8_upper(offset), ""
    ).dictionary_encode()
    encoded = second.combine_chunks()
    seconds = np.array([_epoch_seconds(stamp) for stamp in encoded.dictionary.to_pylist()], np.int64)
    of_row = seconds[encoded.indices.to_numpy(zero_copy_only=False)]
    valid = _true(pc.is_valid(parts)) & (of_row != _NO_SECOND)
    micro = pc.cast(pc.utf8_rpad(pc.utf8_slice_codeunits(fraction, 0, 6), width=6, padding="0"), pa.int64())
    return np.where(valid, np.where(valid, of_row, 0) * 1_000_000 + micro.to_numpy(), _NO_SECOND)


def _epoch_seconds(stamp: str) -> int:
    try:
        return occurred_us(datetime.fromisoformat(stamp)) // 1_000_000
    except ValueError:
        return _NO_SECOND


def _count(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A non-negative JSON integer as the store's UInt64 (a negative one leaves the row not `ok`)."""
    return pc.cast(pc.max_element_wise(column, 0), pa.uint64())


def _true(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow boolean column as numpy, null counting as false."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), np.bool_)


@cache
def _exchange_codes() -> pa.Array:
    return pa.array(sorted(exchanges()), pa.string())


class UsageRow(NamedTuple):
    """A usage event of a fetch, as a row of its `UsageColumns` (a tuple: one is made per event)."""

    columns: UsageColumns
    row: int
    at_ms: int  # event time, ms since the epoch
    key: tuple[str, str]  # `(exchange_id, event_id)`, as `models.events._Event.key`
    content: int  # what it says, as `models.events._Event.content_digest`


@dataclass(slots=True)
class AcceptedUsage:
    """The rows of one `UsageColumns` a batch accepts, with what surveillance made of each: stored as columns."""

    columns: UsageColumns
    # (row, late, dims, partition, offset) of each row accepted one by one
    one_by_one: list[tuple[int, bool, Dims, int, int]] = field(default_factory=list)
    # Or the same as columns, accepted at once (a batch's usage judged at its end), each row's dims as a position in
    # a list.
    at_once: UsageAtOnce | None = None

    def add(self, row: int, late: bool, dims: Dims, partition: int, offset: int) -> None:
        self.one_by_one.append((row, late, dims, partition, offset))

    def table(self) -> pa.Table:
        """The `usage` table's columns of these rows (`sinks.clickhouse.batches.event_columns`)."""
        if self.at_once is not None:
            rows, late, kinds, of_row, partitions, offsets = self.at_once
        else:
            by_column = list(zip(*self.one_by_one, strict=True))
            rows, late, partitions, offsets = (np.array(by_column[n]) for n in (0, 1, 3, 4))
            dims: tuple[Dims, ...] = by_column[2]
            codes: dict[int, int] = {}  # id of a Dims -> its code (a product's Dims is one object, shared)
            of_row = np.array([codes.setdefault(id(kind), len(codes)) for kind in dims], np.int32)
            kinds = list({id(kind): kind for kind in dims}.values())  # in the order of their codes
        take = np.array(rows, np.int64)
        return event_columns(
            "usage",
            self.columns.table.take(take),
            self.columns.at_us[take],
            np.array(late, np.bool_),
            np.array(partitions, np.int32),
            np.array(offsets, np.int64),
            kinds,
            np.asarray(of_row, np.int32),
        )


class UsageAtOnce(NamedTuple):
    """A batch's usage accepted at once, as columns (`AcceptedUsage.at_once`)."""

    rows: np.ndarray  # in its `UsageColumns`
    late: np.ndarray
    kinds: list[Dims]
    of_row: np.ndarray  # per row, the position of its classification in `kinds`
    partitions: np.ndarray
    offsets: np.ndarray
