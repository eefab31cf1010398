"""The storage interface: what the node driver needs from durable storage.

Implementations: ``raftlib.storage.wal.WalStorage`` (segment files, CRC-32C, fsync) and
``raftlib.storage.memory.MemoryStorage`` (tests and simulation; ``crash()`` drops whatever was
not synced). Users may plug their own: implement this protocol.

Methods are synchronous and may block (disk I/O); the Trio driver calls them from a worker
thread, one call at a time (never concurrently), so implementations need no locking. A storage
that never blocks may say so with a class attribute ``blocking = False``: the driver then calls
it inline, which keeps simulations deterministic and lets Trio's autojump clock see the node as
busy rather than idle while it "writes".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from raftlib.core.types import Entry, HardState, SnapshotMeta


@attrs.frozen
class Recovered:
    """What ``Storage.load`` found: the durable hard state, the current snapshot (None before
    the first), and the log after it (contiguous, starting at ``snapshot.index + 1``, or at 1
    with no snapshot; never an entry at or below the snapshot's index)."""

    hard_state: HardState
    snapshot: SnapshotMeta | None
    entries: list[Entry]


class SnapshotWriter(Protocol):
    """A snapshot being written. ``write`` touches only this snapshot's own temporary file, so
    it may run in any one thread while other storage calls go on (a state machine streams a
    large snapshot off the event loop); ``commit`` and ``abort`` are ordinary storage calls."""

    meta: SnapshotMeta

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Checksum, fsync, rename into place, fsync the directory: once this returns the
        snapshot is durable and current; older snapshot files may be deleted."""
        ...

    def abort(self) -> None:
        """Drop the temporary file; the current snapshot is unchanged."""
        ...


class SnapshotReader(Protocol):
    """The current snapshot, opened for reading (to restore or to send to a follower). An open
    reader stays valid even if a newer snapshot replaces the file meanwhile."""

    meta: SnapshotMeta
    size: int  # payload bytes

    def read(self, n: int) -> bytes:
        """Up to ``n`` payload bytes; b"" at the end. Raises ``CorruptSnapshot`` (naming the
        file) when the payload does not match its checksum once the end is reached."""
        ...

    def close(self) -> None: ...


class Storage(Protocol):
    def load(self) -> Recovered:
        """Recover: the last durable hard state, the current snapshot and the durable log after
        it. Raises ``CorruptLog`` when data before the tail is damaged (a torn record at the
        tail is truncated with a logged warning instead), ``CorruptSnapshot`` when the snapshot
        the log needs is missing or damaged, and ``MissingHardState`` when the log holds
        entries but the hard state is gone (unless the storage was opened to allow it)."""
        ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Write entries (contiguous). Any stored entry with index >= entries[0].index is
        discarded first (a leader overwrote a conflicting suffix). Not durable until sync()."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None:
        """Record the hard state. Not durable until sync()."""
        ...

    def sync(self) -> None:
        """Make every earlier append/set_hard_state durable (one fsync covers the batch: group
        commit). Returns only once durable."""
        ...

    def create_snapshot(self, meta: SnapshotMeta) -> SnapshotWriter:
        """Start writing a snapshot (taken locally, or received from a leader)."""
        ...

    def open_snapshot(self) -> SnapshotReader | None:
        """The current durable snapshot, or None before the first."""
        ...

    def compact(self, index: int) -> None:
        """Entries up to ``index`` are no longer needed: the current durable snapshot covers
        them (``index`` <= its index, else ``ValueError``). The storage may delete whole
        segments below it; ``load`` never returns them again. Call it only once the snapshot
        is committed (its ``commit()`` returned)."""
        ...

    def reset_log(self, meta: SnapshotMeta) -> None:
        """A received snapshot replaced a log that does not contain its last entry: discard
        every entry; the log goes on at ``meta.index + 1``. Recorded in order with appends and
        durable at the next sync (a later append must never survive a crash without it).
        Call it after the snapshot's ``commit()``: a storage refuses (``ValueError``) a reset
        beyond its durable snapshot, which would leave a log that nothing covers. A crash that
        loses the reset is repaired on ``load``: a log that does not hold the snapshot's last
        entry (missing, or another term) is discarded there."""
        ...

    def close(self) -> None:
        """Release files. Does not imply sync()."""
        ...
