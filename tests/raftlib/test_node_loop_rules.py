"""The node's own rules about its raft loop: only that task touches the core, so an operator's
call (campaign, leadership transfer) is run by the loop, which it wakes, and whose pump sends
what the call produced; and nothing around the state machine swallows a ``BaseException``
(cancellation, KeyboardInterrupt): only ``Exception`` goes to the proposer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from raftlib.core.types import Role
from raftlib.node import NodeConfig, NodeHooks, open_node
from raftlib.storage.memory import MemoryStorage
from raftlib.testing import LocalCluster, open_local_cluster
from raftlib.transport.memory import MemoryNetwork

# Ticks an hour apart: within a test's few virtual seconds no tick can wake a raft loop, so
# whatever happens was woken by the call itself.
TICK_SECONDS = 3600.0


def _record_callers(cluster: LocalCluster, node_id: int, method: str) -> list[str]:
    """Wrap the node's ``core.<method>`` to note the name of the task that calls it."""
    core = cluster.node(node_id)._core
    original: Callable[..., Any] = getattr(core, method)
    callers: list[str] = []

    def recording(*args: Any) -> Any:
        callers.append(trio.lowlevel.current_task().name)
        return original(*args)

    setattr(core, method, recording)
    return callers


async def test_campaign_runs_on_the_raft_loop_and_wakes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1, tick_seconds=TICK_SECONDS) as cluster:
        callers = _record_callers(cluster, 1, "campaign")
        await cluster.node(1).campaign()
        assert len(callers) == 1 and callers[0].endswith("._raft_loop"), callers
        # Elected within a virtual second, with no tick anywhere meanwhile.
        assert await cluster.wait_leader(timeout_seconds=1.0) == 1


async def test_transfer_leadership_runs_on_the_raft_loop_and_wakes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=2, tick_seconds=TICK_SECONDS) as cluster:
        await cluster.node(1).campaign()
        assert await cluster.wait_leader(timeout_seconds=1.0) == 1
        await cluster.node(1).propose(b"caught up")  # both followers hold the whole log
        callers = _record_callers(cluster, 1, "transfer_leadership")
        await cluster.node(1).transfer_leadership(2)
        assert len(callers) == 1 and callers[0].endswith("._raft_loop"), callers
        assert await cluster.wait_leader(timeout_seconds=1.0, among=[2]) == 2


class Abort(BaseException):
    """Not an ``Exception``: what cancellation and KeyboardInterrupt are to ``except``."""


class AbortingMachine:
    def apply(self, command: bytes) -> object:
        if command == b"abort":
            raise Abort()
        return len(command)


async def test_a_base_exception_from_apply_stops_the_node_instead_of_reaching_the_proposer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leader = trio.Event()

    def on_role(_node: int, role: Role, _term: int) -> None:
        if role is Role.LEADER:
            leader.set()

    proposer_got: list[BaseException] = []
    config = NodeConfig(node_id=1, peers={1: "m:1"}, tick_seconds=TICK_SECONDS)
    with pytest.RaisesGroup(Abort, flatten_subgroups=True):
        async with open_node(config, storage=MemoryStorage(), transport=MemoryNetwork(1),
                             state_machine=AbortingMachine(),
                             hooks=NodeHooks(on_role=on_role)) as node:
            await node.campaign()
            await leader.wait()
            assert await node.propose(b"four") == 4  # an ordinary command applies
            try:
                await node.propose(b"abort")
            except Abort as exc:  # the raft loop caught it and handed it over: wrong
                proposer_got.append(exc)
    assert not proposer_got


# Lease reads: 10..20 ticks of election timeout, 3 of drift, so a 7-tick lease.
LEASE_CORE = {"election_timeout_ticks_min": 10, "election_timeout_ticks_max": 20,
              "lease_drift_ticks": 3, "check_quorum": True, "lease_reads": True}
LEASE_TICK_SECONDS = 0.01
LEASE_TICKS = 7


async def test_a_stalled_leader_counts_the_ticks_it_missed_before_it_answers_from_its_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A node whose process stalls (SIGSTOP, a blocked loop) must count the time it lost before
    it answers a read from its lease: the lease is counted in ticks, and a leader that took a
    long stall for one tick would answer reads after its lease ran out, while a successor may
    already take writes. The stall here is longer than the lease but shorter than any
    election timeout, so the cluster stays as it was and only the lease ran out."""
    async with open_local_cluster(3, seed=3, tick_seconds=LEASE_TICK_SECONDS,
                                  core=LEASE_CORE) as cluster:
        leader_id = await cluster.wait_leader(timeout_seconds=5.0)
        leader = cluster.node(leader_id)
        await leader.propose(b"an entry of this term")
        # A few heartbeat rounds (virtual time): a quorum's acknowledgement grants the lease.
        await trio.sleep(LEASE_TICK_SECONDS * 3)
        core = leader._core
        served = core.lease_reads_served
        await leader.read_barrier()
        assert core.lease_reads_served == served + 1, "a fresh lease answers at once"
        # Every task stalls for LEASE_TICKS + 1 ticks: nothing runs while the clock moves.
        autojump_clock.jump(LEASE_TICK_SECONDS * (LEASE_TICKS + 1))
        await leader.read_barrier()
        assert core.lease_reads_served == served + 1, (
            "the read after the stall was answered from a lease that had run out")
        assert cluster.leader() == leader_id
