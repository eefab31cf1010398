"""Crash-state explorer for WalStorage, in the spirit of ALICE (Pillai et al., OSDI 2014).

A workload (appends, truncating appends, hard state changes, syncs, snapshots, compaction,
log resets, restarts) runs on a ``CrashFS``. After EVERY file-system operation it makes, the
explorer takes the states a crash right then may leave and recovers each with a fresh
``WalStorage``:

1. every power-loss state of the persistence model (``CrashFS.crash_states``: every prefix of
   each directory's unsynced operations times the bounded subsets and torn variants of each
   file's unsynced writes, see ``raftlib.storage.fs``), deduplicated by content;
2. the process-crash state (everything written survives, still unsynced), recovered; and then
   every power-loss state of what that recovery left, recovered again: what a restarted node
   read and acted on must not vanish at the next power loss.

Each recovery is checked against what the workload was promised:

- recovery never raises (a state a real crash can leave is never refused);
- the hard state never goes back: term >= the last synced term, the same vote in that term,
  commit >= the last synced commit;
- the snapshot never goes back below the last committed one;
- the log after the snapshot is contiguous and matches, entry for entry, the log as it stood at
  some moment since the last sync (prefix consistency: nothing from two different moments, no
  stale entry next to a new one), and reaches at least the last synced index, except where an
  operation in flight since may legitimately cut it (a truncating append, a reset).

``explore(workload)`` returns how many crash points and states it checked, and the violations.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from raftlib.core.types import ConfState, Entry, HardState, SnapshotMeta
from raftlib.storage.base import Recovered, Storage
from raftlib.storage.fs import CrashFS

DIRECTORY = "/data"
VIOLATIONS_MAX = 20  # stop collecting (and exploring) after this many


@attrs.frozen
class Append:
    entries: tuple[Entry, ...]


@attrs.frozen
class SetHardState:
    hard_state: HardState


@attrs.frozen
class Sync:
    pass


@attrs.frozen
class TakeSnapshot:
    meta: SnapshotMeta
    payload: bytes


@attrs.frozen
class Compact:
    index: int


@attrs.frozen
class ResetLog:
    meta: SnapshotMeta


@attrs.frozen
class Restart:
    """The process exits (``clean``: through ``close()``, which writes buffered records
    unflushed; else killed) and a new one opens the directory."""

    clean: bool


Step = Append | SetHardState | Sync | TakeSnapshot | Compact | ResetLog | Restart


@attrs.frozen
class Workload:
    name: str
    steps: tuple[Step, ...]
    segment_bytes_max: int = 256
    write_buffer_bytes_max: int = 1 << 20


@attrs.frozen
class Report:
    workload: str
    crash_points: int
    states_checked: int
    violations: tuple[str, ...]

    def __str__(self) -> str:
        verdict = "ok" if not self.violations else f"{len(self.violations)} violation(s)"
        return (
            f"{self.workload}: {self.crash_points} crash points,"
            f" {self.states_checked} crash states checked: {verdict}"
        )


@attrs.frozen
class _Log:
    """The log as the workload sees it: entries after ``base`` (0, or a reset's index)."""

    base: int
    entries: tuple[Entry, ...]

    @property
    def last_index(self) -> int:
        return self.base + len(self.entries)

    def get(self, index: int) -> Entry | None:
        position = index - self.base - 1
        return self.entries[position] if 0 <= position < len(self.entries) else None

    def append(self, entries: Sequence[Entry]) -> _Log:
        keep = self.entries[: max(entries[0].index - self.base - 1, 0)]
        return _Log(self.base, keep + tuple(entries))


@attrs.define
class _Promise:
    """What the storage owes the workload at a crash point."""

    hard_state: HardState = attrs.Factory(HardState)
    snapshot_index: int = 0
    last_index: int = 0  # the synced log's last index...
    cut: int | None = None  # ...unless an operation in flight may cut it to this index
    candidates: list[_Log] = attrs.Factory(lambda: [_Log(0, ())])
    snapshots: list[SnapshotMeta] = attrs.Factory(list)

    def required_last(self) -> int:
        return self.last_index if self.cut is None else min(self.last_index, self.cut)

    def check(self, recovered: Recovered) -> str | None:
        """Why ``recovered`` breaks the promise, or None."""
        hs, promised = recovered.hard_state, self.hard_state
        if hs.term < promised.term:
            return f"term went back: {hs} after synced {promised}"
        if hs.term == promised.term and promised.vote and hs.vote != promised.vote:
            return f"vote changed within term {hs.term}: {hs} after synced {promised}"
        if hs.commit < promised.commit:
            return f"commit went back: {hs} after synced {promised}"
        snapshot = recovered.snapshot
        s = snapshot.index if snapshot is not None else 0
        if s < self.snapshot_index:
            return f"snapshot went back to index {s} after {self.snapshot_index} was committed"
        if snapshot is not None and snapshot not in self.snapshots:
            return f"snapshot {snapshot} was never written"
        entries = recovered.entries
        indexes = [e.index for e in entries]
        if indexes != list(range(s + 1, s + 1 + len(entries))):
            return f"log after snapshot {s} is not contiguous from {s + 1}: {indexes}"
        last = max(s, entries[-1].index if entries else s)
        if last < self.required_last():
            return f"acknowledged entries lost: log ends at {last}, synced up to {self.last_index}"
        if not any(self._matches(c, snapshot, entries) for c in self.candidates):
            return f"log {[(e.index, e.term) for e in entries]} matches no moment since the sync"
        return None

    @staticmethod
    def _matches(log: _Log, snapshot: SnapshotMeta | None, entries: list[Entry]) -> bool:
        """Is (snapshot, entries) a prefix of ``log``? Entries after a snapshot must follow
        the snapshot's own last entry (Log Matching), not a conflicting one."""
        if entries and snapshot is not None and snapshot.index > log.base:
            at = log.get(snapshot.index)
            if at is None or at.term != snapshot.term:
                return False
        return all(log.get(e.index) == e for e in entries)


class ExplorableStorage(Storage, Protocol):
    """A storage the explorer can kill: besides the ``Storage`` calls, ``abandon`` releases
    its files without writing what it still buffers, as a process killed right then would
    (``close`` flushes, which a crash does not)."""

    def abandon(self) -> None: ...


StorageFactory = Callable[[CrashFS, Workload], ExplorableStorage]


def _open_wal(fs: CrashFS, workload: Workload) -> ExplorableStorage:
    from raftlib.storage.wal import WalStorage

    return WalStorage(
        DIRECTORY,
        fs=fs,
        segment_bytes_max=workload.segment_bytes_max,
        write_buffer_bytes_max=workload.write_buffer_bytes_max,
    )


class _Explorer:
    def __init__(self, workload: Workload, factory: StorageFactory, fail_fast: bool) -> None:
        self.workload = workload
        self.factory = factory
        self.fail_fast = fail_fast
        self.promise = _Promise()
        self.crash_points = 0
        self.states_checked = 0
        self.violations: list[str] = []
        self.current = ""

    def done(self) -> bool:
        limit = 1 if self.fail_fast else VIOLATIONS_MAX
        return len(self.violations) >= limit

    def recover(self, fs: CrashFS, promise: _Promise, where: str) -> Recovered | None:
        self.states_checked += 1
        try:
            storage = self.factory(fs, self.workload)
            recovered = storage.load()
            storage.abandon()
        except Exception as e:  # any refusal of a state a crash can leave is a violation
            self.violations.append(f"{where}: recovery refused: {type(e).__name__}: {e}")
            return None
        assert isinstance(recovered, Recovered)
        broken = promise.check(recovered)
        if broken is not None:
            self.violations.append(f"{where}: {broken}")
            return None
        return recovered

    def at_crash_point(self, fs: CrashFS, operation: str) -> None:
        if self.done():
            return
        self.crash_points += 1
        where = (
            f"{self.workload.name}: crash after op {fs.operations} ({operation}, {self.current})"
        )
        self.explore_power_loss(fs, self.promise, where)
        # A process crash, a restart that reads what the kernel kept, then a power loss.
        survivor = copy.deepcopy(fs)
        survivor.observer = None
        survivor.crash(random.Random(0), "process")
        recovered = self.recover(survivor, self.promise, f"{where}, process crash")
        if recovered is not None:
            self.explore_power_loss(
                survivor, _promise_of(recovered, self.promise), f"{where}, restart, power loss"
            )

    def explore_power_loss(self, fs: CrashFS, promise: _Promise, where: str) -> None:
        seen: set[int] = set()
        for state in fs.crash_states():
            if self.done():
                return
            key = hash(state.image())
            if key in seen:
                continue
            seen.add(key)
            self.recover(state, promise, f"{where}, power loss state {len(seen)}")

    def run(self) -> Report:
        fs = CrashFS()
        fs.observer = lambda operation: self.at_crash_point(fs, operation)
        p = self.promise
        log = _Log(0, ())
        pending_hard: HardState | None = None
        self.current = "open"
        storage = self.factory(fs, self.workload)
        storage.load()
        for number, step in enumerate(self.workload.steps):
            if self.done():
                break
            self.current = f"step {number} {type(step).__name__}"
            if isinstance(step, Append):
                log = log.append(step.entries)
                p.candidates.append(log)
                first = step.entries[0].index - 1
                p.cut = first if p.cut is None else min(p.cut, first)
                storage.append(step.entries)
            elif isinstance(step, SetHardState):
                pending_hard = step.hard_state
                storage.set_hard_state(step.hard_state)
            elif isinstance(step, Sync):
                storage.sync()
                if pending_hard is not None:
                    p.hard_state, pending_hard = pending_hard, None
                p.last_index, p.cut, p.candidates = log.last_index, None, [log]
            elif isinstance(step, TakeSnapshot):
                p.snapshots.append(step.meta)
                at = log.get(step.meta.index)
                if at is None or at.term != step.meta.term:
                    # A snapshot the log does not lead to replaces the log (recovery does the
                    # reset_log itself if a crash cuts it short).
                    p.candidates.append(_Log(step.meta.index, ()))
                    p.cut = step.meta.index if p.cut is None else min(p.cut, step.meta.index)
                writer = storage.create_snapshot(step.meta)
                half = len(step.payload) // 2
                writer.write(step.payload[:half])
                writer.write(step.payload[half:])
                writer.commit()
                p.snapshot_index = max(p.snapshot_index, step.meta.index)
                reader = storage.open_snapshot()
                assert reader is not None and reader.read(1 << 20) == step.payload
                reader.close()
            elif isinstance(step, Compact):
                storage.compact(step.index)
            elif isinstance(step, ResetLog):
                log = _Log(step.meta.index, ())
                p.candidates.append(log)
                p.cut = step.meta.index if p.cut is None else min(p.cut, step.meta.index)
                storage.reset_log(step.meta)
            else:
                if step.clean:
                    storage.close()
                else:
                    storage.abandon()
                fs.crash(random.Random(0), "process")
                pending_hard = None
                storage = self.factory(fs, self.workload)
                recovered = storage.load()
                assert isinstance(recovered, Recovered)
                broken = p.check(recovered)
                if broken is not None:
                    self.violations.append(f"{self.workload.name}: restart: {broken}")
                    break
                self.promise = p = _promise_of(recovered, p)
                log = p.candidates[0]
        fs.observer = None
        return Report(
            self.workload.name, self.crash_points, self.states_checked, tuple(self.violations)
        )


def _promise_of(recovered: Recovered, before: _Promise) -> _Promise:
    """What a restarted node may rely on: everything its load() returned."""
    s = recovered.snapshot.index if recovered.snapshot is not None else 0
    log = _Log(s, tuple(recovered.entries))
    return _Promise(
        hard_state=recovered.hard_state,
        snapshot_index=s,
        last_index=log.last_index,
        candidates=[log],
        snapshots=list(before.snapshots),
    )


def explore(
    workload: Workload, *, factory: StorageFactory = _open_wal, fail_fast: bool = False
) -> Report:
    """Run ``workload``, crash after every file operation, recover and check every state."""
    return _Explorer(workload, factory, fail_fast).run()


# --- the standard workloads --------------------------------------------------------------------


def _entries(first: int, count: int, term: int, size: int = 12) -> tuple[Entry, ...]:
    return tuple(
        Entry(term=term, index=i, data=f"{i}:{term}:".encode().ljust(size, b"."))
        for i in range(first, first + count)
    )


def _meta(index: int, term: int) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, conf=ConfState(voters=(1, 2, 3)))


