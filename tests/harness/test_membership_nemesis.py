"""The membership nemesis in the simulator: each action changes the configuration as it says,
the window's end restores the cluster's size, runs stay valid under it with every other
fault, and the membership zoo bugs are caught on their campaign seeds."""

from __future__ import annotations

from typing import Any

import pytest

from harness import zoo
from harness.nemesis import Fault, Schedule
from harness.options import RunOptions, parse_nemesis
from harness.runner import run
from harness.sim.world import SimWorld


def _world(action: str, *, nodes: int = 3, seed: int = 1) -> SimWorld:
    options = RunOptions(nodes=nodes, workload="append", rate=50.0, seed=seed,
                         time_limit=6.0, nemesis=("member",))
    schedule = Schedule(nodes=nodes, time_limit=6.0,
                        faults=(Fault(1, "member", 1.0, 4.0, {"action": action}),))
    return SimWorld(options, schedule)


def _took_effect(world: SimWorld) -> list[str]:
    return [line.split("membership: ", 1)[1] for line in world.node_log
            if "membership:" in line and "took effect" in line]


def _conf_at_leader(world: SimWorld) -> Any:
    leader = world.leader()
    assert leader is not None
    core = world.nodes[leader].core
    assert core is not None
    return core.conf


def test_grow_adds_two_voters_through_the_joint_configuration_and_the_end_shrinks_back() -> None:
    world = _world("grow")
    outcome = world.run()
    done = _took_effect(world)
    assert done[0].startswith("add voter 4, add voter 5"), done
    assert len(done) == 2  # grown at the start, shrunk at the end
    conf = _conf_at_leader(world)
    assert len(conf.voters) == 3 and not conf.voters_outgoing and not conf.learners
    assert outcome.stats["membership_changes"] == 2


def test_learner_adds_learners_and_the_end_removes_them() -> None:
    world = _world("learner")
    world.run()
    done = _took_effect(world)
    assert done[0] == "add learner 4, add learner 5 took effect on node " + done[0].split()[-1]
    conf = _conf_at_leader(world)
    assert len(conf.voters) == 3 and not conf.learners


def test_wipe_replace_retires_the_id_and_a_new_node_takes_its_place() -> None:
    world = _world("wipe-replace", nodes=5)
    outcome = world.run()
    retired = [n for n, node in world.nodes.items() if node.retired]
    assert len(retired) == 1
    assert max(world.nodes) == 8  # 5 members + 2 spares, then a new one
    conf = _conf_at_leader(world)
    assert retired[0] not in conf.voters and len(conf.voters) == 5
    assert retired[0] not in (outcome.members or set())


@pytest.mark.parametrize("action", ["replace", "remove"])
def test_replace_and_remove_keep_the_cluster_serving(action: str) -> None:
    world = _world(action, nodes=5)
    outcome = world.run()
    assert _took_effect(world), world.node_log[-20:]
    assert outcome.liveness.probe_done_us is not None
    assert len(_conf_at_leader(world).voters) == 5


@pytest.mark.parametrize("workload", ["register", "kv", "append"])
def test_runs_with_every_fault_and_membership_changes_are_valid(workload: str) -> None:
    changes = 0
    for seed in range(3):
        options = RunOptions(workload=workload, seed=seed, nemesis=parse_nemesis("all"))
        report = run(options, None, lincheck_parallel=False)
        assert report.verdict == "valid", report.line
        changes += report.results["stats"]["membership_changes"]
    assert changes > 0  # the other faults leave room for some changes to be made


# Each membership bug on the first seed of its detection campaign that catches it (the
# correct implementation is valid on the same seed): bench/zoo_detection.py finds them.
MEMBERSHIP_BUGS = [
    ("learner-in-quorum", 16, "safety"),
    ("removed-node-campaigns", 0, "safety"),
    ("pending-conf-ignored", 166, "safety"),
    ("early-leave-joint", 145, "safety"),
]


