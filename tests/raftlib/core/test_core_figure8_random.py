"""Figure 8 on an unreliable network: 1000 randomized crash/restart iterations with Raft's
safety properties checked throughout, then a healed cluster must converge."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest

from raftlib.core import AppendEntries, Message
from raftlib.errors import NotLeader, ProposalDropped, ProposalQueueFull
from tests.raftlib.core.network import Network

MakeNet = Callable[..., Network]
QUORUM_5 = 3


def _shake_queue(net: Network, rng: random.Random, steps: int) -> None:
    """Deliver queued messages in random order, dropping and duplicating some."""
    for _ in range(steps):
        if not net.queue:
            return
        position = rng.randrange(len(net.queue))
        msg: Message = net.queue[position]
        roll = rng.random()
        if roll < 0.1:
            net.queue.pop(position)
            net.log("drop", msg)
        elif roll < 0.15:
            net.deliver_one(msg)  # duplicate: leave the copy queued
        else:
            net.queue.pop(position)
            net.deliver_one(msg)


def run_unreliable_figure8(
    net: Network, seed: int, iterations: int, leader_crash_probability: float = 0.03
) -> None:
    rng = random.Random(seed)
    ids = net.ids
    acknowledged: set[bytes] = set()
    proposals = 0
    for iteration in range(iterations):
        leader = net.leader()
        if leader is not None and rng.random() < 0.7:
            try:
                net.propose(leader, b"c%d" % proposals)
                proposals += 1
            except (NotLeader, ProposalQueueFull, ProposalDropped):
                pass
        _shake_queue(net, rng, rng.randint(1, 40))
        for node_id in ids:
            if rng.random() < 0.5:
                net.tick(node_id)
        roll = rng.random()
        if leader is not None and leader not in net.down and roll < leader_crash_probability:
            # Figure 8: the leader crashes, sometimes between its fsync and its sends.
            net.crash_mid_ready(leader, persisted=rng.random() < 0.5)
        elif roll < leader_crash_probability + 0.02:
            victim = rng.choice(ids)
            if victim not in net.down:
                net.crash(victim)
        live = [i for i in ids if i not in net.down]
        if net.down and (len(live) < QUORUM_5 or rng.random() < 0.15):
            net.restart(rng.choice(sorted(net.down)))
        for node_id in ids:
            if node_id not in net.down:
                acknowledged.update(net.applied_data(node_id))
        if iteration % 10 == 0:
            net.check_safety()
    net.check_safety()
    converge(net, seed, acknowledged)
    assert len(acknowledged) > iterations // 10, f"too little progress; seed={seed}"


def converge(net: Network, seed: int, acknowledged: set[bytes]) -> None:
    """Liveness: heal everything; the cluster must elect a leader, converge, and keep every
    command any node ever applied (i.e. acknowledged to a client)."""
    ids = net.ids
    for node_id in sorted(net.down):
        net.restart(node_id)
    net.heal()
    net.filter = None
    for _ in range(200):
        net.tick_all()
        net.stabilize()
        leader = net.leader()
        if leader is not None and len({net.node(i).commit_index for i in ids}) == 1:
            try:
                net.propose(leader, b"final")
            except (NotLeader, ProposalQueueFull, ProposalDropped):
                continue
            net.stabilize()
            if all(b"final" in net.applied_data(i) for i in ids):
                break
    else:
        raise AssertionError(f"healed cluster did not converge; reproduce with seed={seed}")
    net.check_safety()
    reference = net.applied[ids[0]]
    for node_id in ids:
        assert net.applied[node_id] == reference, f"reproduce with seed={seed}"
        missing = acknowledged - set(net.applied_data(node_id))
        assert not missing, f"node {node_id} lost {sorted(missing)[:5]}; seed={seed}"


def run_directed_figure8(net: Network, seed: int, iterations: int) -> set[bytes]:
    """Figure 8 as a loop: a random node campaigns inside a random group; the new leader
    sometimes gets only its predecessors' entries through (its own-term entries are lost, as
    in Figure 8 (c)); leaders crash, sometimes between fsync and send; nodes restart."""
    rng = random.Random(seed)
    ids = net.ids
    acknowledged: set[bytes] = set()
    proposals = 0
    for iteration in range(iterations):
        live = [i for i in ids if i not in net.down]
        if rng.random() < 0.5:
            candidate = rng.choice(live)
        else:
            # Figure 8's S5: the node holding the newest-term (possibly uncommitted) entry.
            candidate = max(live, key=lambda i: (net.terms(i)[-1:], rng.random()))
        others = [i for i in live if i != candidate]
        group = {candidate, *rng.sample(others, rng.randint(0, len(others)))}
        net.heal()
        net.partition(group, *[[i] for i in ids if i not in group])
        net.campaign(candidate)
        net.stabilize()
        leader = net.node(candidate)
        if leader.role.value == "leader":
            term = leader.term
            if rng.random() < 0.5:
                # Figure 8 (c): only entries of earlier terms get through.
                net.filter = lambda m, t=term: (
                    not (  # type: ignore[misc]
                        isinstance(m, AppendEntries) and any(e.term == t for e in m.entries)
                    )
                )
            proposals += 1
            with contextlib.suppress(NotLeader, ProposalQueueFull, ProposalDropped):
                net.propose(candidate, *[b"f%d.%d" % (proposals, k) for k in range(2)])
            net.tick(candidate)
            net.stabilize()
            net.filter = None
            if rng.random() < 0.6:
                net.crash_mid_ready(candidate, persisted=rng.random() < 0.5)
        net.drop_queued()
        down = sorted(net.down)
        if down and (len(down) > 1 or rng.random() < 0.5):
            net.restart(rng.choice(down))
        for node_id in ids:
            if node_id not in net.down:
                acknowledged.update(net.applied_data(node_id))
        if iteration % 10 == 0:
            net.check_log_matching()
    net.check_safety()
    converge(net, seed, acknowledged)
    return acknowledged


def test_figure8_directed_1000_iterations(make_net: MakeNet) -> None:
    """§5.4.2 Figure 8, 1000 randomized rounds: leaders elected by random groups (often the
    node with the newest-term entry, like S5) replicate old-term entries to majorities and
    crash before their own-term entries spread; election safety, log matching, leader
    completeness and state machine safety hold throughout and the healed cluster converges."""
    seed = 5
    net = make_net(5, seed=seed, append_entries_max=1, pre_vote=False, check_quorum=False)
    acknowledged = run_directed_figure8(net, seed, iterations=1000)
    assert len(acknowledged) > 100, f"too little progress; seed={seed}"


def test_figure8_unreliable_1000_iterations(make_net: MakeNet) -> None:
    """§5.4 Figure 8 scenario repeated 1000 times with leader crashes (also between fsync and
    send), restarts, loss, duplication and reordering: election safety, log matching, leader
    completeness and state machine safety hold throughout; no acknowledged command is lost."""
    seed = 8
    net = make_net(5, seed=seed)
    run_unreliable_figure8(net, seed, iterations=1000)


def test_figure8_unreliable_without_prevote_or_check_quorum(make_net: MakeNet) -> None:
    """The same churn with the plain §5 algorithm (no PreVote, no CheckQuorum)."""
    seed = 9
    net = make_net(5, seed=seed, pre_vote=False, check_quorum=False)
    run_unreliable_figure8(net, seed, iterations=500)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_figure8_unreliable_many_seeds(make_net: MakeNet, seed: int) -> None:
    """Long run: many seeds of the unreliable Figure 8 scenario."""
    net = make_net(5, seed=seed, append_entries_max=3, inflight_appends_max=4)
    run_unreliable_figure8(net, seed, iterations=1000)
