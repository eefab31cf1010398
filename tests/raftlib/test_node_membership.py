"""Membership changes on running Trio nodes (memory transport, virtual time), while clients
write: add, promote, remove, replace a node that lost its disk, grow and shrink through the
joint configuration, transfer leadership. The cluster's safety observer runs throughout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from raftlib import NotLeader, ProposalDropped, Role
from raftlib.core.membership import Change, ChangeOp
from raftlib.core.types import ConfState
from raftlib.errors import (
    ConfigError,
    LeadershipTransferFailed,
    ProposalQueueFull,
)
from raftlib.node import Observation
from raftlib.testing import LocalCluster, RecordingStateMachine, open_local_cluster


def commands(cluster: LocalCluster, node_id: int) -> list[bytes]:
    sm = cluster.state_machine(node_id)
    assert isinstance(sm, RecordingStateMachine)
    return sm.commands


class Writer:
    """A client that keeps writing numbered commands at whoever leads, retrying through
    elections and changes; ``acked`` holds what was acknowledged."""

    def __init__(self, cluster: LocalCluster, count: int) -> None:
        self.cluster = cluster
        self.count = count
        self.acked: list[bytes] = []

    async def run(self) -> None:
        for i in range(self.count):
            data = b"w-%d" % i
            with trio.fail_after(20):
                while True:
                    leader = await self.cluster.wait_leader()
                    try:
                        await self.cluster.node(leader).propose(data)
                        break
                    except (NotLeader, ProposalDropped, ProposalQueueFull):
                        await trio.sleep(0.02)
            self.acked.append(data)
            await trio.sleep(0.01)


async def while_writing(cluster: LocalCluster, action: Callable[[], object]) -> Writer:
    writer = Writer(cluster, 60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await trio.sleep(0.2)
        await action()  # type: ignore[misc]
    return writer


async def converge_and_check(cluster: LocalCluster, writer: Writer, members: set[int]) -> None:
    await cluster.wait_converged(timeout_seconds=20)
    for node in members:
        got = commands(cluster, node)
        # Every acknowledged write is applied exactly once, in one order, on every member.
        assert sorted(set(got)) == sorted(got), f"node {node} applied a write twice"
        assert set(writer.acked) <= set(got), f"node {node} lacks acknowledged writes"
    problems = cluster.violations()
    assert not problems, "; ".join(problems)


async def test_add_a_voter_while_clients_write(autojump_clock: trio.testing.MockClock) -> None:
    async with open_local_cluster(3, seed=11) as cluster:
        leader = await cluster.wait_leader()
        cluster.add_member(4)
        await cluster.start(4)

        async def add() -> None:
            await cluster.node(await cluster.wait_leader()).add_voter(4, "memory:4")

        writer = await while_writing(cluster, add)
        await converge_and_check(cluster, writer, {1, 2, 3, 4})
        for node in (1, 2, 3, 4):
            assert cluster.node(node).configuration().voters == (1, 2, 3, 4), node
        assert leader in cluster.ids


async def test_a_learner_is_promoted_only_once_caught_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=12) as cluster:
        leader = await cluster.wait_leader()
        for i in range(50):
            await cluster.node(leader).propose(b"old-%d" % i)
        cluster.add_member(4)
        await cluster.node(leader).add_learner(4, "memory:4")
        assert cluster.node(leader).configuration().learners == (4,)
        # Not started yet: it cannot catch up, so promotion gives up.
        with pytest.raises(Exception, match="did not catch up"):
            await cluster.node(leader).promote(4, catch_up_seconds=1.0)
        await cluster.start(4)
        await cluster.node(leader).promote(4, catch_up_seconds=10.0)
        assert cluster.node(leader).configuration() == ConfState(
            (1, 2, 3, 4), (), (), ((4, "memory:4"),)
        )
        await cluster.wait_converged()
        assert commands(cluster, 4)[:50] == [b"old-%d" % i for i in range(50)]


async def test_remove_a_follower_and_then_the_leader_while_clients_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(5, seed=13) as cluster:
        leader = await cluster.wait_leader()
        follower = next(n for n in cluster.ids if n != leader)

        async def remove_both() -> None:
            await cluster.node(leader).remove(follower)
            await cluster.node(leader).remove(leader)

        writer = await while_writing(cluster, remove_both)
        rest = set(cluster.ids) - {leader, follower}
        new = await cluster.wait_leader(among=sorted(rest))
        assert cluster.node(leader).status().role is not Role.LEADER
        assert set(cluster.node(new).configuration().voters) == rest
        await cluster.stop(leader)
        await cluster.stop(follower)
        await converge_and_check(cluster, writer, rest)


async def test_replace_a_node_that_lost_its_disk(autojump_clock: trio.testing.MockClock) -> None:
    """The README's procedure: remove the dead node, add its replacement under a NEW id (a
    wiped node may have voted in a term it forgot), as a learner, promoted once caught up."""
    async with open_local_cluster(3, seed=14) as cluster:
        leader = await cluster.wait_leader()
        dead = next(n for n in cluster.ids if n != leader)

        async def replace() -> None:
            await cluster.wipe(dead)
            live = await cluster.wait_leader()
            await cluster.node(live).remove(dead)
            cluster.add_member(9)
            await cluster.start(9)
            await cluster.node(live).add_voter(9, "memory:9")

        writer = await while_writing(cluster, replace)
        members = (set(cluster.founders) - {dead}) | {9}
        await converge_and_check(cluster, writer, members)
        assert set(cluster.node(9).configuration().voters) == members


async def test_grow_three_to_five_and_shrink_back_through_the_joint_configuration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=15) as cluster:
        await cluster.wait_leader()
        for node in (4, 5):
            cluster.add_member(node)
            await cluster.start(node)
        seen_joint: list[ConfState] = []

        async def grow_and_shrink() -> None:
            leader = cluster.node(await cluster.wait_leader())
            await leader.change_membership((
                Change(ChangeOp.ADD_VOTER, 4, "memory:4"),
                Change(ChangeOp.ADD_VOTER, 5, "memory:5"),
            ))
            assert leader.configuration().voters == (1, 2, 3, 4, 5)
            await trio.sleep(0.5)
            leader = cluster.node(await cluster.wait_leader())
            keep = leader.node_id
            drop = [n for n in (1, 2, 3, 4, 5) if n != keep][:2]
            await leader.change_membership(tuple(Change(ChangeOp.REMOVE, n) for n in drop))
            seen_joint.append(leader.configuration())

        writer = await while_writing(cluster, grow_and_shrink)
        final = seen_joint[0]
        assert len(final.voters) == 3 and not final.voters_outgoing
        await converge_and_check(cluster, writer, set(final.voters))


async def test_one_change_at_a_time_waits_for_the_previous(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=16) as cluster:
        leader = cluster.node(await cluster.wait_leader())
        for node in (4, 5):
            cluster.add_member(node)
            await cluster.start(node)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader.add_learner, 4, "memory:4")
            nursery.start_soon(leader.add_learner, 5, "memory:5")
        assert leader.configuration().learners == (4, 5)


async def test_a_change_that_makes_no_sense_is_refused_with_its_rule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=17) as cluster:
        leader = cluster.node(await cluster.wait_leader())
        with pytest.raises(ValueError, match="not a member"):
            await leader.remove(42)
        follower = next(n for n in cluster.ids if n != leader.node_id)
        with pytest.raises(NotLeader):
            await cluster.node(follower).add_learner(7, "memory:7")


async def test_transfer_leadership_returns_once_the_target_leads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=18) as cluster:
        leader = await cluster.wait_leader()
        target = next(n for n in cluster.ids if n != leader)
        assert await cluster.node(leader).transfer_leadership(target) == target
        assert cluster.leader() == target
        # Default target: the most caught-up other voter.
        chosen = await cluster.node(target).transfer_leadership()
        assert chosen != target and cluster.leader() == chosen


async def test_transfer_to_an_unreachable_node_fails_and_the_leader_leads_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=19) as cluster:
        leader = await cluster.wait_leader()
        target = next(n for n in cluster.ids if n != leader)
        cluster.network.cut(leader, target)
        with pytest.raises(LeadershipTransferFailed, match=f"node {target}"):
            await cluster.node(leader).transfer_leadership(target, timeout_seconds=1.0)
        with pytest.raises(ConfigError, match="not a voter"):
            await cluster.node(leader).transfer_leadership(77)


async def test_observers_see_role_and_configuration_changes_with_their_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Observation] = []
    async with open_local_cluster(3, seed=20) as cluster:
        cluster.on_observation = seen.append
        leader = await cluster.wait_leader()
        target = next(n for n in cluster.ids if n != leader)
        await cluster.node(leader).transfer_leadership(target)
        cluster.add_member(4)
        await cluster.start(4)
        await cluster.node(target).add_learner(4, "memory:4")
        await cluster.wait_converged()
    roles = [o for o in seen if o.kind == "role"]
    assert any(o.role is Role.LEADER and "won the election" in o.reason for o in roles)
    assert any(o.role is Role.CANDIDATE and "leadership transfer" in o.reason for o in roles)
    confs = [o for o in seen if o.kind == "configuration"]
    assert {o.node_id for o in confs} >= {1, 2, 3, 4}
    assert all(o.configuration is not None and o.configuration.learners == (4,) for o in confs)


async def test_status_reports_followers_last_contact_and_the_configuration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=21) as cluster:
        leader = await cluster.wait_leader()
        await trio.sleep(0.5)
        status = cluster.node(leader).status()
        assert status.configuration == ConfState((1, 2, 3))
        for follower in status.followers.values():
            assert follower.last_contact_seconds is not None
            assert follower.last_contact_seconds < 0.2
            assert follower.state == "replicate"


async def test_a_joining_node_never_leads_a_cluster_of_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=22) as cluster:
        await cluster.wait_leader()
        cluster.add_member(4)
        await cluster.start(4)
        cluster.network.isolate(4)
        await trio.sleep(5.0)
        status = cluster.node(4).status()
        assert status.role is Role.FOLLOWER and status.term == 0
        assert status.configuration == ConfState(())
