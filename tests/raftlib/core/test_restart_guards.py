"""Guards of the restart checks (raftlib/core/restart.py) that no test pinned down: each test
here fails on a small change (a mutant) of one check of the state storage hands a restarting
core, which left the core, node and storage tests green.

The mutants each test kills are named in its docstring as ``restart.py:line`` of the code it
guards (as of the mutation audit that added this file). Refusals are checked through
``RaftCore`` as a restart meets them, each naming the field; so are the edge states a correct
run does leave, which must be taken as they are."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import pytest

from raftlib.core import CoreConfig, Entry, HardState, RaftCore
from raftlib.core.types import ConfState, SnapshotMeta
from raftlib.errors import ConfigError
from tests.raftlib.core.network import entries_of_terms

CONF = ConfState((1, 2, 3))


def restart(
    hard_state: Any,
    entries: Sequence[Any] = (),
    applied: Any = None,
    snapshot: Any = None,
) -> RaftCore:
    return RaftCore(CoreConfig(node_id=1, voters=(1, 2, 3)), random.Random(0), hard_state,
                    entries, applied, snapshot)


def after(base: int, terms: Sequence[int]) -> list[Entry]:
    """Entries of ``terms`` right after a snapshot at ``base``."""
    return [Entry(term, base + offset, b"") for offset, term in enumerate(terms, start=1)]


SNAP_5 = SnapshotMeta(5, 2, CONF)


@pytest.mark.parametrize(
    ("hard_state", "entries", "applied", "snapshot", "field"),
    [
        # restart.py:44, :45: the hard state's type.
        ((1, 0, 0), (), None, None, "hard_state must be a HardState"),
        # restart.py:46 to :49: each of its fields, a plain int >= 0.
        (HardState(1, -1, 0), (), None, None, "hard_state.vote"),
        (HardState(1, 0, -1), (), None, None, "hard_state.commit"),
        (HardState(True, 0, 0), (), None, None, "hard_state.term"),
        # restart.py:53, :54: the snapshot's type.
        (HardState(1, 0, 0), (), None, (5, 1, CONF), "snapshot must be a SnapshotMeta"),
        # restart.py:55 to :57: its index and term, ints >= 1.
        (HardState(1, 0, 0), (), 0, SnapshotMeta(0, 1, CONF), "snapshot index and term"),
        (HardState(1, 0, 0), (), None, SnapshotMeta(5, 0, CONF), "snapshot index and term"),
        (HardState(1, 0, 0), (), None, SnapshotMeta(True, 1, CONF), "snapshot index and term"),
        (HardState(1, 0, 0), (), None, SnapshotMeta(5, True, CONF), "snapshot index and term"),
        # restart.py:60, :61: entries are Entries, numbered on from the snapshot.
        (HardState(1, 0, 0), [(1, 1)], None, None, "entries[0]"),
        (HardState(2, 0, 5), after(4, [2]), None, SNAP_5, "entries[0]"),
        (HardState(2, 0, 5), after(6, [2]), None, SNAP_5, "entries[0]"),
        # restart.py:66, :67: entry terms >= 1, never below the snapshot's or the previous.
        (HardState(1, 0, 0), [Entry(0, 1)], None, None, "entries[0].term"),
        (HardState(2, 0, 5), after(5, [1]), None, SNAP_5, "entries[0].term"),
        (HardState(2, 0, 0), [Entry(True, 1)], None, None, "entries[0].term"),
        # restart.py:73, :74: commit within the log (after the snapshot's entries).
        (HardState(2, 0, 8), after(5, [2, 2]), None, SNAP_5, "hard_state.commit"),
        (HardState(2, 0, 6), (), None, SNAP_5, "hard_state.commit"),
        # restart.py:77, :78: applied in [snapshot index, commit].
        (HardState(2, 0, 6), after(5, [2, 2]), 7, SNAP_5, "applied"),
        (HardState(2, 0, 6), after(5, [2, 2]), 4, SNAP_5, "applied"),
        (HardState(1, 0, 1), entries_of_terms([1]), -1, None, "applied"),
        (HardState(1, 0, 1), entries_of_terms([1]), True, None, "applied"),
    ],
)
def test_a_restart_state_no_correct_run_leaves_is_refused_naming_the_field(
    hard_state: Any, entries: Sequence[Any], applied: Any, snapshot: Any, field: str
) -> None:
    """Storage handing a state no correct run can produce (a storage bug, edited data) stops
    the restart with a one-line ConfigError naming the field (restart.py:44 to :81, line by
    line in the table)."""
    with pytest.raises(ConfigError, match=re.escape(field)) as info:
        restart(hard_state, entries, applied, snapshot)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("hard_state", "entries", "applied", "snapshot"),
    [
        # A snapshot at index 1 of term 1, nothing after it, no commit yet on record.
        (HardState(1, 0, 0), (), 1, SnapshotMeta(1, 1, CONF)),
        # Entries of the snapshot's term; commit at the last entry; applied at commit.
        (HardState(2, 0, 7), after(5, [2, 2]), 7, SNAP_5),
        # Applied at the snapshot's index, commit below it (restored, not yet relearnt).
        (HardState(2, 0, 3), after(5, [2, 3]), 5, SNAP_5),
        # No snapshot: commit at the last entry and everything applied.
        (HardState(3, 2, 3), entries_of_terms([1, 3, 3]), 3, None),
    ],
)
def test_the_edge_states_a_correct_run_leaves_are_taken(
    hard_state: HardState, entries: Sequence[Entry], applied: int, snapshot: SnapshotMeta | None
) -> None:
    """The bounds of every check are inclusive where a correct run reaches them: snapshot index
    and term 1, an entry of the snapshot's term or the previous entry's, commit at the last
    entry, applied at the snapshot's index or at commit (restart.py:55, :66, :73, :77)."""
    core = restart(hard_state, entries, applied, snapshot)
    base = snapshot.index if snapshot is not None else 0
    assert core.applied_index == applied
    assert core.commit_index == max(hard_state.commit, base)
    assert core.last_index == base + len(entries)


