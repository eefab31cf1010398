"""An in-process cluster of real ``Node`` drivers for tests, examples and simulation.

Every node runs the production driver on a ``MemoryNetwork`` (seeded faults and partitions)
and a ``MemoryStorage`` (crash drops what was not synced), inside one Trio run. Pair it with
``trio.testing.MockClock(autojump_threshold=0)`` and a 10-second scenario takes milliseconds.

    async with open_local_cluster(3, seed=1) as cluster:
        leader = await cluster.wait_leader()
        await cluster.node(leader).propose(b"x")
        await cluster.crash(leader)
        ...
        assert not cluster.violations()
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from raftlib.core.types import Entry, NodeId, Role
from raftlib.errors import Stopped
from raftlib.invariants import Observer, log_matching
from raftlib.node import Node, NodeConfig, NodeHooks, Observation, open_node
from raftlib.statemachine import StateMachine
from raftlib.storage.memory import MemoryStorage
from raftlib.transport.memory import LinkFaults, MemoryNetwork


class RecordingStateMachine:
    """Records every command it applies, in order; ``apply`` returns the command's position."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.commands.append(command)
        return len(self.commands)


@attrs.define
class _Member:
    storage: MemoryStorage
    state_machine: StateMachine
    scope: trio.CancelScope | None = None
    node: Node | None = None
    done: trio.Event = attrs.field(factory=trio.Event)


