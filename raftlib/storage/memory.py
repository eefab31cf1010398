"""MemoryStorage: an in-memory ``Storage`` for tests and the deterministic simulator.

It models the disk a ``WalStorage`` sees, at entry granularity:

- ``append`` and ``reset_log`` are writes that reached the operating system (they survive a
  process crash) but not the disk: a power loss can drop them until ``sync()``.
- ``set_hard_state`` stays in process memory until ``sync()`` (WalStorage writes the hard state
  file in ``sync``), so any crash or ``close()`` before it loses it.
- A snapshot is durable once its writer's ``commit()`` returns; ``compact(index)`` drops the
  entries up to ``index`` from what is written and what is durable alike.
- ``crash(lose_unsynced=True)`` is a power loss: every unsynced write is gone. With
  ``torn_write=True`` the unsynced writes are instead cut at a point chosen by ``rng``: the
  ones before it survive whole and the one it falls in keeps a strict prefix of its entries
  (its suffix truncation, if any, did happen; a torn reset is lost). ``crash(lose_unsynced=
  False)`` is a process crash: written data survives, still unsynced.
- On ``load()``, a log that does not hold the snapshot's last entry (a crash lost the
  ``reset_log`` that followed the snapshot) is discarded, as WalStorage's recovery does.

After ``crash()`` or ``close()`` the storage behaves like a closed one until ``load()``, which
"reopens" it, as a restarted node would. Everything is deterministic: randomness comes only
from the ``rng`` argument (anything with ``randint(a, b)``, e.g. ``random.Random(seed)``).

Fault injection for the harness: ``fail_next_sync(count)`` and ``fail_next_append(count)``
make the next calls raise ``StorageError`` without effect, as a failing disk would;
``lose_hard_state()`` deletes the hard state as an operator's mistake would (the next
``load()`` raises ``MissingHardState`` unless ``allow_missing_hard_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from raftlib.core.types import Entry, HardState, SnapshotMeta
from raftlib.errors import MissingHardState, StorageError
from raftlib.storage.base import Recovered


class RandomLike(Protocol):
    def randint(self, a: int, b: int) -> int: ...


@attrs.frozen
class MemoryStatistics:
    appends: int
    entries_written: int
    truncations: int
    syncs: int
    failed_syncs: int
    failed_appends: int
    crashes: int
    unsynced_appends: int  # writes (appends, resets) a power loss right now would threaten
    snapshots_committed: int = 0


@attrs.frozen
class _Write:
    """One write as it reached the OS: cut the log before index ``first``, then extend it
    with ``entries`` (which start at ``first``; empty when a torn write kept none). A reset
    (``reset`` set) empties the log, which goes on at ``reset.index + 1``."""

    first: int
    entries: tuple[Entry, ...]
    reset: SnapshotMeta | None = None


@attrs.define
class _Log:
    """Entries after ``base`` (the index covered by the snapshot, or 0)."""

    base: int = 0
    entries: list[Entry] = attrs.Factory(list)

    @property
    def last_index(self) -> int:
        return self.base + len(self.entries)

    def copy(self) -> _Log:
        return _Log(self.base, list(self.entries))

    def apply(self, write: _Write) -> None:
        if write.reset is not None:
            self.base, self.entries = write.reset.index, []
            return
        cut = write.first - self.base - 1
        assert cut <= len(self.entries), f"write at {write.first} after a gap: {self.base}"
        del self.entries[max(cut, 0) :]
        if cut >= 0:
            self.entries.extend(write.entries)  # all after the base: the common case
        else:
            self.entries.extend(e for e in write.entries if e.index > self.base)

    def compact(self, index: int) -> None:
        if index > self.base:
            del self.entries[: index - self.base]
            self.base = index

    def term_at(self, index: int) -> int | None:
        position = index - self.base - 1
        return self.entries[position].term if 0 <= position < len(self.entries) else None


class MemoryStorage:
    # Never blocks: the node driver calls it inline instead of in a worker thread, which keeps
    # simulations deterministic.
    blocking = False

    def __init__(self, *, allow_missing_hard_state: bool = False) -> None:
        self._durable = _Log()
        self._durable_hard_state = HardState()
        self._hard_state_lost = False
        self._allow_missing_hard_state = allow_missing_hard_state
        self._log = _Log()  # what the OS holds: durable log + unsynced writes
        self._unsynced: list[_Write] = []
        self._pending_hard_state: HardState | None = None
        self._snapshot: tuple[SnapshotMeta, bytes] | None = None
        self._open = True
        self._sync_failures_armed = 0
        self._append_failures_armed = 0
        self._appends = 0
        self._entries_written = 0
        self._truncations = 0
        self._syncs = 0
        self._failed_syncs = 0
        self._failed_appends = 0
        self._crashes = 0
        self._snapshots_committed = 0

    # --- the Storage protocol ---------------------------------------------------------------

    def load(self) -> Recovered:
        snapshot = self._snapshot[0] if self._snapshot is not None else None
        if self._hard_state_lost:
            if (self._log.last_index or snapshot is not None) and not (
                self._allow_missing_hard_state
            ):
                raise MissingHardState(
                    "memory storage: hard state is missing but the log holds entries"
                )
            self._hard_state_lost = False
        if snapshot is not None and snapshot.index > self._log.base:
            if self._log.term_at(snapshot.index) == snapshot.term:
                self._log.compact(snapshot.index)
                self._durable.compact(snapshot.index)
            else:
                # The reset_log after this snapshot was lost: recovery does it, durably.
                reset = _Write(snapshot.index + 1, (), snapshot)
                self._log.apply(reset)
                self._durable.apply(reset)
                self._unsynced.clear()
        self._open = True
        hard_state = self._durable_hard_state
        if snapshot is not None and snapshot.index > hard_state.commit:
            hard_state = HardState(hard_state.term, hard_state.vote, snapshot.index)
        return Recovered(hard_state, snapshot, list(self._log.entries))

    def append(self, entries: Sequence[Entry]) -> None:
        if not self._open:
            self._check_open()  # (which raises: the test written out, a call less per write)
        if not entries:
            return
        if self._append_failures_armed:
            self._append_failures_armed -= 1
            self._failed_appends += 1
            raise StorageError("memory storage: injected append failure")
        first = entries[0].index
        last = self._log.last_index
        if not self._log.base + 1 <= first <= last + 1:
            raise ValueError(
                f"append: first index {first} is outside {self._log.base + 1}..{last + 1}"
                " (a gap after the last index, or at or below the snapshot)"
            )
        for offset, entry in enumerate(entries):
            if entry.index != first + offset:
                raise ValueError(
                    f"append: entry index {entry.index} where {first + offset} was expected"
                )
        if first <= last:
            commit = (self._pending_hard_state or self._durable_hard_state).commit
            if first <= commit:
                raise ValueError(
                    f"append: would truncate entry {first}, at or below commit index {commit}"
                )
            self._truncations += 1
        self._write(_Write(first, tuple(entries)))
        self._appends += 1
        self._entries_written += len(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._check_open()
        current = self._pending_hard_state or self._durable_hard_state
        if hard_state.term < current.term or hard_state.commit < current.commit:
            raise ValueError(
                f"set_hard_state: term and commit never decrease: {current} -> {hard_state}"
            )
        self._pending_hard_state = hard_state

    def sync(self) -> None:
        if not self._open:
            self._check_open()  # (which raises: the test written out, as in ``append``)
        if self._sync_failures_armed:
            # Like a failed fsync: nothing became durable, and whether the data is still in
            # the page cache is unknown; the caller must stop (StorageError is never ignored).
            self._sync_failures_armed -= 1
            self._failed_syncs += 1
            raise StorageError("memory storage: injected sync failure")
        pending = self._pending_hard_state
        if pending is not None and pending.commit > self._log.last_index:
            raise ValueError(
                f"sync: commit index {pending.commit} is beyond the last index"
                f" {self._log.last_index}"
            )
        for write in self._unsynced:
            self._durable.apply(write)
        self._unsynced.clear()
        if pending is not None:
            self._durable_hard_state = pending
            self._pending_hard_state = None
        self._syncs += 1
        if self._durable != self._log:
            raise AssertionError("after sync the durable log must equal the written log")

    def create_snapshot(self, meta: SnapshotMeta) -> MemorySnapshotWriter:
        self._check_open()
        if meta.index < 1 or meta.term < 1:
            raise ValueError(f"create_snapshot: index and term must be >= 1, got {meta}")
        return MemorySnapshotWriter(self, meta)

    def open_snapshot(self) -> MemorySnapshotReader | None:
        self._check_open()
        if self._snapshot is None:
            return None
        return MemorySnapshotReader(*self._snapshot)

    def compact(self, index: int) -> None:
        self._check_open()
        current = self._snapshot[0].index if self._snapshot is not None else 0
        if index > current:
            raise ValueError(
                f"compact: index {index} is beyond the durable snapshot's index {current}"
            )
        self._log.compact(index)
        self._durable.compact(index)

    def reset_log(self, meta: SnapshotMeta) -> None:
        self._check_open()
        if self._snapshot is None or self._snapshot[0].index < meta.index:
            raise ValueError(
                f"reset_log: no durable snapshot at or beyond index {meta.index}: commit the"
                " snapshot first"
            )
        self._write(_Write(meta.index + 1, (), meta))

    def close(self) -> None:
        self._open = False
        self._pending_hard_state = None

    # --- simulation and fault injection -------------------------------------------------------

    def crash(
        self,
        *,
        lose_unsynced: bool = True,
        torn_write: bool = False,
        rng: RandomLike | None = None,
    ) -> None:
        """Simulate a crash (see the module docstring). ``torn_write`` needs ``rng``."""
        if torn_write and rng is None:
            raise ValueError("crash(torn_write=True) needs an rng (an object with randint)")
        if torn_write and not lose_unsynced:
            raise ValueError("crash: torn_write only applies to a power loss (lose_unsynced)")
        self._crashes += 1
        self._open = False
        self._pending_hard_state = None
        if not lose_unsynced:
            return
        survivors: list[_Write] = []
        if torn_write and self._unsynced and rng is not None:
            whole = rng.randint(0, len(self._unsynced) - 1)
            survivors = self._unsynced[:whole]
            torn = self._unsynced[whole]
            if torn.reset is None:
                kept = torn.entries[: rng.randint(0, len(torn.entries) - 1)]
                survivors.append(_Write(torn.first, kept))
        self._log = self._durable.copy()
        for write in survivors:
            self._log.apply(write)
        # What survived a power loss is on the disk now.
        self._durable = self._log.copy()
        self._unsynced.clear()

    def fail_next_sync(self, count: int = 1) -> None:
        """The next ``count`` sync() calls raise StorageError and make nothing durable."""
        self._sync_failures_armed = _count(count)

    def fail_next_append(self, count: int = 1) -> None:
        """The next ``count`` non-empty append() calls raise StorageError and write nothing."""
        self._append_failures_armed = _count(count)

    def lose_hard_state(self) -> None:
        """The hard state is deleted (an operator's mistake, not a crash)."""
        self._durable_hard_state = HardState()
        self._pending_hard_state = None
        self._hard_state_lost = True

    def durable_state(self) -> tuple[HardState, list[Entry]]:
        """What a power loss right now would leave (without a torn write): the hard state and
        the log after the compaction point."""
        return self._durable_hard_state, list(self._durable.entries)

    def statistics(self) -> MemoryStatistics:
        return MemoryStatistics(
            appends=self._appends,
            entries_written=self._entries_written,
            truncations=self._truncations,
            syncs=self._syncs,
            failed_syncs=self._failed_syncs,
            failed_appends=self._failed_appends,
            crashes=self._crashes,
            unsynced_appends=len(self._unsynced),
            snapshots_committed=self._snapshots_committed,
        )

    def _write(self, write: _Write) -> None:
        self._log.apply(write)
        self._unsynced.append(write)

    def _commit_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self._check_open()
        self._snapshots_committed += 1
        if self._snapshot is None or meta.index >= self._snapshot[0].index:
            self._snapshot = (meta, data)

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("memory storage is closed (crashed or closed): call load() first")


class MemorySnapshotWriter:
    """Collects the payload; ``commit`` makes it the durable, current snapshot."""

    def __init__(self, storage: MemoryStorage, meta: SnapshotMeta) -> None:
        self.meta = meta
        self._storage = storage
        self._chunks: list[bytes] = []
        self._done = False

    def write(self, data: bytes) -> None:
        self._check()
        self._chunks.append(bytes(data))

    def commit(self) -> None:
        self._check()
        self._done = True
        self._storage._commit_snapshot(self.meta, b"".join(self._chunks))

    def abort(self) -> None:
        self._done = True
        self._chunks.clear()

    def _check(self) -> None:
        if self._done:
            raise StorageError("memory snapshot writer already committed or aborted")


class MemorySnapshotReader:
    def __init__(self, meta: SnapshotMeta, data: bytes) -> None:
        self.meta = meta
        self.size = len(data)
        self._data = data
        self._position = 0

    def read(self, n: int) -> bytes:
        chunk = self._data[self._position : self._position + n]
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        self._data = b""


def _count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    return count
