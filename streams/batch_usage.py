"""A batch's usage as columns: read at once, and, with one partition, judged at the batch's end at once.

Usage is more than four events in five. `read_usage` reads a batch's usage messages as
Arrow columns (`streams.columnar`); `usage_rows` hands the rows the columns accept to
the one-by-one path as `UsageRow`s. With one partition, `take_usage_at_once` never goes
through the usage one row at a time: its duplicates are found with arrays, only the
other records are taken one by one, in order, with event time passing the usage before
each, and the usage is judged at the end (`Surveillance.whole_batch`), with the outcome
the one-by-one path gives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from sinks.clickhouse import BatchRows
from sinks.clickhouse.windows import MINUTE_MS
from streams.authenticate import Authenticator
from streams.batch_records import NOT_EVENTS, Decoded, NotUsageRow, copy_of, identities_in_order
from streams.columnar import AcceptedUsage, UsageAtOnce, UsageColumns, UsageRow, decode_usage, earliest
from streams.decode import Rejection, WallClock, decode
from streams.dedup import First, IdentityBatch
from streams.surveillance import WholeBatch

if TYPE_CHECKING:
    from streams.batch import BatchProcessor, StageTimes

log = logging.getLogger("dmm.pipeline")

NOT_READ = Rejection("malformed", "not read yet")  # a usage candidate's outcome until `read_usage` reads it


def read_usage(
    decoded: list[Decoded], places: list[int], authenticator: Authenticator | None, clock: WallClock
) -> UsageColumns:
    """Read the usage messages at `places` as columns; those the columns do not accept, one by one (the others
    stay `NOT_READ` in `decoded`: `usage_rows` or `take_usage_at_once` takes them). With producer keys, a row
    whose signature fails is taken off the columns (no longer `ok`) as its `unauthenticated` rejection."""
    columns = decode_usage([decoded[i][0].value or b"" for i in places], clock)  # candidates are never empty
    for row in np.flatnonzero(~columns.ok).tolist():
        message = decoded[places[row]][0]
        outcome = decode(message.value, clock)
        if authenticator is not None:
            outcome = authenticator.verified(outcome, message.headers, message.value)
        decoded[places[row]] = (message, outcome)
    if authenticator is not None:
        failure, keys = authenticator.failure, columns.keys
        for row in np.flatnonzero(columns.ok).tolist():
            message = decoded[places[row]][0]
            detail = failure(keys[row][0], message.headers, message.value or b"")
            if detail is not None:
                columns.ok[row] = False
                decoded[places[row]] = (message, Rejection("unauthenticated", detail, *keys[row]))
    return columns


def usage_rows(decoded: list[Decoded], places: list[int], columns: UsageColumns) -> None:
    """The usage the columns accepted, one `UsageRow` each, for the one-by-one path."""
    at_ms, keys, contents = (columns.at_us // 1000).tolist(), columns.keys, columns.contents.tolist()
    for row in np.flatnonzero(columns.ok).tolist():
        i = places[row]
        decoded[i] = (decoded[i][0], UsageRow(columns, row, at_ms[row], keys[row], contents[row]))


def take_usage_at_once(
    core: BatchProcessor,
    decoded: list[Decoded],
    places: list[int],
    columns: UsageColumns,
    whole: WholeBatch,
    offsets: np.ndarray,
    rows: BatchRows,
    minutes: set[int],
    times: StageTimes,
) -> list[AcceptedUsage]:
    """One partition's batch with its usage judged at its end, at once: only the other records are taken one by
    one (`core.take`), in order, event time passing the usage before each (`offsets`: the batch's, in order;
    `places`: the usage's in `decoded`). Returns the usage accepted."""
    times.switch("dedup")
    in_batch = np.asarray(places, np.int64)[columns.ok]  # the usage's places in the batch
    in_columns = np.flatnonzero(columns.ok)  # and in its columns
    not_usage = np.ones(len(decoded), np.bool_)
    not_usage[in_batch] = False  # the rest was read one by one (`read_usage`): a comprehension over it alone
    # The rest, never a `UsageRow` here (`usage_rows` is not called on this path): said so for the type checker.
    others: list[tuple[int, NotUsageRow]] = [
        (place, (m, o))
        for place in np.flatnonzero(not_usage).tolist()
        for m, o in (decoded[place],)
        if not isinstance(o, UsageRow)
    ]
    usage_keys = [columns.keys[row] for row in in_columns.tolist()]
    other_keys = [outcome.key for _, (_, outcome) in others if not isinstance(outcome, NOT_EVENTS)]
    keys = usage_keys + other_keys
    usage_at_ms = columns.at_us[in_columns] // 1000
    with core.index.batch(keys) as identities:
        first_seen, partitions, first_offsets = _remember_usage(
            identities, decoded, others, in_batch, keys, usage_at_ms, columns.contents[in_columns], whole.partition,
            offsets, rows,
        )  # fmt: skip
        times.switch("surveillance")
        at_ms, accepted_rows = usage_at_ms[first_seen], in_columns[first_seen]
        exchange_ids = columns.table.column("exchange_id").take(accepted_rows).combine_chunks()
        whole.sight_ahead(earliest(exchange_ids, at_ms))
        latest = np.maximum.accumulate(at_ms).tolist()
        before = np.searchsorted(in_batch[first_seen], [place for place, _ in others]).tolist()
        next_identity, passed, redelivered = identities_in_order(other_keys, len(usage_keys)), 0, 0
        take = core.take
        for (_, (message, outcome)), usage_before in zip(others, before, strict=True):
            if usage_before > passed:
                whole.pass_usage(usage_before, latest[usage_before - 1])
                passed = usage_before
            redelivered += take(message, outcome, identities, next_identity, rows, minutes)
        times.switch("dedup")
    times.switch("surveillance")
    core.mishaps.redelivered += redelivered
    event_ids = columns.table.column("event_id").take(accepted_rows).to_pylist()
    judged = whole.judge(exchange_ids.to_pylist(), event_ids, at_ms)
    for failure in judged.failed:
        core.mishaps.detectors_failed.append(failure.kind)
        log.error("detector failed on a batch's events; it missed them", extra={"detector": failure.kind})
    rows.alerts.extend(judged.alerts)
    if not len(first_seen):
        return []
    products = columns.table.column("product_id").take(accepted_rows).combine_chunks()
    kinds, of_row = whole.classify(exchange_ids, products)
    on_time = at_ms[~judged.late]
    minutes.update(np.unique(on_time - on_time % MINUTE_MS).tolist())
    at_once = UsageAtOnce(accepted_rows, judged.late, kinds, of_row, partitions, first_offsets)
    return [AcceptedUsage(columns, at_once=at_once)]


def _remember_usage(
    identities: IdentityBatch,
    decoded: list[Decoded],
    others: list[tuple[int, NotUsageRow]],
    in_batch: np.ndarray,
    keys: list[tuple[str, str]],
    at_ms: np.ndarray,
    contents: np.ndarray,
    partition: int,
    offsets: np.ndarray,
    rows: BatchRows,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch's copies among its usage (at `in_batch` in the batch of `partition`, whose `offsets` are given;
    `keys`: the usage's first, then the other events', among `others`; `contents`: the usage's content digests),
    found with arrays: duplicates, or conflicting resends; the first-seen usage remembered. Returns which of the
    usage is first seen, with its partitions and offsets."""
    count = len(in_batch)
    events = [(at, event) for at, (_, event) in others if not isinstance(event, NOT_EVENTS)]
    first = identities.first_copies(np.concatenate((in_batch, np.array([place for place, _ in events], np.int64))))
    copied = np.bincount(first[first >= 0], minlength=len(first))[:count] > 1  # with a later copy
    first = first[:count]
    seen = first == np.arange(count)
    said = contents.tolist()
    for copy in np.flatnonzero(~seen).tolist():
        message, original = decoded[in_batch[copy]][0], int(first[copy])
        place: First | None
        if original < 0:  # stored by an earlier batch
            place = identities.get(keys[copy])
        elif original < count:
            stored = decoded[in_batch[original]][0]
            place = (stored.partition, stored.offset, said[original])
        else:
            at, event = events[original - count]
            stored = decoded[at][0]
            place = (stored.partition, stored.offset, event.content_digest)
        assert place is not None  # remembered: `first_copies` found it
        copy_of(message, keys[copy], "usage", said[copy], place, rows)
    first_seen = np.flatnonzero(seen)
    findable = {
        keys[n]: (partition, int(offsets[in_batch[n]]), said[n]) for n in np.flatnonzero(copied & seen).tolist()
    }
    partitions, first_offsets = np.full(len(first_seen), partition), offsets[in_batch[first_seen]]
    identities.add_many(first_seen, partitions, first_offsets, at_ms[first_seen], contents[first_seen], findable)
    return first_seen, partitions, first_offsets
