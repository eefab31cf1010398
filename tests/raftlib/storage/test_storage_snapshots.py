"""Snapshots, compaction and log reset keep the Storage contract in both storages: load()
returns the durable snapshot and only the entries after it, whatever crash came between."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftlib.core.types import ConfState, HardState, SnapshotMeta
from raftlib.storage import MemoryStorage, Storage, WalStorage
from raftlib.storage.base import Recovered
from tests.raftlib.storage.storage_testing import make_entries

CONF = ConfState(voters=(1, 2, 3), learners=(4,))


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, conf=CONF)


class Harness:
    """A storage plus a way to restart the process (and, for memory, to lose power)."""

    def __init__(self, open_fn: Callable[[], Storage], reopen_same: bool) -> None:
        self._open_fn = open_fn
        self._reopen_same = reopen_same
        self.storage = open_fn()

    def reopen(self) -> Recovered:
        self.storage.close()
        if not self._reopen_same:
            self.storage = self._open_fn()
        return self.storage.load()


@pytest.fixture(params=["wal", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "wal":
        h = Harness(lambda: WalStorage(tmp_path / "data", segment_bytes_max=512), False)
    else:
        memory = MemoryStorage()
        h = Harness(lambda: memory, True)
    h.storage.load()
    yield h
    h.storage.close()


def write_snapshot(storage: Storage, m: SnapshotMeta, payload: bytes) -> None:
    writer = storage.create_snapshot(m)
    writer.write(payload[:3])
    writer.write(payload[3:])
    writer.commit()


def read_snapshot(storage: Storage) -> tuple[SnapshotMeta, bytes]:
    reader = storage.open_snapshot()
    assert reader is not None
    chunks = []
    while chunk := reader.read(4):
        chunks.append(chunk)
    reader.close()
    data = b"".join(chunks)
    assert len(data) == reader.size
    return reader.meta, data


def log_with_commit(h: Harness, count: int, commit: int) -> None:
    h.storage.set_hard_state(HardState(term=1, vote=1, commit=0))
    h.storage.append(make_entries(1, count))
    h.storage.set_hard_state(HardState(term=1, vote=1, commit=commit))
    h.storage.sync()


def test_no_snapshot_before_the_first(harness: Harness) -> None:
    assert harness.storage.open_snapshot() is None
    assert harness.reopen().snapshot is None


def test_committed_snapshot_round_trips_through_reopen(harness: Harness) -> None:
    log_with_commit(harness, 40, 30)
    write_snapshot(harness.storage, meta(25), b"state machine at 25")
    assert read_snapshot(harness.storage) == (meta(25), b"state machine at 25")
    recovered = harness.reopen()
    assert recovered.snapshot == meta(25)
    assert recovered.entries == make_entries(26, 15)  # strictly after the snapshot
    assert read_snapshot(harness.storage) == (meta(25), b"state machine at 25")


def test_aborted_snapshot_leaves_the_current_one(harness: Harness) -> None:
    log_with_commit(harness, 20, 15)
    write_snapshot(harness.storage, meta(10), b"ten")
    writer = harness.storage.create_snapshot(meta(15))
    writer.write(b"half of fifteen")
    writer.abort()
    assert harness.reopen().snapshot == meta(10)
    assert read_snapshot(harness.storage)[1] == b"ten"


def test_compaction_drops_entries_from_load_but_keeps_the_tail(harness: Harness) -> None:
    log_with_commit(harness, 60, 50)
    write_snapshot(harness.storage, meta(45), b"x")
    harness.storage.compact(45)
    harness.storage.append(make_entries(61, 5))
    harness.storage.sync()
    recovered = harness.reopen()
    assert recovered.entries == make_entries(46, 20)
    assert recovered.hard_state.commit == 50


def test_compaction_beyond_the_durable_snapshot_is_refused(harness: Harness) -> None:
    log_with_commit(harness, 20, 15)
    with pytest.raises(ValueError, match="beyond the durable snapshot"):
        harness.storage.compact(5)
    write_snapshot(harness.storage, meta(10), b"x")
    with pytest.raises(ValueError, match="beyond the durable snapshot"):
        harness.storage.compact(11)
    harness.storage.compact(10)


def test_append_at_or_below_the_snapshot_is_refused(harness: Harness) -> None:
    log_with_commit(harness, 20, 15)
    write_snapshot(harness.storage, meta(10), b"x")
    harness.storage.compact(10)
    with pytest.raises(ValueError):
        harness.storage.append(make_entries(10, 2, term=2))


def test_reset_log_discards_every_entry_and_goes_on_after_the_snapshot(
    harness: Harness,
) -> None:
    log_with_commit(harness, 12, 3)
    write_snapshot(harness.storage, meta(30, term=4), b"leader's state")
    harness.storage.reset_log(meta(30, term=4))
    harness.storage.set_hard_state(HardState(term=4, vote=0, commit=30))
    harness.storage.append(make_entries(31, 3, term=4))
    harness.storage.sync()
    recovered = harness.reopen()
    assert recovered == Recovered(HardState(4, 0, 30), meta(30, 4), make_entries(31, 3, term=4))


def test_reset_log_before_its_snapshot_is_durable_is_refused(harness: Harness) -> None:
    log_with_commit(harness, 5, 1)
    with pytest.raises(ValueError, match="commit the snapshot first"):
        harness.storage.reset_log(meta(30, term=4))


def test_a_snapshot_whose_reset_was_lost_replaces_a_conflicting_log(harness: Harness) -> None:
    # The snapshot is durable, the reset_log after it never was: the log still holds entry 8
    # with another term. Load must not return the stale entries after it.
    log_with_commit(harness, 12, 3)
    write_snapshot(harness.storage, meta(8, term=2), b"leader's state at 8")
    recovered = harness.reopen()
    assert recovered.snapshot == meta(8, 2)
    assert recovered.entries == []
    assert recovered.hard_state.commit == 8
    harness.storage.append(make_entries(9, 2, term=2))
    harness.storage.sync()
    assert harness.reopen().entries == make_entries(9, 2, term=2)


def test_a_snapshot_matching_the_log_keeps_the_entries_after_it(harness: Harness) -> None:
    log_with_commit(harness, 12, 10)
    write_snapshot(harness.storage, meta(8, term=1), b"own state at 8")
    assert harness.reopen().entries == make_entries(9, 4)


def test_memory_power_loss_keeps_a_committed_snapshot_but_not_an_unsynced_reset() -> None:
    storage = MemoryStorage()
    storage.load()
    storage.append(make_entries(1, 10))
    storage.set_hard_state(HardState(term=1, vote=1, commit=2))
    storage.sync()
    write_snapshot(storage, meta(20, term=3), b"received")
    storage.reset_log(meta(20, term=3))
    storage.append(make_entries(21, 2, term=3))
    storage.crash(lose_unsynced=True, torn_write=True, rng=random.Random(3))
    recovered = storage.load()
    assert recovered.snapshot == meta(20, 3)
    assert recovered.entries == []  # the reset is redone on load: no stale entry survives