def standard_workloads() -> list[Workload]:
    """Small workloads that between them reach every durability call of WalStorage."""
    return [
        Workload(
            "appends and rollover",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 4, 1)),
                Sync(),
                Append(_entries(5, 3, 1)),
                Append(_entries(8, 2, 1)),
                SetHardState(HardState(1, 1, 6)),
                Sync(),
            ),
        ),
        Workload(
            "truncating append",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 12, 1)),
                SetHardState(HardState(1, 1, 2)),
                Sync(),
                Append(_entries(4, 2, 2)),
                SetHardState(HardState(2, 2, 3)),
                Sync(),
                Append(_entries(6, 2, 2)),
                Sync(),
            ),
        ),
        Workload(
            "truncation after a commit-only sync",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 6, 1)),
                Sync(),
                SetHardState(HardState(1, 1, 4)),  # commit only: a COMMIT record, not the file
                Sync(),
                Append(_entries(5, 2, 2)),  # the cut removes that COMMIT record
                SetHardState(HardState(2, 2, 4)),
                Sync(),
            ),
        ),
        Workload(
            "hard state changes",
            (
                SetHardState(HardState(1, 1, 0)),
                Sync(),
                Append(_entries(1, 2, 1)),
                SetHardState(HardState(2, 3, 1)),
                Sync(),
                SetHardState(HardState(3, 0, 2)),
                Sync(),
            ),
        ),
        Workload(
            "early writes past the buffer limit",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 2, 1)),
                Append(_entries(3, 2, 1)),
                Append(_entries(5, 2, 1)),
                Sync(),
            ),
            segment_bytes_max=4096,
            write_buffer_bytes_max=60,
        ),
        Workload(
            "restarts",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 3, 1)),
                Sync(),
                Append(_entries(4, 2, 1)),
                Restart(clean=True),
                Append(_entries(6, 2, 1)),
                SetHardState(HardState(2, 2, 2)),
                Sync(),
                Restart(clean=False),
                Append(_entries(8, 1, 2)),
                Sync(),
            ),
        ),
        Workload(
            "snapshot and compaction",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 14, 1)),
                SetHardState(HardState(1, 1, 12)),
                Sync(),
                TakeSnapshot(_meta(10, 1), b"state at 10"),
                Compact(10),
                Append(_entries(15, 3, 1)),
                SetHardState(HardState(1, 1, 16)),
                Sync(),
                TakeSnapshot(_meta(16, 1), b"state at 16"),
                Compact(16),
                Restart(clean=False),
                Append(_entries(18, 1, 1)),
                Sync(),
            ),
        ),
        Workload(
            "snapshot install and reset",
            (
                SetHardState(HardState(1, 1, 0)),
                Append(_entries(1, 8, 1)),
                SetHardState(HardState(1, 1, 2)),
                Sync(),
                SetHardState(HardState(3, 0, 2)),
                Sync(),
                TakeSnapshot(_meta(5, 3), b"leader state at 5"),
                ResetLog(_meta(5, 3)),
                SetHardState(HardState(3, 0, 5)),
                Sync(),
                Append(_entries(6, 3, 3)),
                Sync(),
                TakeSnapshot(_meta(20, 4), b"leader state at 20"),
                ResetLog(_meta(20, 4)),
                Compact(20),
                Sync(),
                Append(_entries(21, 2, 4)),
                Sync(),
            ),
        ),
    ]


