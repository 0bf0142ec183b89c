"""Live output: publish the stream paced by its event time, `time_scale` simulated seconds per wall second."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from dmm.simulator.wire import Message

Publish = Callable[[bytes, bytes], None]


def publish_live(
    messages: Iterable[Message],
    publish: Publish,
    time_scale: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    behind: list[float] | None = None,
    epoch_ms: Callable[[], float] = lambda: time.time() * 1000,
) -> int:
    """Hand each message to `publish(key, value)` no earlier than its event time allows; returns the count.
    Never before the wall clock (`epoch_ms`) reaches its event time either: the monitor rejects an event stamped
    ahead of its clock (`future_event`), so a market run faster than real time (`time_scale` above 1) catches up
    with the present, then goes on in real time. `behind`: collects how many seconds after its due time each
    message was handed over (a publisher that cannot keep its pace adds that to every lag measured from event
    time)."""
    if time_scale <= 0:
        raise ValueError("time scale must be > 0 simulated seconds per wall second")
    count = 0
    origin: tuple[int, float] | None = None
    for message in messages:
        if origin is None:
            origin = (message.occurred_ms, clock())
        due = origin[1] + (message.occurred_ms - origin[0]) / 1_000 / time_scale
        due = max(due, clock() + (message.occurred_ms - epoch_ms()) / 1_000)
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        publish(message.key, message.value)
        if behind is not None:
            behind.append(clock() - due)
        count += 1
    return count
