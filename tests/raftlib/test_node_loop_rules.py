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