class LocalCluster:
    """Start, crash, restart and partition nodes; watch the safety invariants throughout."""

    def __init__(
        self,
        nursery: trio.Nursery,
        size: int,
        *,
        seed: int = 0,
        faults: LinkFaults | None = None,
        state_machine_factory: Callable[[], StateMachine] = RecordingStateMachine,
        core: Mapping[str, Any] | None = None,
        **config: Any,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={size}")
        self._nursery = nursery
        self._seed = seed
        self._rng = random.Random(seed)
        self.ids: tuple[NodeId, ...] = tuple(range(1, size + 1))
        # The founding voters; nodes added later (``add_member``) join the running cluster.
        self.founders = self.ids
        self.network = MemoryNetwork(rng_seed=seed)
        if faults is not None:
            self.network.set_faults(faults)
        self._config = config
        # Core settings the nodes run with (CoreConfig field name -> value).
        self._core = dict(core or {})
        self._factory = state_machine_factory
        self.observer = Observer()
        # Sees every node's role and configuration changes (NodeHooks.on_observation).
        self.on_observation: Callable[[Observation], None] | None = None
        self._members = {
            nid: _Member(storage=MemoryStorage(), state_machine=state_machine_factory())
            for nid in self.ids
        }

    # --- membership ---------------------------------------------------------------------

    def config(self, node_id: NodeId) -> NodeConfig:
        return NodeConfig(
            node_id=node_id,
            peers={nid: f"memory:{nid}" for nid in self.ids},
            seed=self._seed * 1000 + node_id,
            join=node_id not in self.founders,
            **self._config,
        ).with_core(**self._core)

    def add_member(self, node_id: NodeId) -> None:
        """A new node with an empty disk that will join the running cluster (start it, then
        have the leader add it)."""
        if node_id in self._members:
            raise ValueError(f"node {node_id} exists")
        self.ids = (*self.ids, node_id)
        self._members[node_id] = _Member(storage=MemoryStorage(), state_machine=self._factory())

    async def wipe(self, node_id: NodeId) -> None:
        """The node's disk is lost: stop it and give it empty storage and state."""
        await self.stop(node_id)
        member = self._members[node_id]
        member.storage = MemoryStorage()
        member.state_machine = self._factory()

    def node(self, node_id: NodeId) -> Node:
        member = self._members[node_id]
        if member.node is None:
            raise Stopped(f"node {node_id} is down")
        return member.node

    def is_up(self, node_id: NodeId) -> bool:
        return self._members[node_id].node is not None

    def state_machine(self, node_id: NodeId) -> StateMachine:
        return self._members[node_id].state_machine

    def storage(self, node_id: NodeId) -> MemoryStorage:
        return self._members[node_id].storage

    async def start(self, node_id: NodeId) -> None:
        member = self._members[node_id]
        if member.scope is not None:
            raise RuntimeError(f"node {node_id} is already running")
        member.done = trio.Event()
        started = trio.Event()
        self._nursery.start_soon(self._run, node_id, member, started)
        await started.wait()

    async def _run(self, node_id: NodeId, member: _Member, started: trio.Event) -> None:
        hooks = NodeHooks(on_apply=self._on_apply, on_role=self._on_role,
                          on_restore=self.observer.saw_snapshot,
                          on_observation=self._on_observation)
        try:
            with trio.CancelScope() as scope:
                member.scope = scope
                async with open_node(
                    self.config(node_id),
                    storage=member.storage,
                    transport=self.network,
                    state_machine=member.state_machine,
                    hooks=hooks,
                ) as node:
                    member.node = node
                    started.set()
                    await trio.sleep_forever()
        finally:
            member.node = None
            member.scope = None
            started.set()
            member.done.set()

    async def stop(self, node_id: NodeId) -> None:
        """Stop cleanly: everything synced stays; nothing unsynced is lost either (the node
        only acknowledges what it synced)."""
        member = self._members[node_id]
        if member.scope is not None:
            member.scope.cancel()
            await member.done.wait()

    async def crash(self, node_id: NodeId, *, torn_write: bool = False) -> None:
        """Power loss: stop the node and drop whatever it had not synced."""
        await self.stop(node_id)
        self._members[node_id].storage.crash(
            lose_unsynced=True, torn_write=torn_write, rng=self._rng
        )

    async def restart(self, node_id: NodeId, *, fresh_state_machine: bool = True) -> None:
        """Start again from storage. The state machine is rebuilt from the latest snapshot and
        the log after it, so by default it starts empty."""
        member = self._members[node_id]
        if fresh_state_machine:
            member.state_machine = self._factory()
        self.observer.saw_restart(node_id)
        await self.start(node_id)

    async def start_all(self) -> None:
        for nid in self.ids:
            await self.start(nid)

    # --- observation ----------------------------------------------------------------------

    def _on_apply(self, node_id: NodeId, entries: Sequence[Entry]) -> None:
        self.observer.saw_applied(node_id, entries)
        self.observer.saw_committed(entries)

    def _on_observation(self, observation: Observation) -> None:
        if self.on_observation is not None:
            self.on_observation(observation)

    def _on_role(self, node_id: NodeId, role: Role, term: int) -> None:
        if role is Role.LEADER:
            self.observer.saw_leader(node_id, term)

    def leaders(self) -> list[NodeId]:
        """Running nodes that believe they lead (several only across different terms)."""
        return [
            nid
            for nid in self.ids
            if self.is_up(nid) and self.node(nid).status().role is Role.LEADER
        ]

    def leader(self) -> NodeId | None:
        """The leader of the highest term among running nodes, if any."""
        best: tuple[int, NodeId] | None = None
        for nid in self.leaders():
            term = self.node(nid).status().term
            if best is None or term > best[0]:
                best = (term, nid)
        return None if best is None else best[1]

    async def wait_leader(
        self, *, timeout_seconds: float = 10.0, among: Sequence[NodeId] | None = None
    ) -> NodeId:
        """Wait until a running node (of ``among``) leads; raise TimeoutError otherwise."""
        poll_seconds = 0.01
        with trio.move_on_after(timeout_seconds):
            while True:
                leader = self.leader()
                if leader is not None and (among is None or leader in among):
                    return leader
                await trio.sleep(poll_seconds)
        raise TimeoutError(f"no leader within {timeout_seconds} s")

    async def wait_converged(self, *, timeout_seconds: float = 10.0) -> None:
        """Wait until every running node has applied the leader's commit index."""
        poll_seconds = 0.01
        with trio.move_on_after(timeout_seconds):
            while True:
                leader = self.leader()
                if leader is not None:
                    commit = self.node(leader).status().commit_index
                    if all(
                        self.node(nid).status().applied_index >= commit
                        for nid in self.ids
                        if self.is_up(nid)
                    ):
                        return
                await trio.sleep(poll_seconds)
        raise TimeoutError(f"cluster did not converge within {timeout_seconds} s")

    def logs(self) -> dict[NodeId, list[Entry]]:
        """Each node's durable log (what a restart would recover)."""
        return {nid: m.storage.durable_state()[1] for nid, m in self._members.items()}

    def violations(self) -> list[str]:
        """Every safety violation seen so far (empty when all invariants hold)."""
        return self.observer.violations() + log_matching(self.logs())


@asynccontextmanager
async def open_local_cluster(size: int, **options: Any) -> AsyncIterator[LocalCluster]:
    """A started cluster of ``size`` nodes; everything stops when the block ends."""
    async with trio.open_nursery() as nursery:
        cluster = LocalCluster(nursery, size, **options)
        await cluster.start_all()
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