def test_a_restart_in_the_durable_term_keeps_the_vote_it_cast() -> None:
    """Only an entry newer than the durable term moves the restart to that term without a
    vote; an entry of the durable term changes nothing, and the vote cast in it stands: a node
    that forgot it could vote twice in one term (restart.py:32, :34)."""
    core = restart(HardState(3, 2, 1), entries_of_terms([1, 3]))
    assert (core.term, core.vote) == (3, 2)
    assert core.ready().hard_state is None  # nothing to persist: storage holds it already


def test_a_restart_takes_the_newest_term_of_the_log_from_its_last_entry() -> None:
    """The newest term in the log is its last entry's (terms never decrease along it), and the
    restart adopts it with no vote (restart.py:31 to :33)."""
    core = restart(HardState(4, 2, 1), entries_of_terms([1, 4, 5, 6]))
    assert (core.term, core.vote, core.commit_index) == (6, 0, 1)
    assert core.ready().hard_state == HardState(6, 0, 1)


def test_a_snapshot_newer_than_the_durable_term_moves_the_restart_to_its_term() -> None:
    """A received snapshot made durable just before a crash, its hard state not: with no
    entry after it, the snapshot's term is the newest the node has seen (restart.py:31)."""
    core = restart(HardState(1, 3, 0), (), None, SnapshotMeta(5, 2, CONF))
    assert (core.term, core.vote, core.commit_index) == (2, 0, 5)
    same = restart(HardState(2, 3, 0), (), None, SnapshotMeta(5, 2, CONF))
    assert (same.term, same.vote) == (2, 3)


def test_a_restart_from_a_snapshot_takes_the_configuration_it_holds() -> None:
    """The configuration in force after a restart from a snapshot is the snapshot's, not the
    one the cluster started with: a node that left (or joined) before the snapshot must not
    count the old members' votes (raft.py:139)."""
    moved = ConfState((1, 2, 4))
    core = restart(HardState(2, 0, 5), (), None, SnapshotMeta(5, 2, moved))
    assert core.conf == moved
