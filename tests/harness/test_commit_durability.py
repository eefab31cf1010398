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


@pytest.mark.parametrize("seed", [24, 1558])
def test_every_commit_a_leader_makes_is_checked_even_in_the_batch_that_deposes_it(
    seed: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On these swarm seeds a paused follower comes back and sends its leader, in one batch,
    acknowledgements that move the leader's commit index and a vote request of a higher term
    that deposes it. Checked only after the whole batch, those commits went unchecked (the check
    judges a leader's commits, and the node was no longer leader): a bug's unsafe commit there
    would have escaped. Every leader's highest commit index in each of its terms must reach the
    check."""
    from collections import defaultdict

    from harness.campaign import options_for
    from harness.runner import simulate
    from raftlib.core.leader import LeaderMixin
    from raftlib.invariants import Observer

    made: dict[tuple[int, int], int] = defaultdict(int)
    checked: dict[tuple[int, int], int] = defaultdict(int)
    maybe_commit = LeaderMixin._maybe_commit
    saw_commit = Observer.saw_commit

    def recording_maybe_commit(core: LeaderMixin) -> None:
        maybe_commit(core)
        key = (core.node_id, core.term)
        made[key] = max(made[key], core.commit_index)

    def recording_saw_commit(observer: Observer, leader: int, term: int, index: int,
                             *rest: object) -> None:
        saw_commit(observer, leader, term, index, *rest)  # type: ignore[arg-type]
        checked[(leader, term)] = max(checked[(leader, term)], index)

    monkeypatch.setattr(LeaderMixin, "_maybe_commit", recording_maybe_commit)
    monkeypatch.setattr(Observer, "saw_commit", recording_saw_commit)
    outcome = simulate(options_for(RunOptions(backend="sim", swarm=True), seed))
    assert outcome.observer.unsafe_commits == []
    assert checked, "no commit was checked"
    unchecked = {key: (index, checked.get(key, 0)) for key, index in made.items()
                 if index > checked.get(key, 0) and index > 0}
    assert not unchecked, f"swarm seed {seed}: (leader, term): (made, checked) {unchecked}"
