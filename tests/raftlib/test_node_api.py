"""The node's public API: validated config, NotLeader hints, status snapshots, backpressure,
state machine errors, and clean shutdown."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from raftlib import (
    ConfigError,
    NodeConfig,
    NotLeader,
    ProposalQueueFull,
    Role,
    Stopped,
    open_node,
)
from raftlib.storage.memory import MemoryStorage
from raftlib.testing import open_local_cluster
from raftlib.transport.memory import MemoryNetwork


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"node_id": 0}, "node_id"),
        ({"peers": {}}, "peers"),
        ({"peers": {2: "a:1"}}, "peers must include node_id"),
        ({"peers": {1: 7}}, "peers[1]"),
        ({"tick_seconds": 0}, "tick_seconds"),
        ({"tick_seconds": float("nan")}, "tick_seconds"),
        ({"core": {"election_timeout_ticks_min": 0}}, "election_timeout_ticks_min"),
        ({"core": {"election_timeout_ticks_min": 20, "election_timeout_ticks_max": 10}},
         "election"),
        ({"input_queue_items_max": 0}, "input_queue_items_max"),
        ({"read_timeout_seconds": -1.0}, "read_timeout_seconds"),
        ({"storage_thread": "yes"}, "storage_thread"),
        ({"snapshot": {"entries": 5}}, "snapshot"),
        ({"core": {"uncommitted_entries_max": -1}}, "uncommitted_entries_max"),
        ({"core": {"pre_vote": False, "no_such_setting": 1}}, "no_such_setting"),
        ({"core": "fast"}, "core"),
    ],
)
def test_bad_config_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"node_id": 1, "peers": {1: "127.0.0.1:7001"}}
    kwargs = dict(kwargs)  # the parameter's dict is shared by every run of this case
    core = kwargs.pop("core", None)
    base.update(kwargs)
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        config = NodeConfig(**base)  # type: ignore[arg-type]
        if isinstance(core, dict):
            config.with_core(**core)
        elif core is not None:
            NodeConfig(**base, core=core)  # type: ignore[arg-type]


async def test_follower_refuses_a_proposal_naming_the_leader_and_its_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=2) as cluster:
        leader = await cluster.wait_leader()
        await cluster.wait_converged()
        follower = next(n for n in cluster.ids if n != leader)
        # Wait until the follower has heard from the leader of this term.
        with trio.fail_after(2):
            while cluster.node(follower).status().leader != leader:
                await trio.sleep(0.01)
        with pytest.raises(NotLeader) as info:
            await cluster.node(follower).propose(b"x")
        assert info.value.leader_id == leader
        assert info.value.leader_address == f"memory:{leader}"


async def test_status_is_an_immutable_snapshot_with_follower_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=4) as cluster:
        leader = await cluster.wait_leader()
        node = cluster.node(leader)
        await node.propose(b"a")
        await cluster.wait_converged()
        status = node.status()
        assert status.role is Role.LEADER and status.leader == leader
        assert status.applied_index == status.commit_index == status.last_index == 2
        assert set(status.followers) == set(cluster.ids) - {leader}
        assert all(f.match_index == 2 for f in status.followers.values())
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            status.term = 99  # type: ignore[misc]
        await node.propose(b"b")
        assert status.commit_index == 2  # the snapshot did not move


async def test_proposals_beyond_the_uncommitted_limit_get_backpressure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=6, core={"uncommitted_entries_max": 8}) as cluster:
        leader = await cluster.wait_leader()
        for nid in cluster.ids:
            if nid != leader:
                await cluster.crash(nid)
        refused = 0
        async with trio.open_nursery() as nursery:

            async def one(i: int) -> None:
                nonlocal refused
                try:
                    with trio.move_on_after(0.5):
                        await cluster.node(leader).propose(b"%d" % i)
                except ProposalQueueFull:
                    refused += 1
                except NotLeader:
                    pass

            for i in range(20):
                nursery.start_soon(one, i)
        # The noop of the term is uncommitted too: at most 7 more fit.
        assert refused >= 12, f"only {refused} of 20 proposals were refused"


class Exploding:
    def apply(self, command: bytes) -> object:
        if command == b"boom":
            raise ValueError("boom is not a number")
        return len(command)


async def test_a_state_machine_error_goes_to_its_proposer_and_the_node_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=9, state_machine_factory=Exploding) as cluster:
        leader = await cluster.wait_leader()
        with pytest.raises(ValueError, match="boom is not a number"):
            await cluster.node(leader).propose(b"boom")
        assert await cluster.node(leader).propose(b"four") == 4


async def test_leaving_the_block_stops_every_task_and_fails_waiting_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1)
    config = NodeConfig(node_id=1, peers={1: "m:1", 2: "m:2", 3: "m:3"})
    outcomes: list[str] = []

    async def waiting_read(node: object) -> None:
        try:
            await node.read_barrier()  # type: ignore[attr-defined]
            outcomes.append("served")
        except (Stopped, NotLeader) as exc:
            outcomes.append(type(exc).__name__)

    async with trio.open_nursery() as outer:
        async with open_node(
            config, storage=MemoryStorage(), transport=network, state_machine=Exploding()
        ) as node:
            outer.start_soon(waiting_read, node)
            await trio.sleep(0.01)
        # No peers ever answer, so the read could not have been served.
        with pytest.raises(Stopped):
            await node.propose(b"x")
    assert outcomes in (["Stopped"], ["NotLeader"])
    # Nothing the node or its transport started is still running anywhere in this run.
    root = trio.lowlevel.current_root_task()
    assert root is not None
    names: list[str] = []
    stack = [root]
    while stack:
        task = stack.pop()
        names.append(task.name)
        stack.extend(t for n in task.child_nurseries for t in n.child_tasks)
    assert not [n for n in names if "raftlib" in n], names


async def test_over_tcp_peer_batches_reach_the_loop_directly_and_date_each_peers_contact() -> None:
    from raftlib.node import Node
    from raftlib.supervisor import free_ports
    from raftlib.testing import RecordingStateMachine
    from raftlib.transport.tcp import TcpEndpoint, TcpTransport

    ids = (1, 2, 3)
    ports = dict(zip(ids, free_ports(3), strict=True))
    transport = TcpTransport({n: ("127.0.0.1", p) for n, p in ports.items()},
                             backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
    peers = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    nodes: dict[int, Node] = {}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def run(node_id: int, started: trio.Event) -> None:
                config = NodeConfig(node_id=node_id, peers=peers, tick_seconds=0.02,
                                    seed=node_id)
                async with open_node(config, storage=MemoryStorage(), transport=transport,
                                     state_machine=RecordingStateMachine()) as node:
                    nodes[node_id] = node
                    started.set()
                    await trio.sleep_forever()

            for node_id in ids:
                started = trio.Event()
                nursery.start_soon(run, node_id, started)
                await started.wait()
            while not any(n.status().role is Role.LEADER for n in nodes.values()):
                await trio.sleep(0.01)
            leader = next(n for n in nodes.values() if n.status().role is Role.LEADER)
            await leader.propose(b"x")
            # The TCP endpoints hand batches to the node's queue themselves (no receiver task).
            endpoints = [n._endpoint for n in nodes.values()]
            assert all(isinstance(e, TcpEndpoint) and e._sink is not None for e in endpoints)
            for peer, follower in leader.status().followers.items():
                assert follower.last_contact_seconds is not None, peer
                assert follower.last_contact_seconds < 1.0, peer
            nursery.cancel_scope.cancel()
