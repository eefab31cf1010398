"""MemoryStorage crash semantics: what a power loss, a process crash and a torn write leave."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftlib.core.types import Entry, HardState
from raftlib.errors import MissingHardState, StorageError
from raftlib.storage import MemoryStorage
from tests.raftlib.storage.storage_testing import hard_state_and_log, make_entries, no_snapshot


def storage_with_synced_prefix() -> MemoryStorage:
    storage = MemoryStorage()
    storage.load()
    storage.append(make_entries(1, 5))
    storage.set_hard_state(HardState(term=1, vote=1, commit=2))
    storage.sync()
    return storage


def test_power_loss_drops_unsynced_appends_and_hard_state() -> None:
    storage = storage_with_synced_prefix()
    storage.append(make_entries(6, 3))
    storage.set_hard_state(HardState(term=2, vote=2, commit=4))
    storage.crash()
    assert storage.load() == no_snapshot(HardState(term=1, vote=1, commit=2), make_entries(1, 5))


def test_power_loss_undoes_an_unsynced_suffix_truncation() -> None:
    storage = storage_with_synced_prefix()
    storage.append(make_entries(4, 1, term=2))
    storage.crash()
    assert storage.load().entries == make_entries(1, 5)


def test_process_crash_keeps_written_appends_but_not_the_buffered_hard_state() -> None:
    storage = storage_with_synced_prefix()
    storage.append(make_entries(6, 3))
    storage.set_hard_state(HardState(term=2, vote=2, commit=4))
    storage.crash(lose_unsynced=False)
    assert storage.load() == no_snapshot(HardState(term=1, vote=1, commit=2), make_entries(1, 8))
    # Still only in the page cache: a power loss now takes them.
    storage.crash()
    assert storage.load().entries == make_entries(1, 5)


def test_synced_state_survives_every_kind_of_crash() -> None:
    for lose_unsynced, torn_write in [(False, False), (True, False), (True, True)]:
        storage = storage_with_synced_prefix()
        storage.crash(lose_unsynced=lose_unsynced, torn_write=torn_write, rng=random.Random(1))
        assert storage.load() == no_snapshot(
            HardState(term=1, vote=1, commit=2), make_entries(1, 5)
        )


def possible_torn_logs(durable: list[Entry], writes: list[list[Entry]]) -> list[list[Entry]]:
    """Every log a torn write can leave: whole writes up to some point, then a strict prefix
    (possibly empty, after its truncation) of the next one."""
    outcomes = []
    log = list(durable)
    for write in writes:
        for keep in range(len(write)):
            outcomes.append(log[: write[0].index - 1] + write[:keep])
        log = log[: write[0].index - 1] + write
    return outcomes


def test_torn_write_keeps_whole_earlier_writes_and_a_strict_prefix_of_one() -> None:
    writes = [make_entries(6, 4, term=1), make_entries(8, 5, term=2), make_entries(13, 3, term=2)]
    possible = possible_torn_logs(make_entries(1, 5), writes)
    seen = []
    for seed in range(200):
        storage = storage_with_synced_prefix()
        for write in writes:
            storage.append(write)
        storage.crash(torn_write=True, rng=random.Random(seed))
        log = storage.load().entries
        assert log in possible, f"seed={seed}: impossible log {[e.index for e in log]}"
        seen.append(log)
        # What survived is durable now: another power loss keeps it.
        storage.crash()
        assert storage.load().entries == log, f"seed={seed}"
    # The cut really falls anywhere, including inside the last write.
    assert all(outcome in seen for outcome in possible)


def test_torn_write_is_deterministic_for_a_seed() -> None:
    logs = []
    for _ in range(2):
        storage = storage_with_synced_prefix()
        storage.append(make_entries(6, 10))
        storage.append(make_entries(16, 10))
        storage.crash(torn_write=True, rng=random.Random(42))
        logs.append(storage.load().entries)
    assert logs[0] == logs[1]


def test_torn_write_needs_an_rng() -> None:
    storage = storage_with_synced_prefix()
    with pytest.raises(ValueError, match="rng"):
        storage.crash(torn_write=True)


def test_crashed_storage_refuses_writes_until_loaded() -> None:
    storage = storage_with_synced_prefix()
    storage.crash()
    with pytest.raises(StorageError, match="call load"):
        storage.append(make_entries(6, 1))
    storage.load()
    storage.append(make_entries(6, 1))


def test_injected_sync_failure_makes_nothing_durable() -> None:
    storage = storage_with_synced_prefix()
    storage.append(make_entries(6, 2))
    storage.set_hard_state(HardState(term=1, vote=1, commit=6))
    storage.fail_next_sync()
    with pytest.raises(StorageError, match="injected sync failure"):
        storage.sync()
    assert storage.durable_state() == (HardState(term=1, vote=1, commit=2), make_entries(1, 5))
    storage.sync()  # armed for one call only
    assert storage.durable_state() == (HardState(term=1, vote=1, commit=6), make_entries(1, 7))
    assert storage.statistics().failed_syncs == 1


def test_injected_append_failure_writes_nothing() -> None:
    storage = storage_with_synced_prefix()
    storage.fail_next_append(2)
    for _ in range(2):
        with pytest.raises(StorageError, match="injected append failure"):
            storage.append(make_entries(6, 1))
    storage.append(make_entries(6, 1))
    assert storage.load().entries == make_entries(1, 6)


def test_statistics_count_unsynced_appends() -> None:
    storage = storage_with_synced_prefix()
    storage.append(make_entries(6, 1))
    storage.append(make_entries(7, 2))
    stats = storage.statistics()
    assert (stats.appends, stats.entries_written, stats.unsynced_appends) == (3, 8, 2)


class MemoryVersusModel(RuleBasedStateMachine):
    """Random appends, truncations, syncs and crashes against lists of what is written and
    what is durable."""

    def __init__(self) -> None:
        super().__init__()
        self.storage = MemoryStorage()
        self.storage.load()
        self.written: list[Entry] = []
        self.durable: list[Entry] = []
        self.unsynced_writes: list[list[Entry]] = []
        self.synced = HardState()
        self.pending: HardState | None = None
        self.term = 1

    @rule(back=st.integers(0, 6), count=st.integers(1, 5))
    def append(self, back: int, count: int) -> None:
        commit = (self.pending or self.synced).commit
        first = max(commit + 1, len(self.written) + 1 - back)
        if first <= len(self.written):
            self.term += 1
        entries = make_entries(first, count, term=self.term, size=4)
        self.storage.append(entries)
        self.written[first - 1 :] = entries
        self.unsynced_writes.append(entries)

    @rule(fraction=st.floats(0, 1))
    def set_hard_state(self, fraction: float) -> None:
        current = self.pending or self.synced
        commit = current.commit + int((len(self.written) - current.commit) * fraction)
        self.pending = HardState(term=self.term, vote=1, commit=commit)
        self.storage.set_hard_state(self.pending)

    @rule()
    def sync(self) -> None:
        self.storage.sync()
        self.durable = list(self.written)
        self.unsynced_writes.clear()
        self.synced, self.pending = self.pending or self.synced, None

    @rule(kind=st.sampled_from(["process", "power", "torn"]), seed=st.integers(0, 2**16))
    def crash_and_restart(self, kind: str, seed: int) -> None:
        self.storage.crash(
            lose_unsynced=kind != "process", torn_write=kind == "torn", rng=random.Random(seed)
        )
        hard_state, log = hard_state_and_log(self.storage.load())
        assert hard_state == self.synced
        if kind == "process":
            assert log == self.written
        elif kind == "power" or not self.unsynced_writes:
            assert log == self.durable
        else:
            assert log in possible_torn_logs(self.durable, self.unsynced_writes), f"seed={seed}"
        if kind != "process":
            self.written, self.durable = list(log), list(log)
            self.unsynced_writes.clear()
        self.pending = None

    @invariant()
    def durable_state_matches(self) -> None:
        assert self.storage.durable_state() == (self.synced, self.durable)


MemoryVersusModel.TestCase.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None
)
TestMemoryVersusModel = MemoryVersusModel.TestCase


def test_lost_hard_state_with_entries_is_refused_unless_allowed() -> None:
    storage = storage_with_synced_prefix()
    storage.lose_hard_state()
    storage.close()
    with pytest.raises(MissingHardState, match="hard state is missing"):
        storage.load()
    allowing = MemoryStorage(allow_missing_hard_state=True)
    allowing.load()
    allowing.append(make_entries(1, 2))
    allowing.sync()
    allowing.lose_hard_state()
    assert allowing.load().hard_state == HardState()


def test_lost_hard_state_of_an_empty_storage_is_not_an_error() -> None:
    storage = MemoryStorage()
    storage.load()
    storage.lose_hard_state()
    assert storage.load().entries == []
