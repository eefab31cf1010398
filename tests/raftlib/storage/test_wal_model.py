"""WalStorage behaves like a list-and-record model under random append/truncate/sync/reopen."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftlib.core.types import Entry, EntryKind, HardState
from raftlib.storage import WalStorage
from tests.raftlib.storage.storage_testing import entry_data, hard_state_and_log, no_snapshot


class WalVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="wal-model-")
        self.segment_bytes_max = 256
        self.wal = self._open()
        assert self.wal.load() == no_snapshot(HardState(), [])
        self.log: list[Entry] = []
        self.term = 1
        self.synced = HardState()
        self.pending: HardState | None = None
        # Entries 1..floor survive any process crash: synced, and not truncated since.
        self.floor = 0

    def _open(self) -> WalStorage:
        return WalStorage(self.directory, segment_bytes_max=self.segment_bytes_max, fsync=False)

    @property
    def commit(self) -> int:
        return (self.pending or self.synced).commit

    @rule(
        back=st.integers(0, 12),
        count=st.integers(1, 8),
        size=st.integers(0, 300),
        noop=st.booleans(),
    )
    def append(self, back: int, count: int, size: int, noop: bool) -> None:
        first = max(self.commit + 1, len(self.log) + 1 - back)
        if first <= len(self.log):
            self.term += 1  # a new leader overwrote a conflicting suffix
        kind = EntryKind.NOOP if noop else EntryKind.NORMAL
        entries = [
            Entry(term=self.term, index=i, data=entry_data(i, self.term, size), kind=kind)
            for i in range(first, first + count)
        ]
        self.wal.append(entries)
        self.log[first - 1 :] = entries
        self.floor = min(self.floor, first - 1)

    @rule(new_term=st.booleans(), vote=st.integers(0, 5), commit_fraction=st.floats(0, 1))
    def set_hard_state(self, new_term: bool, vote: int, commit_fraction: float) -> None:
        current = self.pending or self.synced
        term = max(current.term, self.term) + (1 if new_term else 0)
        self.term = term
        commit = current.commit + int((len(self.log) - current.commit) * commit_fraction)
        self.pending = HardState(term=term, vote=vote, commit=commit)
        self.wal.set_hard_state(self.pending)

    @rule()
    def sync(self) -> None:
        self.wal.sync()
        self.floor = len(self.log)
        if self.pending is not None:
            self.synced, self.pending = self.pending, None

    @rule(new_segment_bytes_max=st.sampled_from([256, 600, 5000]))
    def reopen(self, new_segment_bytes_max: int) -> None:
        # A clean restart: appended entries reach the files on close even unsynced; a hard
        # state that was never synced is lost.
        self.wal.close()
        self.segment_bytes_max = new_segment_bytes_max
        self.wal = self._open()
        hard_state, entries = hard_state_and_log(self.wal.load())
        assert entries == self.log
        assert hard_state == self.synced
        self.pending = None
        self.term = max(self.term, hard_state.term)

    @rule()
    def process_crash(self) -> None:
        # Killed: what was buffered is gone, what was written (rollovers, truncations) stays.
        self.wal.abandon()
        self.wal = self._open()
        hard_state, entries = hard_state_and_log(self.wal.load())
        assert hard_state == self.synced
        assert len(entries) >= self.floor
        assert entries == self.log[: len(entries)]
        self.log = entries
        self.pending = None

    @precondition(lambda self: self.pending is None)
    @rule()
    def load_in_place(self) -> None:
        hard_state, entries = hard_state_and_log(self.wal.load())
        assert entries == self.log
        assert hard_state == self.synced

    @invariant()
    def last_index_matches(self) -> None:
        assert self.wal.statistics().last_index == len(self.log)

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.directory, ignore_errors=True)


WalVersusModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestWalVersusModel = WalVersusModel.TestCase
