"""The pipelined driver: appends leave before the leader's sync, nothing else before its own."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from raftlib.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    Message,
    NodeId,
    RequestVoteResponse,
    Role,
)
from raftlib.driver import DEFERRED_COMMIT_TICKS_MAX
from raftlib.errors import StorageError
from raftlib.node import Node, NodeConfig, _Propose, open_node
from raftlib.storage.memory import MemoryStorage
from raftlib.testing import RecordingStateMachine, open_local_cluster
from raftlib.transport.memory import MemoryEndpoint, MemoryNetwork

# A global order of events across the Trio thread and the nodes' sync threads.
_SEQUENCE = itertools.count()
_LOCK = threading.Lock()


class SlowDisk(MemoryStorage):
    """MemoryStorage that claims to block and takes ``sync_seconds`` per sync, like a disk;
    it records what was durable after each sync, in the global event order."""

    blocking = True

    def __init__(self, node_id: NodeId, events: list[tuple[Any, ...]], sync_seconds: float):
        super().__init__()
        self.node_id = node_id
        self.events = events
        self.sync_seconds = sync_seconds

    def sync(self) -> None:
        time.sleep(self.sync_seconds)
        super().sync()
        hard_state, log = self.durable_state()
        with _LOCK:
            self.events.append((next(_SEQUENCE), "synced", self.node_id, len(log), hard_state))


class _LoggingEndpoint:
    def __init__(self, inner: MemoryEndpoint, node_id: NodeId, events: list[tuple[Any, ...]]):
        self.inner = inner
        self.node_id = node_id
        self.events = events

    def send_nowait(self, messages: Sequence[Message]) -> None:
        with _LOCK:
            for message in messages:
                self.events.append((next(_SEQUENCE), "sent", self.node_id, message))
        self.inner.send_nowait(messages)

    async def receive(self) -> list[Message]:
        return await self.inner.receive()

    def statistics(self) -> dict[str, int]:
        return self.inner.statistics()


class LoggingNetwork:
    """A MemoryNetwork whose endpoints record every message handed to them."""

    def __init__(self, events: list[tuple[Any, ...]]) -> None:
        self.inner = MemoryNetwork(rng_seed=5)
        self.events = events

    @asynccontextmanager
    async def open(self, node_id: NodeId) -> AsyncIterator[_LoggingEndpoint]:
        async with self.inner.open(node_id) as endpoint:
            yield _LoggingEndpoint(endpoint, node_id, self.events)


def _check_order(events: list[tuple[Any, ...]]) -> int:
    """Fail on any acknowledgement or vote sent before the state it promises was synced;
    return how many appends left before their sender had synced their entries."""
    durable_last: dict[NodeId, int] = {}
    durable_hard: dict[NodeId, HardState] = {}
    early = 0
    for event in sorted(events, key=lambda e: e[0]):
        if event[1] == "synced":
            _, _, node, last, hard_state = event
            durable_last[node] = last
            durable_hard[node] = hard_state
            continue
        _, _, node, msg = event
        if isinstance(msg, AppendEntriesResponse) and msg.success:
            assert durable_last.get(node, 0) >= msg.match_index, (
                f"node {node} acknowledged index {msg.match_index} with only "
                f"{durable_last.get(node, 0)} durable"
            )
        elif isinstance(msg, RequestVoteResponse) and msg.granted and not msg.pre_vote:
            hard = durable_hard.get(node, HardState())
            assert (hard.term, hard.vote) == (msg.term, msg.dst), (
                f"node {node} granted its vote in term {msg.term} to {msg.dst} with "
                f"{hard} durable"
            )
        elif (
            isinstance(msg, AppendEntries)
            and msg.entries
            and durable_last.get(node, 0) < msg.entries[-1].index
        ):
            early += 1
    return early


async def _wait_leader(nodes: dict[NodeId, Node], timeout_seconds: float) -> Node:
    with trio.fail_after(timeout_seconds):
        while True:
            for node in nodes.values():
                if node.status().role is Role.LEADER:
                    return node
            await trio.sleep(0.01)


@pytest.mark.parametrize("storage_thread", [True, False])
async def test_acks_and_votes_wait_for_their_sync_while_appends_do_not(
    storage_thread: bool,
) -> None:
    events: list[tuple[Any, ...]] = []
    network = LoggingNetwork(events)
    ids = (1, 2, 3)
    nodes: dict[NodeId, Node] = {}
    machines = {nid: RecordingStateMachine() for nid in ids}

    async def run(nid: NodeId, task_status: trio.TaskStatus[None]) -> None:
        config = NodeConfig(
            node_id=nid,
            peers={n: f"memory:{n}" for n in ids},
            tick_seconds=0.01,
            seed=nid,
            storage_thread=storage_thread,
        )
        storage = SlowDisk(nid, events, sync_seconds=0.002)
        async with open_node(
            config, storage=storage, transport=network, state_machine=machines[nid]
        ) as node:
            nodes[nid] = node
            task_status.started()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for nid in ids:
            await nursery.start(run, nid)
        leader = await _wait_leader(nodes, timeout_seconds=5.0)

        async def proposer(worker: int) -> None:
            for i in range(15):
                await leader.propose(b"%d-%d" % (worker, i))

        with trio.fail_after(10):
            async with trio.open_nursery() as proposers:
                for worker in range(8):
                    proposers.start_soon(proposer, worker)
            last = leader.status().last_index
            for node in nodes.values():
                await node.wait_applied(last)
        nursery.cancel_scope.cancel()
    assert all(len(m.commands) == 120 for m in machines.values())
    assert len({tuple(m.commands) for m in machines.values()}) == 1
    early = _check_order(events)
    assert early > 0, "the leader never sent an append before its own sync finished"


async def test_a_commit_index_change_alone_waits_for_no_sync(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=3) as cluster:
        leader = await cluster.wait_leader()
        for i in range(3):
            await cluster.node(leader).propose(b"warm-%d" % i)
        index = cluster.node(leader).status().last_index + 1
        await cluster.node(leader).propose(b"x")
        # Applied and answered, yet the commit index is not durable anywhere yet: it did not
        # cost a sync of its own on the commit path.
        assert cluster.node(leader).status().commit_index >= index
        assert cluster.storage(leader).durable_state()[0].commit < index
        # Idle, it becomes durable on every node within a few ticks.
        tick_seconds = cluster.node(leader).config.tick_seconds
        await trio.sleep(tick_seconds * (DEFERRED_COMMIT_TICKS_MAX + 2))
        for nid in cluster.ids:
            assert cluster.storage(nid).durable_state()[0].commit >= index, f"node {nid}"


async def test_a_clean_exit_leaves_the_latest_commit_index_durable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    config = NodeConfig(node_id=1, peers={1: "memory:1"}, seed=1)
    async with open_node(
        config,
        storage=storage,
        transport=MemoryNetwork(rng_seed=1),
        state_machine=RecordingStateMachine(),
    ) as node:
        while node.status().role is not Role.LEADER:
            await trio.sleep(config.tick_seconds)
        await node.propose(b"x")
        index = node.status().commit_index
        assert storage.durable_state()[0].commit < index  # deferred, no tick since
    assert storage.durable_state()[0].commit == index


async def test_an_empty_proposal_batch_returns_nothing_and_the_node_keeps_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=4) as cluster:
        leader = cluster.node(await cluster.wait_leader())
        assert await leader.propose_batch([]) == []
        assert await leader.propose(b"after") >= 1


async def test_nowait_proposals_made_before_the_loop_runs_share_one_input_in_call_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=4) as cluster:
        leader_id = await cluster.wait_leader()
        leader = cluster.node(leader_id)
        queued: list[object] = []
        send_nowait = leader._in_tx.send_nowait

        def counting_send_nowait(item: Any) -> None:
            if isinstance(item, _Propose):
                queued.append(item)
            send_nowait(item)

        leader._in_tx.send_nowait = counting_send_nowait  # type: ignore[method-assign,assignment]
        all_done = trio.Event()
        left = [3]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                all_done.set()

        groups = [
            leader.propose_batch_nowait([b"a%d" % i, b"b%d" % i], timeout_seconds=5.0,
                                        on_done=one_done)
            for i in range(3)
        ]
        # One queued input for the three calls (an event loop's round of connections).
        assert len(queued) == 1
        await all_done.wait()
        positions = [o.unwrap() for group in groups for o in group.outcomes()]
        assert positions == sorted(positions) and len(set(positions)) == 6
        machine = cluster.state_machine(leader_id)
        assert isinstance(machine, RecordingStateMachine)
        assert machine.commands[-6:] == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2"]
        # Once the loop took that input, the next call queues its own, and it commits too.
        after = trio.Event()
        group = leader.propose_batch_nowait([b"c"], timeout_seconds=5.0, on_done=after.set)
        assert len(queued) == 2
        await after.wait()
        assert machine.commands[-1] == b"c" and group.outcomes()[0].unwrap() == positions[-1] + 1


class FailingDisk(MemoryStorage):
    blocking = True


async def test_a_sync_failure_in_the_sync_thread_stops_the_node() -> None:
    storage = FailingDisk()
    config = NodeConfig(node_id=1, peers={1: "memory:1"}, tick_seconds=0.005, seed=1)
    with pytest.raises(BaseExceptionGroup) as caught, trio.fail_after(5):
        async with open_node(
            config,
            storage=storage,
            transport=MemoryNetwork(rng_seed=1),
            state_machine=RecordingStateMachine(),
        ) as node:
            while node.status().role is not Role.LEADER:
                await trio.sleep(0.005)
            storage.fail_next_sync()
            with pytest.raises(Exception):  # noqa: B017 - Stopped or Cancelled, either way down
                await node.propose(b"x")
            await trio.sleep_forever()
    assert caught.group_contains(StorageError)
