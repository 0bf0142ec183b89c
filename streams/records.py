"""A record of dm.events as the worker reads it, whatever fetched it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Record(Protocol):
    """One record of dm.events as the pipeline reads it: a `Message` (as `streams.bulk_fetch` takes a fetch, or
    made by hand) or aiokafka's ConsumerRecord (a fetch aiokafka hands over itself)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class Message(NamedTuple):
    """A record made by hand (replays, tests): a tuple, three times cheaper to make than a frozen dataclass."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()  # Kafka record headers: a producer's signature (dm-key, dm-sig)
