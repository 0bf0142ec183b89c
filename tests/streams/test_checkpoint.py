"""The checkpoint's bookkeeping: which offsets a flush commits, and what a failed one leaves for the next (no
broker, no store: the consumer's commits against a real broker run in tests/reliability and tests/end_to_end)."""

from __future__ import annotations

from streams.checkpoint import Checkpoint


def test_a_flush_takes_the_next_offset_of_every_partition_stored_and_leaves_nothing_behind() -> None:
    checkpoint = Checkpoint()
    checkpoint.stored({0: 9, 1: 4})
    checkpoint.stored({0: 19})  # a later batch of partition 0
    assert checkpoint.pending == 2 and checkpoint.holds({1, 7}) and not checkpoint.holds({7})
    assert checkpoint.take() == {0: 20, 1: 5}
    assert checkpoint.pending == 0 and checkpoint.take() == {}


def test_a_failed_flush_hands_its_offsets_back_unless_a_batch_stored_since_went_further() -> None:
    checkpoint = Checkpoint()
    checkpoint.stored({0: 9, 1: 4})
    taken = checkpoint.take()
    checkpoint.stored({0: 29})  # stored while the flush ran
    checkpoint.failed(taken)
    assert checkpoint.take() == {0: 30, 1: 5}  # partition 1 retried, partition 0 at its later offset


def test_committed_offsets_only_move_forward() -> None:
    checkpoint = Checkpoint()
    checkpoint.committed({0: 10, 1: 3})
    checkpoint.committed({0: 5, 2: 1})
    assert checkpoint.committed_offsets == {0: 10, 1: 3, 2: 1}


def test_a_flush_is_due_an_interval_after_the_last_one_took_offsets() -> None:
    now = [100.0]
    checkpoint = Checkpoint(clock=lambda: now[0])
    now[0] = 100.9
    assert not checkpoint.due(1.0)
    now[0] = 101.0
    assert checkpoint.due(1.0) and not checkpoint.due(5.0)
    checkpoint.take()  # the next flush is timed from here, whether it had offsets or not
    now[0] = 101.5
    assert not checkpoint.due(1.0)