def random_workload(seed: int, steps: int = 24) -> Workload:
    """A valid random workload (what a Raft node could ask of its storage), reproducible from
    ``seed``: appends (some truncating), hard state changes, syncs, own and received
    snapshots with compaction and reset, and restarts."""
    rng = random.Random(seed)
    out: list[Step] = []
    term, vote, commit, last, snap = 1, 1, 0, 0, 0
    terms: dict[int, int] = {}
    out.append(SetHardState(HardState(term, vote, commit)))
    while len(out) < steps:
        kind = rng.choice(["append"] * 4 + ["hard", "sync", "sync", "snap", "install", "restart"])
        if kind == "append":
            floor = max(commit, snap) + 1
            first = rng.randint(max(floor, last - 3), last + 1)
            if first <= last:
                term += 1
                vote = rng.randint(0, 3)
                out.append(SetHardState(HardState(term, vote, commit)))
            count = rng.randint(1, 4)
            out.append(Append(_entries(first, count, term)))
            for index in list(terms):
                if index >= first:
                    del terms[index]
            terms.update({i: term for i in range(first, first + count)})
            last = first + count - 1
        elif kind == "hard":
            if rng.random() < 0.3:
                term += 1
                vote = rng.randint(0, 3)
            commit = rng.randint(commit, last)
            out.append(SetHardState(HardState(term, vote, commit)))
        elif kind == "sync":
            out.append(Sync())
        elif kind == "snap" and commit > snap:
            index = rng.randint(snap + 1, commit)
            out.append(Sync())  # a snapshot covers applied, hence durable, entries
            out.append(TakeSnapshot(_meta(index, terms[index]), rng.randbytes(rng.randint(0, 40))))
            snap = index
            out.append(Compact(rng.randint(snap - min(snap, 3), snap)))
        elif kind == "install":
            term += 1
            index = max(last, commit, snap) + rng.randint(1, 5)
            out.append(SetHardState(HardState(term, 0, commit)))
            out.append(Sync())
            out.append(TakeSnapshot(_meta(index, term), rng.randbytes(8)))
            out.append(ResetLog(_meta(index, term)))
            snap, last, commit, vote = index, index, index, 0
            terms = {}
            out.append(SetHardState(HardState(term, vote, commit)))
            if rng.random() < 0.5:
                out.append(Compact(index))
        elif kind == "restart":
            out.append(Sync())
            out.append(Restart(clean=rng.random() < 0.5))
    out.append(Sync())
    buffer_bytes = rng.choice([80, 4096])  # 80: early writes within a batch
    return Workload(f"random seed={seed}", tuple(out), write_buffer_bytes_max=buffer_bytes)
