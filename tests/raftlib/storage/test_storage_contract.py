"""Both storages keep the Storage contract: round trips, suffix truncation, reopen, misuse."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftlib.core.types import HardState
from raftlib.errors import StorageError
from raftlib.storage import MemoryStorage, Storage, WalStorage
from raftlib.storage.base import Recovered
from tests.raftlib.storage.storage_testing import make_entries, no_snapshot, noop_entry


class Harness:
    """A storage plus a way to 'restart the process' on top of it."""

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


def test_fresh_storage_is_empty_with_zero_hard_state(harness: Harness) -> None:
    assert harness.reopen() == no_snapshot(HardState(), [])


def test_synced_entries_and_hard_state_round_trip_through_reopen(harness: Harness) -> None:
    entries = [*make_entries(1, 30, term=1), noop_entry(31, 2), *make_entries(32, 5, term=2)]
    harness.storage.append(entries[:10])
    harness.storage.append(entries[10:])
    harness.storage.set_hard_state(HardState(term=2, vote=3, commit=20))
    harness.storage.sync()
    assert harness.reopen() == no_snapshot(HardState(term=2, vote=3, commit=20), entries)


def test_append_at_or_below_last_index_replaces_the_suffix(harness: Harness) -> None:
    old = make_entries(1, 20, term=1)
    harness.storage.append(old)
    harness.storage.sync()
    new = make_entries(12, 4, term=2)
    harness.storage.append(new)
    harness.storage.sync()
    expected = old[:11] + new
    assert harness.storage.load().entries == expected
    assert harness.reopen().entries == expected
    more = make_entries(16, 3, term=2)
    harness.storage.append(more)
    harness.storage.sync()
    assert harness.reopen().entries == expected + more


def test_truncation_back_to_index_one_replaces_everything(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 40, term=1))
    harness.storage.sync()
    new = make_entries(1, 3, term=5)
    harness.storage.append(new)
    harness.storage.sync()
    assert harness.reopen().entries == new


def test_commit_index_survives_reopen_after_commit_only_changes(harness: Harness) -> None:
    harness.storage.set_hard_state(HardState(term=1, vote=1, commit=0))
    harness.storage.sync()
    for step in range(1, 6):
        harness.storage.append(make_entries(step * 4 - 3, 4))
        harness.storage.set_hard_state(HardState(term=1, vote=1, commit=step * 4 - 1))
        harness.storage.sync()
    assert harness.reopen().hard_state == HardState(term=1, vote=1, commit=19)


def test_append_leaving_a_gap_is_refused(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 3))
    with pytest.raises(ValueError, match="gap"):
        harness.storage.append(make_entries(5, 1))


def test_non_contiguous_batch_is_refused_without_writing(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 3))
    batch = make_entries(4, 2) + make_entries(7, 1)
    with pytest.raises(ValueError, match="expected"):
        harness.storage.append(batch)
    harness.storage.sync()
    assert harness.reopen().entries == make_entries(1, 3)


def test_truncating_a_committed_entry_is_refused(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 10))
    harness.storage.set_hard_state(HardState(term=1, commit=6))
    harness.storage.sync()
    with pytest.raises(ValueError, match="commit"):
        harness.storage.append(make_entries(6, 2, term=2))
    harness.storage.append(make_entries(7, 2, term=2))  # above the commit index: allowed


def test_hard_state_term_and_commit_never_decrease(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 5))
    harness.storage.set_hard_state(HardState(term=3, vote=1, commit=4))
    with pytest.raises(ValueError, match="never decrease"):
        harness.storage.set_hard_state(HardState(term=2, vote=1, commit=4))
    with pytest.raises(ValueError, match="never decrease"):
        harness.storage.set_hard_state(HardState(term=3, vote=1, commit=3))


def test_sync_refuses_a_commit_index_beyond_the_log(harness: Harness) -> None:
    harness.storage.append(make_entries(1, 2))
    harness.storage.set_hard_state(HardState(term=1, commit=3))
    with pytest.raises(ValueError, match="beyond"):
        harness.storage.sync()


def test_unsynced_hard_state_is_lost_on_close(harness: Harness) -> None:
    harness.storage.set_hard_state(HardState(term=1, vote=2))
    harness.storage.sync()
    harness.storage.set_hard_state(HardState(term=4, vote=3))
    assert harness.reopen().hard_state == HardState(term=1, vote=2)


def test_closed_storage_refuses_writes(harness: Harness) -> None:
    harness.storage.close()
    with pytest.raises(StorageError, match="closed"):
        harness.storage.append(make_entries(1, 1))
