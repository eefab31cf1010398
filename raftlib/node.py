"""The Trio driver: owns a pure ``RaftCore`` and gives it disks, a network and a clock.

One task, the *raft loop*, is the only code that touches the core. Everything else (the timer,
the transport's receive task, callers of ``propose`` and ``read``) hands it work through one
bounded channel and waits on a per-request result slot. Each loop iteration drains every input
that is already waiting (so a burst of proposals becomes one log append and one fsync: group
commit), steps the core, then honours each ``Ready`` exactly as its contract says:

1. persist hard state and entries, one ``sync()`` for both (in a worker thread for real disks);
2. only then send messages (a vote or an append acknowledgement must never outrun its fsync);
3. apply committed entries to the state machine and answer the proposers waiting for them;
4. ``advance`` the core.

Typical use::

    async with raftlib.open_node(config, storage=..., transport=..., state_machine=sm) as node:
        result = await node.propose(b"command")
        value = await node.read(sm.get, "key")
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import attrs
import outcome
import trio

from raftlib.core.config import CoreConfig
from raftlib.core.raft import RaftCore
from raftlib.core.types import NO_NODE, Entry, EntryKind, Message, NodeId, Ready, Role
from raftlib.errors import (
    ConfigError,
    NotLeader,
    ProposalDropped,
    ProposalQueueFull,
    RaftError,
    Stopped,
)
from raftlib.storage.base import Storage
from raftlib.transport.base import Endpoint, Transport

log = logging.getLogger("raftlib.node")

T = TypeVar("T")


class StateMachine(Protocol):
    """The user's replicated state. ``apply`` is called once per committed command, in log
    order, on every node; it must be deterministic (same commands, same results everywhere) and
    quick (it runs on the raft loop). Its return value goes back to the proposer."""

    def apply(self, command: bytes) -> Any: ...


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"NodeConfig.{name} must be an int >= {minimum}, got {value!r}")


@attrs.frozen
class NodeConfig:
    """Everything a node needs to know, validated up front (``ConfigError`` names the field)."""

    node_id: NodeId
    # Every voting member (this node included) and the address clients and peers reach it at;
    # the address is what ``NotLeader`` reports so a client can retry at the leader.
    peers: Mapping[NodeId, str]
    tick_seconds: float = 0.025
    election_timeout_ticks_min: int = 10
    election_timeout_ticks_max: int = 20
    heartbeat_interval_ticks: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    append_entries_max: int = 512
    append_bytes_max: int = 1 << 20
    inflight_appends_max: int = 256
    uncommitted_entries_max: int = 8192
    # Inputs (message batches, proposals, reads, ticks) waiting for the raft loop. A full queue
    # makes callers wait and the transport drop, rather than letting memory grow.
    input_queue_items_max: int = 4096
    # Inputs handled per loop iteration before the core's output is processed, so one flood of
    # messages cannot starve ticks or delay fsyncs without bound.
    inputs_per_iteration_max: int = 4096
    # Outstanding proposals and reads this node will track at once.
    pending_requests_max: int = 65536
    # How long a read waits for the leader to confirm it (a few heartbeat rounds).
    read_timeout_seconds: float = 1.0
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        _check_int("node_id", self.node_id, 1)
        if not isinstance(self.peers, Mapping) or not self.peers:
            raise ConfigError(f"NodeConfig.peers must be a non-empty mapping, got {self.peers!r}")
        for peer, address in self.peers.items():
            _check_int("peers (node id)", peer, 1)
            if not isinstance(address, str):
                raise ConfigError(f"NodeConfig.peers[{peer}] must be an address string")
        if self.node_id not in self.peers:
            raise ConfigError(f"NodeConfig.peers must include node_id {self.node_id}")
        tick = self.tick_seconds
        if not isinstance(tick, int | float) or not math.isfinite(tick) or tick <= 0:
            raise ConfigError(f"NodeConfig.tick_seconds must be > 0, got {tick!r}")
        for name in (
            "input_queue_items_max",
            "inputs_per_iteration_max",
            "pending_requests_max",
        ):
            _check_int(name, getattr(self, name), 1)
        self.core_config()  # the core validates its own fields

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            node_id=self.node_id,
            voters=tuple(sorted(self.peers)),
            election_timeout_ticks_min=self.election_timeout_ticks_min,
            election_timeout_ticks_max=self.election_timeout_ticks_max,
            heartbeat_interval_ticks=self.heartbeat_interval_ticks,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            append_entries_max=self.append_entries_max,
            append_bytes_max=self.append_bytes_max,
            inflight_appends_max=self.inflight_appends_max,
            uncommitted_entries_max=self.uncommitted_entries_max,
        )


@attrs.frozen
class FollowerStatus:
    match_index: int
    next_index: int


@attrs.frozen
class NodeStatus:
    """An immutable snapshot of a node, safe to hand to other tasks."""

    node_id: NodeId
    role: Role
    term: int
    leader: NodeId
    commit_index: int
    applied_index: int
    last_index: int
    followers: Mapping[NodeId, FollowerStatus]  # empty unless leader


@attrs.frozen
class NodeHooks:
    """Observation points for tests and the harness; called on the raft loop, so keep them
    quick and never let them raise. ``on_apply`` sees every applied entry batch (noops too);
    ``on_role`` sees each role change with the term it happened in."""

    on_apply: Callable[[NodeId, Sequence[Entry]], None] | None = None
    on_role: Callable[[NodeId, Role, int], None] | None = None


class _Slot:
    """A one-shot result a caller waits on; filled by the raft loop."""

    __slots__ = ("_event", "_result")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._result: outcome.Outcome[Any] | None = None

    def set(self, result: outcome.Outcome[Any]) -> None:
        if self._result is None:
            self._result = result
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        assert self._result is not None
        return self._result.unwrap()


@attrs.define
class _Propose:
    datas: list[bytes]
    slots: list[_Slot]


@attrs.define
class _Read:
    request_id: int
    slot: _Slot


class _Tick:
    pass


_TICK = _Tick()
_Input = list[Message] | _Propose | _Read | _Tick


def _needs_thread(storage: Storage) -> bool:
    # In-memory storage never blocks, and calling it inline keeps simulations deterministic and
    # lets Trio's autojump clock see the loop as busy rather than idle.
    return bool(getattr(storage, "blocking", True))


class Node:
    """A running Raft node. Build it with ``open_node``; do not instantiate directly."""

    def __init__(
        self,
        config: NodeConfig,
        core: RaftCore,
        storage: Storage,
        endpoint: Endpoint,
        state_machine: StateMachine,
        hooks: NodeHooks | None = None,
    ) -> None:
        self.config = config
        self._hooks = hooks or NodeHooks()
        self._core = core
        self._storage = storage
        self._endpoint = endpoint
        self._sm = state_machine
        self._in_tx, self._in_rx = trio.open_memory_channel[_Input](config.input_queue_items_max)
        # index -> (term the entry was proposed in, slot of the proposer)
        self._proposals: dict[int, tuple[int, _Slot]] = {}
        self._reads: dict[int, _Slot] = {}
        self._read_states: list[tuple[int, int]] = []  # (index, request id), served when applied
        self._next_read_id = 1
        self._applied = core.applied_index
        self._stopped = False
        self._thread = _needs_thread(storage)
        self._applied_changed = trio.Event()

    # --- public API ---------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self.config.node_id

    def status(self) -> NodeStatus:
        core = self._core.status()
        followers = {
            peer: FollowerStatus(match_index=p.match, next_index=p.next)
            for peer, p in core.progress.items()
        }
        return NodeStatus(
            node_id=core.node_id,
            role=core.role,
            term=core.term,
            leader=core.leader,
            commit_index=core.commit,
            applied_index=self._applied,
            last_index=core.last_index,
            followers=followers,
        )

    def not_leader(self) -> NotLeader:
        leader = self._core.leader
        return NotLeader(leader, self.config.peers.get(leader) if leader != NO_NODE else None)

    async def propose(self, command: bytes) -> Any:
        """Replicate ``command``; return what the state machine's ``apply`` returned for it.

        Raises ``NotLeader`` (with the leader's address when known), ``ProposalQueueFull``
        (backpressure: retry later) or ``ProposalDropped`` (a new leader replaced the entry: it
        was not applied). If the call is cancelled (a caller's timeout) the outcome is unknown:
        the command may still commit.
        """
        results = await self.propose_batch([command])
        result = results[0]
        return result.unwrap()

    async def propose_batch(self, commands: Sequence[bytes]) -> list[outcome.Outcome[Any]]:
        """Propose several commands at once; one outcome per command, in order."""
        if not all(isinstance(c, bytes | bytearray | memoryview) for c in commands):
            raise TypeError("commands must be bytes")
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        slots = [_Slot() for _ in commands]
        await self._in_tx.send(_Propose([bytes(c) for c in commands], slots))
        out: list[outcome.Outcome[Any]] = []
        for slot in slots:
            out.append(await outcome.acapture(slot.wait))
        return out

    async def read_barrier(self) -> int:
        """Wait until this node may serve a linearizable read (ReadIndex, thesis §6.4): the
        leader confirmed it still leads with a heartbeat round after the read arrived, and this
        node applied everything committed before it. Returns the read index. On a follower the
        request is forwarded to the leader. Raises ``NotLeader`` when it cannot be confirmed."""
        self._check_running()
        slot = _Slot()
        request_id = self._next_read_id
        self._next_read_id += 1
        await self._in_tx.send(_Read(request_id, slot))
        # A forwarded request or its reply may be lost; after this long the leader we asked is
        # presumed gone and the caller may retry elsewhere.
        with trio.move_on_after(self.config.read_timeout_seconds):
            index: int = await slot.wait()
            return index
        self._reads.pop(request_id, None)
        raise self.not_leader()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` (a read of the state machine) at a linearizable point."""
        await self.read_barrier()
        return fn(*args)

    async def wait_applied(self, index: int) -> None:
        """Wait until this node has applied every entry up to ``index``."""
        while self._applied < index:
            self._check_running()
            await self._applied_changed.wait()

    def campaign(self) -> None:
        """Start an election now (tests, operators)."""
        self._core.campaign()

    def transfer_leadership(self, to: NodeId) -> None:
        self._core.transfer_leadership(to)

    def statistics(self) -> dict[str, int]:
        return {
            "pending_proposals": len(self._proposals),
            "pending_reads": len(self._reads),
            "applied_index": self._applied,
            **{f"transport_{k}": v for k, v in self._endpoint.statistics().items()},
        }

    # --- driver tasks ---------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._stopped:
            raise Stopped(f"node {self.node_id} has stopped")

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.config.tick_seconds)
            await self._in_tx.send(_TICK)

    async def _receiver(self) -> None:
        while True:
            batch = await self._endpoint.receive()
            await self._in_tx.send(batch)

    async def _raft_loop(self) -> None:
        limit = self.config.inputs_per_iteration_max
        while True:
            self._handle(await self._in_rx.receive())
            for _ in range(limit - 1):
                try:
                    item = self._in_rx.receive_nowait()
                except trio.WouldBlock:
                    break
                self._handle(item)
            while self._core.has_ready():
                await self._process(self._core.ready())

    def _handle(self, item: _Input) -> None:
        core = self._core
        if isinstance(item, list):
            for msg in item:
                core.step(msg)
        elif isinstance(item, _Tick):
            core.tick()
        elif isinstance(item, _Propose):
            self._handle_propose(item)
        else:
            self._handle_read(item)

    def _handle_propose(self, item: _Propose) -> None:
        if len(self._proposals) + len(item.datas) > self.config.pending_requests_max:
            self._fail_all(item.slots, ProposalQueueFull("too many proposals pending"))
            return
        try:
            first = self._core.propose_batch(item.datas)
        except RaftError as exc:
            if isinstance(exc, NotLeader):
                exc = self.not_leader()
            self._fail_all(item.slots, exc)
            return
        term = self._core.term
        for offset, slot in enumerate(item.slots):
            self._proposals[first + offset] = (term, slot)

    def _handle_read(self, item: _Read) -> None:
        if len(self._reads) >= self.config.pending_requests_max:
            item.slot.set(outcome.Error(ProposalQueueFull("too many reads pending")))
            return
        self._reads[item.request_id] = item.slot
        self._core.read_index(item.request_id)

    @staticmethod
    def _fail_all(slots: Sequence[_Slot], exc: BaseException) -> None:
        for slot in slots:
            slot.set(outcome.Error(exc))

    async def _process(self, rd: Ready) -> None:
        if rd.hard_state is not None or rd.entries:
            if self._thread:
                await trio.to_thread.run_sync(self._persist, rd)
            else:
                self._persist(rd)
        if rd.entries and self._proposals:
            self._drop_replaced(rd.entries)
        if rd.messages:
            self._endpoint.send_nowait(rd.messages)
        if rd.soft_state is not None and self._hooks.on_role is not None:
            self._hooks.on_role(self.node_id, rd.soft_state.role, self._core.term)
        if rd.committed:
            self._apply(rd.committed)
            if self._hooks.on_apply is not None:
                self._hooks.on_apply(self.node_id, rd.committed)
        for request_id in rd.dropped_reads:
            slot = self._reads.pop(request_id, None)
            if slot is not None:
                slot.set(outcome.Error(self.not_leader()))
        for rs in rd.read_states:
            self._read_states.append((rs.index, rs.request_id))
        self._serve_reads()
        self._core.advance(rd)

    def _drop_replaced(self, entries: Sequence[Entry]) -> None:
        """Entries from ``entries[0].index`` on replace whatever the log held there, and the
        log now ends with them: a proposal of ours at a replaced index, or beyond the new end,
        is gone for good (nobody re-proposes it), so its caller learns it was not applied."""
        first, last = entries[0].index, entries[-1].index
        for index in [i for i in self._proposals if i >= first]:
            term, slot = self._proposals[index]
            if index <= last and entries[index - first].term == term:
                continue
            del self._proposals[index]
            slot.set(outcome.Error(ProposalDropped(
                f"entry {index} of term {term} was replaced by another leader's log"
            )))

    def _persist(self, rd: Ready) -> None:
        storage = self._storage
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        storage.sync()

    def _apply(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.index != self._applied + 1:
                raise AssertionError(
                    f"apply out of order: applied={self._applied}, next entry {entry.index}"
                )
            result: outcome.Outcome[Any] | None = None
            if entry.kind is EntryKind.NORMAL:
                result = outcome.capture(self._sm.apply, entry.data)
                if isinstance(result, outcome.Error):
                    log.error(
                        "state machine raised on entry %d: %r", entry.index, result.error
                    )
            self._applied = entry.index
            pending = self._proposals.pop(entry.index, None)
            if pending is not None:
                term, slot = pending
                if term == entry.term and result is not None:
                    slot.set(result)
                else:
                    # Another leader's entry took this index: ours was never committed and never
                    # will be (nobody re-proposes it), so the caller knows it was not applied.
                    slot.set(outcome.Error(ProposalDropped(
                        f"entry {entry.index} of term {term} was replaced by term {entry.term}"
                    )))
        self._applied_changed.set()
        self._applied_changed = trio.Event()

    def _serve_reads(self) -> None:
        if not self._read_states:
            return
        keep: list[tuple[int, int]] = []
        for index, request_id in self._read_states:
            if index <= self._applied:
                slot = self._reads.pop(request_id, None)
                if slot is not None:
                    slot.set(outcome.Value(index))
            else:
                keep.append((index, request_id))
        self._read_states = keep

    def _stop(self) -> None:
        self._stopped = True
        exc = Stopped(f"node {self.node_id} has stopped")
        for _term, slot in self._proposals.values():
            slot.set(outcome.Error(exc))
        for slot in self._reads.values():
            slot.set(outcome.Error(exc))
        self._proposals.clear()
        self._reads.clear()
        self._applied_changed.set()


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    storage: Storage,
    transport: Transport,
    state_machine: StateMachine,
    rng: random.Random | None = None,
    hooks: NodeHooks | None = None,
) -> AsyncIterator[Node]:
    """Start a node: recover from ``storage``, join the network, and run until the block ends.

    Leaving the block (or cancelling it) stops every task the node started; requests still
    waiting get ``Stopped``. The storage is closed on the way out.
    """
    if not isinstance(config, NodeConfig):
        raise ConfigError(f"config must be a NodeConfig, got {type(config).__name__}")
    hard_state, entries = storage.load()
    core = RaftCore(
        config.core_config(),
        rng if rng is not None else random.Random(config.seed),
        hard_state=hard_state,
        entries=entries,
    )
    try:
        async with transport.open(config.node_id) as endpoint:
            node = Node(config, core, storage, endpoint, state_machine, hooks)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(node._raft_loop)
                    nursery.start_soon(node._receiver)
                    nursery.start_soon(node._ticker)
                    try:
                        yield node
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                node._stop()
    finally:
        storage.close()
