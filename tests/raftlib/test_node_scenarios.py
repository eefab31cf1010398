"""Cluster scenarios on the Trio node driver, memory transport and autojump clock (virtual time)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from raftlib import NotLeader, ProposalDropped, Role
from raftlib.core.types import EntryKind
from raftlib.testing import LocalCluster, RecordingStateMachine, open_local_cluster
from raftlib.transport.memory import LinkFaults


def commands(cluster: LocalCluster, node_id: int) -> list[bytes]:
    sm = cluster.state_machine(node_id)
    assert isinstance(sm, RecordingStateMachine)
    return sm.commands


def assert_safe(cluster: LocalCluster, context: str = "") -> None:
    problems = cluster.violations()
    assert not problems, f"{context}: " + "; ".join(problems)


async def propose_ok(cluster: LocalCluster, data: bytes, *, timeout_seconds: float = 5.0) -> None:
    """Propose at whoever leads, retrying through elections, until it is applied once."""
    with trio.fail_after(timeout_seconds):
        while True:
            leader = await cluster.wait_leader()
            try:
                await cluster.node(leader).propose(data)
                return
            except (NotLeader, ProposalDropped):
                await trio.sleep(0.05)


@pytest.fixture
async def cluster3() -> AsyncIterator[LocalCluster]:
    async with open_local_cluster(3, seed=3) as cluster:
        yield cluster


async def test_initial_election_within_one_second_of_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for seed in range(5):
        start = trio.current_time()
        async with open_local_cluster(3, seed=seed) as cluster:
            leader = await cluster.wait_leader(timeout_seconds=1.0)
            elapsed = trio.current_time() - start
            assert elapsed < 1.0, f"seed={seed}: election took {elapsed:.3f} s"
            assert cluster.leaders() == [leader], f"seed={seed}"


async def test_reelection_after_the_leader_is_cut_off(
    cluster3: LocalCluster, autojump_clock: trio.testing.MockClock
) -> None:
    old = await cluster3.wait_leader()
    cluster3.network.isolate(old)
    others = [n for n in cluster3.ids if n != old]
    new = await cluster3.wait_leader(among=others, timeout_seconds=3.0)
    assert new != old
    # CheckQuorum: the cut-off leader notices it lost its quorum and steps down.
    await trio.sleep(1.0)
    assert cluster3.node(old).status().role is not Role.LEADER
    assert_safe(cluster3)


async def test_no_leader_without_a_quorum(
    cluster3: LocalCluster, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster3.wait_leader()
    cluster3.network.partition([[n] for n in cluster3.ids])
    await trio.sleep(2.0)  # several election timeouts
    for _ in range(50):
        assert cluster3.leaders() == [], "a node leads without a quorum"
        await trio.sleep(0.1)
    cluster3.network.heal()
    await cluster3.wait_leader(timeout_seconds=3.0)
    assert_safe(cluster3)


async def test_agreement_with_one_follower_down(
    cluster3: LocalCluster, autojump_clock: trio.testing.MockClock
) -> None:
    leader = await cluster3.wait_leader()
    follower = next(n for n in cluster3.ids if n != leader)
    await cluster3.crash(follower)
    for i in range(20):
        await propose_ok(cluster3, b"cmd-%d" % i)
    await cluster3.restart(follower)
    await cluster3.wait_converged()
    expected = [b"cmd-%d" % i for i in range(20)]
    for nid in cluster3.ids:
        assert commands(cluster3, nid) == expected, f"node {nid}"
    assert_safe(cluster3)


async def test_no_agreement_with_a_majority_down(autojump_clock: trio.testing.MockClock) -> None:
    async with open_local_cluster(5, seed=5) as cluster:
        leader = await cluster.wait_leader()
        downs = [n for n in cluster.ids if n != leader][:3]
        for nid in downs:
            await cluster.crash(nid)
        with trio.move_on_after(3.0) as scope:
            await cluster.node(leader).propose(b"never")
        if not scope.cancelled_caught:
            pytest.fail("a proposal committed with a majority of nodes down")
        for nid in cluster.ids:
            if cluster.is_up(nid):
                assert b"never" not in commands(cluster, nid)
        assert_safe(cluster)


async def test_partitioned_old_leader_rejoins_and_its_uncommitted_entries_are_replaced(
    cluster3: LocalCluster,
    autojump_clock: trio.testing.MockClock,
) -> None:
    old = await cluster3.wait_leader()
    await propose_ok(cluster3, b"before")
    cluster3.network.isolate(old)
    outcomes: list[str] = []

    async def doomed() -> None:
        try:
            await cluster3.node(old).propose(b"lost")
            outcomes.append("applied")
        except ProposalDropped:
            outcomes.append("dropped")
        except NotLeader:
            outcomes.append("not leader")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(doomed)
        others = [n for n in cluster3.ids if n != old]
        await cluster3.wait_leader(among=others, timeout_seconds=3.0)
        await propose_ok(cluster3, b"after")
        cluster3.network.heal()
        await cluster3.wait_converged()
    assert outcomes == ["dropped"], outcomes
    for nid in cluster3.ids:
        assert commands(cluster3, nid) == [b"before", b"after"], f"node {nid}"
    assert_safe(cluster3)


async def test_leader_backs_up_over_fifty_divergent_entries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=11) as cluster:
        old = await cluster.wait_leader()
        cluster.network.isolate(old)
        # 60 entries the isolated leader appends but can never commit.
        outcomes: dict[str, int] = {}
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(_record_outcome, cluster, old, b"stale-%d" % i, outcomes)
            await trio.sleep(0.1)
            others = [n for n in cluster.ids if n != old]
            await cluster.wait_leader(among=others, timeout_seconds=3.0)
            for i in range(5):
                await propose_ok(cluster, b"fresh-%d" % i)
            leader = cluster.leader()
            assert leader is not None
            sent_before = cluster.network.statistics()["sent"]
            cluster.network.heal()
            start = trio.current_time()
            await cluster.wait_converged()
            elapsed = trio.current_time() - start
            sent = cluster.network.statistics()["sent"] - sent_before
        assert commands(cluster, old) == [b"fresh-%d" % i for i in range(5)]
        # Dropped only where another entry committed at the stale entry's index (the new
        # leader's noop and five commands); the rest were truncated but never known lost.
        assert outcomes == {"dropped": 6, "unknown": 54}, outcomes
        # Fast backtracking: a handful of round trips, not one per divergent entry.
        assert elapsed < 1.0, f"took {elapsed:.3f} s of virtual time to repair the log"
        assert sent < 60, f"{sent} messages to repair 60 divergent entries"
        assert_safe(cluster)


async def _record_outcome(
    cluster: LocalCluster, nid: int, data: bytes, outcomes: dict[str, int]
) -> None:
    # A stale entry beyond the new leader's log end stays pending: its outcome is unknown until
    # its index commits, so the proposer gives up after a while, as a client would.
    result = "unknown"
    with trio.move_on_after(2.0):
        try:
            await cluster.node(nid).propose(data)
            result = "applied"
        except ProposalDropped:
            result = "dropped"
        except NotLeader:
            result = "refused"
    outcomes[result] = outcomes.get(result, 0) + 1


@pytest.mark.parametrize("who", ["all", "leader", "followers"])
async def test_persistence_across_restart(who: str, autojump_clock: trio.testing.MockClock) -> None:
    async with open_local_cluster(3, seed=21) as cluster:
        for i in range(10):
            await propose_ok(cluster, b"p-%d" % i)
        leader = await cluster.wait_leader()
        if who == "all":
            victims = list(cluster.ids)
        elif who == "leader":
            victims = [leader]
        else:
            victims = [n for n in cluster.ids if n != leader]
        for nid in victims:
            await cluster.crash(nid)
        for nid in victims:
            await cluster.restart(nid)
        await propose_ok(cluster, b"after-restart")
        await cluster.wait_converged()
        expected = [b"p-%d" % i for i in range(10)] + [b"after-restart"]
        for nid in cluster.ids:
            assert commands(cluster, nid) == expected, f"node {nid} after restarting {who}"
        assert_safe(cluster, who)


async def test_figure8_randomized_crash_restart_iterations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Figure 8 (§5.4.2): leaders crash with entries on a minority and others overwrite them;
    across many randomized crash/restart rounds nothing committed is ever lost or replaced."""
    iterations = 1000
    seed = 8
    rng = random.Random(seed)
    async with open_local_cluster(5, seed=seed) as cluster:
        acked: list[bytes] = []
        for i in range(iterations):
            leader = cluster.leader()
            data = b"f8-%d" % i
            if leader is not None:
                with trio.move_on_after(0.05):
                    try:
                        await cluster.node(leader).propose(data)
                        acked.append(data)
                    except (NotLeader, ProposalDropped):
                        pass
            victim = rng.choice(cluster.ids)
            if cluster.is_up(victim):
                await cluster.crash(victim, torn_write=rng.random() < 0.3)
            down = [n for n in cluster.ids if not cluster.is_up(n)]
            # Keep at most two nodes down so the cluster can make progress again.
            while len(down) > 2 or (down and rng.random() < 0.5):
                nid = down.pop(rng.randrange(len(down)))
                await cluster.restart(nid)
            await trio.sleep(rng.uniform(0.0, 0.3))
            problems = cluster.violations()
            assert not problems, f"seed={seed} iteration {i}: {problems}"
        for nid in cluster.ids:
            if not cluster.is_up(nid):
                await cluster.restart(nid)
        await propose_ok(cluster, b"final", timeout_seconds=10.0)
        await cluster.wait_converged()
        for nid in cluster.ids:
            applied = set(commands(cluster, nid))
            missing = [a for a in acked if a not in applied]
            assert not missing, f"seed={seed}: node {nid} lost acknowledged {missing[:5]}"
        assert_safe(cluster, f"seed={seed}")


