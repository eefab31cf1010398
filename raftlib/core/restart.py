"""Restart checks: what storage hands a core must be a state a correct run can leave.

``check_restart_state`` refuses anything else with a ``ConfigError`` naming the field (a
storage bug, or data that was edited); ``recovered_hard_state`` adjusts the one legitimate gap
a crash can leave between the log and the hard state.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftlib.core.types import NO_NODE, Entry, HardState, SnapshotMeta
from raftlib.core.validation import plain
from raftlib.errors import ConfigError


def recovered_hard_state(
    hard_state: HardState, entries: Sequence[Entry], snapshot: SnapshotMeta | None
) -> HardState:
    """The hard state to restart with when the log (or the snapshot) holds an entry newer than
    the durable term.

    A crash between the fsync of appended entries (or of a received snapshot) and the fsync of
    the hard state (storage may write them in that order so that a durable commit index never
    points past the durable log) leaves entries of term T with a durable term < T. Nothing
    that depended on the lost hard state was sent (the driver sends only after both are
    durable), so no vote cast in T was ever counted: restarting in term T with no vote is
    exactly as if we had learnt of T from the entry's leader and not voted yet (found by the
    harness, kv workload, seed 77).
    """
    newest = entries[-1].term if entries else (snapshot.term if snapshot is not None else 0)
    if newest > hard_state.term:
        return HardState(newest, NO_NODE, hard_state.commit)
    return hard_state


def check_restart_state(
    hard_state: HardState,
    entries: Sequence[Entry],
    applied: int,
    snapshot: SnapshotMeta | None,
) -> None:
    """Storage handed us a state that no correct run can produce: refuse with the field."""
    if not isinstance(hard_state, HardState):
        raise ConfigError(f"hard_state must be a HardState, got {type(hard_state).__name__}")
    for name in ("term", "vote", "commit"):
        if not plain(getattr(hard_state, name)):
            raise ConfigError(
                f"hard_state.{name} must be an int >= 0, got {getattr(hard_state, name)!r}"
            )
    base, last_term = 0, 0
    if snapshot is not None:
        if not isinstance(snapshot, SnapshotMeta):
            raise ConfigError(f"snapshot must be a SnapshotMeta, got {type(snapshot).__name__}")
        if not (plain(snapshot.index) and plain(snapshot.term) and snapshot.index >= 1
                and snapshot.term >= 1):
            raise ConfigError(f"snapshot index and term must be ints >= 1, got {snapshot!r}")
        base, last_term = snapshot.index, snapshot.term
    for position, entry in enumerate(entries):
        if not isinstance(entry, Entry) or entry.index != base + position + 1:
            raise ConfigError(
                f"entries[{position}] must be the Entry with index {base + position + 1}, "
                f"got {entry!r}"
            )
        # An entry may be newer than the durable term: see _recovered_hard_state.
        if not (plain(entry.term) and last_term <= entry.term and entry.term >= 1):
            raise ConfigError(
                f"entries[{position}].term {entry.term!r} must be >= 1 and >= the previous "
                f"entry's term {last_term}"
            )
        last_term = entry.term
    last = base + len(entries)
    if hard_state.commit > last:
        raise ConfigError(
            f"hard_state.commit {hard_state.commit} is beyond the last entry {last}"
        )
    if not plain(applied) or applied > max(hard_state.commit, base) or applied < base:
        raise ConfigError(
            f"applied {applied!r} must be in [snapshot index {base}, "
            f"commit {max(hard_state.commit, base)}]"
        )
