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

from raftlib.core.types import Entry, HardState


class Storage(Protocol):
    def load(self) -> tuple[HardState, list[Entry]]:
        """Recover: the last durable hard state and the whole durable log, in index order
        (contiguous, starting at index 1). Raises ``CorruptLog`` when data before the tail is
        damaged; a torn record at the tail is truncated (with a logged warning) instead."""
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

    def close(self) -> None:
        """Release files. Does not imply sync()."""
        ...