async def test_churn_on_an_unreliable_network_keeps_every_invariant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seed = 31
    rng = random.Random(seed)
    faults = LinkFaults(
        delay_seconds=0.002,
        jitter_seconds=0.005,
        loss_probability=0.1,
        duplicate_probability=0.05,
        reorder_probability=0.1,
    )
    async with open_local_cluster(5, seed=seed, faults=faults) as cluster:
        acked: list[bytes] = []
        for i in range(200):
            leader = cluster.leader()
            if leader is not None:
                with trio.move_on_after(0.2):
                    try:
                        data = b"churn-%d" % i
                        await cluster.node(leader).propose(data)
                        acked.append(data)
                    except (NotLeader, ProposalDropped):
                        pass
            if rng.random() < 0.1:
                a, b = rng.sample(cluster.ids, 2)
                cluster.network.cut(a, b)
            if rng.random() < 0.1:
                cluster.network.heal()
            await trio.sleep(0.05)
            problems = cluster.violations()
            assert not problems, f"seed={seed} step {i}: {problems}"
        cluster.network.heal()
        cluster.network.set_faults(LinkFaults())
        await propose_ok(cluster, b"final", timeout_seconds=10.0)
        await cluster.wait_converged()
        assert len(acked) > 50, f"seed={seed}: only {len(acked)} commands committed under churn"
        for nid in cluster.ids:
            applied = commands(cluster, nid)
            assert all(a in applied for a in acked), f"seed={seed}: node {nid} lost a command"
            assert len(applied) == len(set(applied)), f"seed={seed}: node {nid} applied twice"
        assert_safe(cluster, f"seed={seed}")


async def test_read_barrier_on_leader_and_follower_sees_committed_writes(
    cluster3: LocalCluster,
    autojump_clock: trio.testing.MockClock,
) -> None:
    leader = await cluster3.wait_leader()
    await propose_ok(cluster3, b"w1")
    for nid in cluster3.ids:
        index = await cluster3.node(nid).read_barrier()
        assert index >= 2  # the leader's noop and w1
        assert b"w1" in commands(cluster3, nid), f"node {nid} served a stale read"
    assert leader in cluster3.ids


async def test_cut_off_leader_never_confirms_a_read(
    cluster3: LocalCluster, autojump_clock: trio.testing.MockClock
) -> None:
    old = await cluster3.wait_leader()
    cluster3.network.isolate(old)
    with trio.move_on_after(3.0):
        try:
            await cluster3.node(old).read_barrier()
            pytest.fail("a leader cut off from its quorum confirmed a read")
        except NotLeader:
            pass
    applied = cluster3.observer.applied.get(old, {}).values()
    applied_noops = [e for e in applied if e.kind is EntryKind.NOOP]
    assert applied_noops  # it did lead before it was cut off
