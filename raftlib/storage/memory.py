"""MemoryStorage: an in-memory ``Storage`` for tests and the deterministic simulator.

It models the disk a ``WalStorage`` sees, at entry granularity:

- ``append`` is a write that reached the operating system (it survives a process crash) but
  not the disk: a power loss can drop it until ``sync()``.
- ``set_hard_state`` stays in process memory until ``sync()`` (WalStorage writes the hard state
  file in ``sync``), so any crash or ``close()`` before it loses it.
- ``crash(lose_unsynced=True)`` is a power loss: every unsynced append is gone. With
  ``torn_write=True`` the unsynced appends are instead cut at a point chosen by ``rng``: the
  ones before it survive whole and the one it falls in keeps a strict prefix of its entries
  (its suffix truncation, if any, did happen). ``crash(lose_unsynced=False)`` is a process
  crash: written data survives, still unsynced.

After ``crash()`` or ``close()`` the storage behaves like a closed one until ``load()``, which
"reopens" it, as a restarted node would. Everything is deterministic: randomness comes only
from the ``rng`` argument (anything with ``randint(a, b)``, e.g. ``random.Random(seed)``).

Fault injection for the harness: ``fail_next_sync(count)`` and ``fail_next_append(count)``
make the next calls raise ``StorageError`` without effect, as a failing disk would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from raftlib.core.types import Entry, HardState
from raftlib.errors import StorageError


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
    unsynced_appends: int  # appends a power loss right now would threaten


@attrs.frozen
class _Write:
    """One append as it reached the OS: cut the log before index ``first``, then extend it
    with ``entries`` (which start at ``first``; empty when a torn write kept none)."""

    first: int
    entries: tuple[Entry, ...]


class MemoryStorage:
    # Never blocks: the node driver calls it inline instead of in a worker thread, which keeps
    # simulations deterministic.
    blocking = False

    def __init__(self) -> None:
        self._durable_log: list[Entry] = []
        self._durable_hard_state = HardState()
        self._log: list[Entry] = []  # what the OS holds: durable log + unsynced writes
        self._unsynced: list[_Write] = []
        self._pending_hard_state: HardState | None = None
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

    # --- the Storage protocol ---------------------------------------------------------------

    def load(self) -> tuple[HardState, list[Entry]]:
        self._open = True
        return self._durable_hard_state, list(self._log)

    def append(self, entries: Sequence[Entry]) -> None:
        self._check_open()
        if not entries:
            return
        if self._append_failures_armed:
            self._append_failures_armed -= 1
            self._failed_appends += 1
            raise StorageError("memory storage: injected append failure")
        first = entries[0].index
        last = len(self._log)
        if not 1 <= first <= last + 1:
            raise ValueError(f"append: first index {first} leaves a gap after last index {last}")
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
        write = _Write(first, tuple(entries))
        _apply(self._log, write)
        self._unsynced.append(write)
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
        self._check_open()
        if self._sync_failures_armed:
            # Like a failed fsync: nothing became durable, and whether the data is still in
            # the page cache is unknown; the caller must stop (StorageError is never ignored).
            self._sync_failures_armed -= 1
            self._failed_syncs += 1
            raise StorageError("memory storage: injected sync failure")
        pending = self._pending_hard_state
        if pending is not None and pending.commit > len(self._log):
            raise ValueError(
                f"sync: commit index {pending.commit} is beyond the last index {len(self._log)}"
            )
        for write in self._unsynced:
            _apply(self._durable_log, write)
        self._unsynced.clear()
        if pending is not None:
            self._durable_hard_state = pending
            self._pending_hard_state = None
        self._syncs += 1
        if self._durable_log != self._log:
            raise AssertionError("after sync the durable log must equal the written log")

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
            kept = torn.entries[: rng.randint(0, len(torn.entries) - 1)]
            survivors.append(_Write(torn.first, kept))
        self._log = list(self._durable_log)
        for write in survivors:
            _apply(self._log, write)
        # What survived a power loss is on the disk now.
        self._durable_log = list(self._log)
        self._unsynced.clear()

    def fail_next_sync(self, count: int = 1) -> None:
        """The next ``count`` sync() calls raise StorageError and make nothing durable."""
        self._sync_failures_armed = _count(count)

    def fail_next_append(self, count: int = 1) -> None:
        """The next ``count`` non-empty append() calls raise StorageError and write nothing."""
        self._append_failures_armed = _count(count)

    def durable_state(self) -> tuple[HardState, list[Entry]]:
        """What a power loss right now would leave (without a torn write)."""
        return self._durable_hard_state, list(self._durable_log)

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
        )

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("memory storage is closed (crashed or closed): call load() first")


def _apply(log: list[Entry], write: _Write) -> None:
    del log[write.first - 1 :]
    log.extend(write.entries)


def _count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    return count