@pytest.mark.parametrize(("name", "seed", "check"), MEMBERSHIP_BUGS)
def test_a_membership_bug_is_caught_and_the_correct_code_is_valid_on_its_seed(
    name: str, seed: int, check: str
) -> None:
    values = {**zoo.get(name).detection.options(), "seed": seed, "lincheck_timeout": 30.0}
    broken = run(RunOptions(**{**values, "bug": name}), None, lincheck_parallel=False)
    assert broken.verdict == "invalid", broken.line
    assert check in broken.results["failed_checks"], broken.line
    correct = run(RunOptions(**values), None, lincheck_parallel=False)
    assert correct.verdict == "valid", correct.line


def test_writes_that_only_removed_nodes_applied_count_as_held_by_a_members_snapshot() -> None:
    """Found by a swarm campaign (seed 29): every final member got the early writes through a
    snapshot, and the only nodes that had applied them one by one were removed since. The
    durability check must read what a member's snapshot stands for from any node's applied
    log, not only the members' (it reported 14 acknowledged writes missing)."""
    options = RunOptions(
        nodes=3, clients=3, workload="kv",
        nemesis=parse_nemesis("kill,pause,clock,disk,crash-after-vote,member"),
        time_limit=10.0, rate=100.0, nemesis_interval=0.3, pre_vote=False,
        append_entries_max=8, snapshot_entries=16, snapshot_trailing=0,
        snapshot_chunk_bytes=262144, seed=29)
    report = run(options, None, lincheck_parallel=False)
    assert report.verdict == "valid", report.line
    assert report.results["stats"]["membership_changes"] > 0


def test_wipe_replace_keeps_a_node_that_a_pending_configuration_added_back() -> None:
    """wipe-replace removes a voter, then retires it (wipes its disk) unless another window
    added it back meanwhile. Added back in a configuration still pending in the leader's log
    counts too: the leader may decide by that configuration and count the node's copies, so
    wiping it would be the harness losing acknowledged entries, which the commit-durability
    check would then blame on Raft."""
    import random
    from types import SimpleNamespace

    from harness.sim.loop import EventLoop
    from harness.sim.membership import MembershipNemesis
    from raftlib.core.membership import ChangeOp
    from raftlib.core.types import ConfState

    def node(applied: ConfState) -> Any:
        fake = SimpleNamespace(retired=False, diverged=None,
                               core=SimpleNamespace(conf=applied, pending=[]))
        fake.core._log_confs = lambda: fake.core.pending

        def retire() -> None:
            fake.retired = True

        def propose_change(changes: Any, done: Any) -> None:
            (change,) = changes
            if change.op is not ChangeOp.REMOVE:  # the new node's ADD_LEARNER
                done(None)
                return
            voters = tuple(v for v in fake.core.conf.voters if v != change.node)
            fake.core.conf = ConfState(voters=voters)
            # Another window's restore proposes it back; not applied yet.
            fake.core.pending = [ConfState(voters=(*voters, change.node))]
            done(None)

        fake.retire = retire
        fake.propose_change = propose_change
        return fake

    loop = EventLoop()
    leader = node(ConfState(voters=(1, 2, 3)))
    nodes: dict[int, Any] = {1: leader, 2: node(leader.core.conf), 3: node(leader.core.conf)}
    made: list[int] = []
    nemesis = MembershipNemesis(loop=loop, nodes=nodes, size=3,
                                make_node=lambda n: made.append(n) or node(leader.core.conf),
                                leader=lambda: 1, log=lambda _: None, rng=random.Random(1),
                                time_limit_us=10_000_000)
    nemesis.start("wipe-replace", 5_000_000)
    loop.run_until(5_000_000)
    removed = set(leader.core.pending[0].voters) - set(leader.core.conf.voters)
    assert len(removed) == 1, "the window removed no voter"
    assert not any(n.retired for n in nodes.values()), "a voter of the pending conf was wiped"
    assert made == []
