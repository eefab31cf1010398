"""The harness's record of what each simulated node's disk holds (``harness.sim.durable``), on
which the commit-durability check rests: it must never show less than the disk holds (that
would invent violations), and shows what an fsync made durable as soon as it completes."""

from __future__ import annotations

import pytest

from harness.sim.durable import DurableLog
from raftlib.core.types import ConfState, Entry, SnapshotMeta
from raftlib.driver import PersistJob


def job(first: int, terms: list[int], snapshot: SnapshotMeta | None = None) -> PersistJob:
    entries = [Entry(term, first + i, b"x") for i, term in enumerate(terms)]
    return PersistJob(None, entries, None, snapshot=snapshot)


def meta(index: int, term: int) -> SnapshotMeta:
    return SnapshotMeta(index, term, ConfState((1, 2, 3)))


def test_a_written_job_counts_once_an_fsync_after_it_completed() -> None:
    log = DurableLog()
    first, second = job(1, [1, 1]), job(3, [2])
    log.written(first)
    log.written(second)
    assert not log.holds(1, 1)
    # One fsync covers every write before it, whichever job's completion reports it.
    log.synced(second)
    assert log.holds(1, 1) and log.holds(2, 1) and log.holds(3, 2)
    assert not log.holds(3, 1) and not log.holds(4, 2)
    log.synced(first)  # (already covered: nothing changes)
    assert log.holds(3, 2)


def test_a_later_job_replaces_the_suffix_it_overwrites() -> None:
    log = DurableLog()
    for item in (job(1, [1, 1, 1]), job(2, [2])):
        log.written(item)
        log.synced(item)
    assert log.holds(1, 1) and log.holds(2, 2)
    assert not log.holds(2, 1) and not log.holds(3, 1)


def test_a_boot_starts_from_what_the_disk_gave_back_and_forgets_unsynced_writes() -> None:
    log = DurableLog()
    lost = job(1, [1])
    log.written(lost)
    log.booted(None, [Entry(3, 1, b"x"), Entry(3, 2, b"x")])  # (a power loss, say)
    log.synced(lost)  # the earlier life's fsync: nothing
    assert log.holds(1, 3) and log.holds(2, 3) and not log.holds(1, 1)
    log.booted(meta(10, 4), [Entry(4, 11, b"x")])
    assert log.holds(7, 1)  # covered by the snapshot (committed entries only)
    assert log.holds(11, 4) and not log.holds(12, 4)


def test_a_snapshot_of_its_own_log_compacts_and_a_leaders_replaces_it() -> None:
    log = DurableLog()
    for item in (job(1, [1, 1, 2, 2]), job(5, [], snapshot=meta(3, 2))):
        log.written(item)
        log.synced(item)
    assert log.base == 3 and log.holds(4, 2) and not log.holds(4, 1)
    installed = job(1, [], snapshot=meta(9, 5))
    log.written(installed)
    log.synced(installed)
    assert log.base == 9 and log.terms == [] and not log.holds(10, 5)


def test_a_lost_disk_holds_nothing_and_a_gap_is_a_harness_bug() -> None:
    log = DurableLog()
    item = job(1, [1, 1])
    log.written(item)
    log.synced(item)
    log.lost()
    assert not log.holds(1, 1)
    gap = job(5, [1])
    log.written(gap)
    with pytest.raises(RuntimeError, match="after a gap: the record ends at 0"):
        log.synced(gap)
