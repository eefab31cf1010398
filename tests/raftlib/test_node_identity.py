"""A member whose disk was wiped, restarted under its old id, cannot help elect a leader that
lacks a committed write: its peers refuse its new data directory (``raftlib.identity``).

Nodes run in this process on real TCP (``open_node``, ``WalStorage``, ``TcpTransport``), as
``raftlib serve`` wires them."""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import trio

from raftlib.core.types import Role
from raftlib.metrics import NodeMetrics, samples
from raftlib.node import Node, NodeConfig, open_node
from raftlib.storage.wal import WalStorage
from raftlib.supervisor import free_ports
from raftlib.testing import RecordingStateMachine
from raftlib.transport.tcp import TcpEndpoint, TcpTransport

IDS = (1, 2, 3)
TICK_SECONDS = 0.02
# Election timeouts the two nodes are watched for after the first refusal: with the wiped
# node's vote, the first election would have elected a leader.
ELECTIONS_LOST = 3
RUN_SECONDS_MAX = 60.0
ELECTION_SECONDS_MAX = (
    NodeConfig(node_id=1, peers={1: "127.0.0.1:1"}).core.election_timeout_ticks_max * TICK_SECONDS)


@attrs.define
class Member:
    scope: trio.CancelScope
    node: Node
    machine: RecordingStateMachine


async def test_a_wiped_member_under_its_old_id_cannot_elect_a_leader_that_lost_a_write(
    tmp_path: Path,
) -> None:
    ports = dict(zip(IDS, free_ports(len(IDS)), strict=True))
    transport = TcpTransport({n: ("127.0.0.1", p) for n, p in ports.items()},
                             backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
    peers = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    members: dict[int, Member] = {}

    with trio.fail_after(RUN_SECONDS_MAX):
        async with trio.open_nursery() as nursery:

            async def run(node_id: int, *, task_status: trio.TaskStatus[None]) -> None:
                config = NodeConfig(node_id=node_id, peers=peers, tick_seconds=TICK_SECONDS,
                                    seed=node_id)
                machine = RecordingStateMachine()
                with trio.CancelScope() as scope:
                    async with open_node(config, storage=WalStorage(tmp_path / f"n{node_id}"),
                                         transport=transport, state_machine=machine) as node:
                        members[node_id] = Member(scope, node, machine)
                        task_status.started()
                        await trio.sleep_forever()

            async def start(node_id: int) -> None:
                await nursery.start(run, node_id)

            def stop(node_id: int) -> None:
                members.pop(node_id).scope.cancel()  # a crash: what was fsynced stays

            async def leader_among(*ids: int) -> Node:
                while True:
                    for n in ids:
                        if n in members and members[n].node.status().role is Role.LEADER:
                            return members[n].node
                    await trio.sleep(TICK_SECONDS)

            for n in IDS:
                await start(n)
            leader = await leader_among(*IDS)
            await leader.propose(b"everyone-met")  # every pair exchanged hellos: ids recorded
            a = leader.node_id
            b, c = (n for n in IDS if n != a)
            for n in IDS:
                await members[n].node.wait_applied(leader.status().commit_index)
            stop(c)
            await leader.propose(b"x")  # committed by a and b alone
            stop(a)
            stop(b)
            shutil.rmtree(tmp_path / f"n{b}")  # b's disk is lost: its vote and its copy of x
            await trio.sleep(0)
            await start(b)
            await start(c)
            endpoint_c = members[c].node._endpoint
            assert isinstance(endpoint_c, TcpEndpoint)
            # c refuses b: c alone is no majority, so no leader, however many elections
            # (PreVote: they leave the term as it is, so they are waited for by the clock).
            def met(stats: dict[str, int]) -> bool:  # a hello with b was answered
                return stats["refused_identity"] + stats["accepted"] + stats["connects"] > 0

            while not met(endpoint_c.statistics()):
                await trio.sleep(TICK_SECONDS)
            elections_over = trio.current_time() + ELECTIONS_LOST * ELECTION_SECONDS_MAX
            while trio.current_time() < elections_over:
                assert all(members[n].node.status().role is not Role.LEADER for n in (b, c)), (
                    "a leader without the committed write: the wiped node's vote counted")
                await trio.sleep(TICK_SECONDS)
            assert endpoint_c.statistics()["refused_identity"] >= 1
            reported = {m.name: m.value for m in samples(members[c].node, NodeMetrics())}
            assert reported["raftlib_peers_refused_identity"] >= 1  # what an alert watches
            await start(a)  # the node that holds x is back: a and c elect a leader with it
            leader = await leader_among(a, c)
            await leader.barrier()
            assert b"x" in members[leader.node_id].machine.commands
            nursery.cancel_scope.cancel()
