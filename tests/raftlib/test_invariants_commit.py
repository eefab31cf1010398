"""The observer's commit-durability rule: when a leader commits an entry, a majority of the
voters it decides by holds it on disk, each majority of a joint configuration (thesis §4.3,
§5.4.2). Whoever reports the commit says who holds the entry; the rule never asks the leader."""

from __future__ import annotations

import pytest

from raftlib.core.types import ConfState
from raftlib.invariants import Observer


@pytest.mark.parametrize(("voters", "holders"), [
    ((1, 2, 3), {1, 2}),
    ((1, 2, 3), {1, 2, 3}),
    ((1, 2, 3, 4), {1, 2, 4}),
    ((1,), {1}),
])
def test_a_commit_a_majority_of_the_voters_holds_on_disk_is_safe(
        voters: tuple[int, ...], holders: set[int]) -> None:
    observer = Observer()
    observer.saw_commit(1, 3, 10, ConfState(voters), holders)
    assert observer.violations() == []


@pytest.mark.parametrize(("conf", "holders", "named"), [
    # A minority, or exactly half, of the voters.
    (ConfState((1, 2, 3)), {1}, "[1] of the voters [1, 2, 3]"),
    (ConfState((1, 2, 3, 4)), {1, 2}, "[1, 2] of the voters [1, 2, 3, 4]"),
    # Learners and nodes outside the configuration hold it, voters do not.
    (ConfState((1, 2, 3), learners=(4, 5)), {1, 4, 5, 9}, "[1] of the voters [1, 2, 3]"),
    # Joint: the incoming voters' majority holds it, the outgoing voters' does not.
    (ConfState((1, 4, 5), voters_outgoing=(1, 2, 3)), {1, 4, 5},
     "[1] of the voters [1, 2, 3]"),
    # Joint: the outgoing majority alone (what deciding by the older configuration does).
    (ConfState((3, 4, 5), voters_outgoing=(1, 2, 3)), {1, 2, 3},
     "[3] of the voters [3, 4, 5]"),
])
def test_a_commit_no_majority_of_each_voter_set_holds_is_reported(
        conf: ConfState, holders: set[int], named: str) -> None:
    observer = Observer()
    observer.saw_commit(2, 7, 41, conf, holders)
    violations = observer.violations()
    assert len(violations) == 1
    assert violations[0].startswith("commit durability: leader 2 of term 7 committed index 41")
    assert named in violations[0]
