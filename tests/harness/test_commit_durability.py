"""The simulator's commit-durability check (``SimNode._check_commit``, ``harness.sim.durable``,
``Observer.saw_commit``): a commit a leader makes while no majority of the voters it decides by
holds the entry on disk is reported when it is made, whether or not a later fault turns it into
a lost write. Five zoo bugs make such commits; each is caught on the first seed of its recipe
(before this check: pending-conf-ignored took 166 seeds, and a plain swarm did not find it in
2,648), and the correct code passes the same runs."""

from __future__ import annotations

import attrs
import pytest

from harness import zoo
from harness.options import RunOptions
from harness.runner import run

COMMITS_WITHOUT_A_DURABLE_MAJORITY = [
    "pending-conf-ignored",  # decides by the applied configuration, not the log's latest
    "learner-in-quorum",  # counts a learner's copy
    "ack-before-fsync",  # followers acknowledge, the leader counts itself, before the fsync
    "send-before-fsync",
    "truncate-on-stale-append",  # a follower drops entries it acknowledged
]


@pytest.mark.parametrize("name", COMMITS_WITHOUT_A_DURABLE_MAJORITY)
def test_a_commit_without_a_durable_majority_is_reported_when_it_is_made(name: str) -> None:
    options = RunOptions(**zoo.BUGS[name].detection.options(), seed=0, lincheck_timeout=30.0)
    broken = run(attrs.evolve(options, bug=name), None, lincheck_parallel=False)
    assert broken.verdict == "invalid", broken.line
    found = broken.results["checks"]["safety"]["violations"]
    assert any(v.startswith("commit durability: leader ") for v in found), found[:3]
    correct = run(options, None, lincheck_parallel=False)
    assert correct.verdict == "valid", correct.line
