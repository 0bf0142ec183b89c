"""What each record of a batch becomes: a redelivery, a rejection, a duplicate, or an event to accept.

Shared by the batch core (`streams.batch`) and its whole-batch usage path (`streams.batch_usage`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from models import AnyEvent
from sinks.clickhouse import BatchRows, Duplicate, Rejected
from streams.columnar import UsageRow
from streams.decode import Rejection
from streams.dedup import First, Key
from streams.records import Record

PROCESSING_ERROR = "processing_error"  # the monitor's own rejection reason: a rule failed on the event


@dataclass(frozen=True, slots=True)
class Redelivered:
    """A message at or below its partition's progress mark, stored above it before a crash, or processed already
    by this pipeline (fetched again after a seek)."""

    stored_ms: int  # event time of the stored event (0 for a rejection or duplicate)


Outcome = AnyEvent | Rejection | Redelivered | UsageRow  # what decoding made of a record
NOT_EVENTS = (Rejection, Redelivered)  # outcomes that are no event (`not isinstance(outcome, NOT_EVENTS)`)
Decoded = tuple[Record, Outcome]
NotUsageRow = tuple[Record, AnyEvent | Rejection | Redelivered]  # a record decoded other than as a usage row
# The next first-seen candidate's identity: its position among the batch's identities (`EventIndex.batch`) and
# the identity itself. Events come in the order their identities were listed, so the next one is the next pair.
NextIdentity = Callable[[], tuple[int, Key]]


def identities_in_order(keys: Sequence[Key], start: int = 0) -> NextIdentity:
    """`NextIdentity` over `keys` (positions counted from `start`): no lookup per event."""
    return iter(enumerate(keys, start)).__next__


def copy_of(message: Record, key: Key, kind: str, content: int, first: First, rows: BatchRows) -> None:
    """A message with the identity of an event remembered (`first`: where it was stored, what it said): a
    duplicate if it says the same once parsed (or what the first said is not known), else rejected as a
    `conflicting_duplicate`, the first staying as stored (contract, Amendment 1)."""
    partition, offset, said = first
    if said in (0, content):
        duplicate = Duplicate(message.topic, message.partition, message.offset, *key, kind, partition, offset)
        rows.duplicates.append(duplicate)
        return
    detail = (
        f"another event with exchange_id {key[0]} and event_id {key[1]} was accepted within the dedup horizon "
        f"(stored from partition {partition}, offset {offset}) and says something else: it stays as stored. Give "
        "a new event an event_id of its own; resend an event only as it was"
    )
    rows.rejected.append(rejected(message, "conflicting_duplicate", detail, *key))


def rejected(message: Record, reason: str, detail: str, exchange_id: str, event_id: str) -> Rejected:
    """The stored row of a rejected message, its raw bytes kept."""
    return Rejected(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        raw=message.value or b"",
        reason=reason,
        detail=detail,
        exchange_id=exchange_id,
        event_id=event_id,
    )
