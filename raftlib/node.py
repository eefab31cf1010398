"""The Trio driver: owns a pure ``RaftCore`` and gives it disks, a network and a clock.

One task, the *raft loop*, is the only code that touches the core. Everything else (the timer,
the transport's receive task, callers of ``propose`` and ``read``, the node's sync thread)
hands it work through one bounded channel and waits on a per-request result slot. Each loop
iteration drains every input that is already waiting (so a burst of proposals becomes one log
append and one fsync: group commit), steps the core, then honours each ``Ready``:

1. send the leader's AppendEntries at once: they depend on nothing it has yet to persist
   (thesis §10.2.1; the core counts the leader towards commit only for persisted entries);
2. apply committed entries and answer their proposers: they are durable on a quorum already;
3. persist hard state and entries with one ``sync()`` -- in the node's sync thread for a
   storage that blocks (``NodeConfig.storage_thread``), while the loop keeps stepping inputs
   and sending new AppendEntries (pipelining: the next batch forms during this fsync and is
   written by the next one; ``RaftCore.take_appends``);
4. only once that sync returned, send every other message (a vote or an append
   acknowledgement must never outrun its fsync) and ``advance`` the core.

Rule kept throughout: nothing is acknowledged (a vote, an append acknowledgement, a command's
result) before what it depends on is fsynced -- on this node for votes and acknowledgements,
on a quorum for results. A Ready that changes nothing but the commit index does not wait for a
sync at all: no message or result depends on the commit index being durable (a restarted node
relearns it), so it rides along with the next sync, or gets its own after
``DEFERRED_COMMIT_TICKS_MAX`` idle ticks, or at a clean exit.

Typical use::

    async with raftlib.open_node(config, storage=..., transport=..., state_machine=sm) as node:
        result = await node.propose(b"command")
        value = await node.read(sm.get, "key")
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import random
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import attrs
import outcome
import trio

from raftlib.core.config import CoreConfig
from raftlib.core.raft import RaftCore
from raftlib.core.types import (
    NO_NODE,
    AppendEntries,
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    Ready,
    Role,
)
from raftlib.errors import (
    ConfigError,
    NotLeader,
    ProposalDropped,
    ProposalQueueFull,
    RaftError,
    Stopped,
    StorageError,
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
    # Where a storage that may block (``blocking`` true, like WalStorage) is called. True: in
    # a worker thread of the node, so the Trio loop (and whatever else runs on it) never
    # waits for a disk. False: on the loop itself, which then stalls for each fsync but saves
    # the thread hand-offs (less CPU and latency per sync on a busy machine).
    storage_thread: bool = True

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
        if not isinstance(self.storage_thread, bool):
            raise ConfigError(
                f"NodeConfig.storage_thread must be a bool, got {self.storage_thread!r}"
            )
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
    """A one-shot result one caller waits on; filled by the raft loop. (A bare parked task and
    a plain value rather than a ``trio.Event`` and an ``Outcome``: there is one per proposal,
    so it is on the hot path.)"""

    __slots__ = ("_done", "_error", "_task", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._task: trio.lowlevel.Task | None = None

    def set(self, result: outcome.Outcome[Any]) -> None:
        if isinstance(result, outcome.Error):
            self.set_error(result.error)
        else:
            self.set_value(result.unwrap())

    def set_value(self, value: Any) -> None:
        if not self._done:
            self._done = True
            self._value = value
            self._wake()

    def set_error(self, error: BaseException) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Any:
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            self._task = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise self._error
        return self._value


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


class _SyncDone:
    """Wakes the raft loop: the sync worker finished (the result waits in the node)."""


_TICK = _Tick()
_SYNC_DONE = _SyncDone()
_Input = list[Message] | _Propose | _Read | _Tick | _SyncDone


class _SyncWorker:
    """The node's own thread for storage calls, which may block (the ``Storage`` protocol).

    One job at a time, as the protocol requires. Cheaper per sync than
    ``trio.to_thread.run_sync`` (no limiter, no context copy, no thread renaming, no task per
    call): a job costs one queue put to start it and one ``run_sync_soon`` to report
    back, and that is most of what a small group commit costs besides the fsync itself.
    """

    def __init__(self, report: Callable[[outcome.Outcome[None]], None]) -> None:
        self._report = report
        self._token = trio.lowlevel.current_trio_token()
        # SimpleQueue: a C queue whose get() blocks without the GIL (threading.Semaphore is
        # Python code over a Condition: measurably slower per hand-off).
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="raftlib-sync", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._jobs.put(fn)

    def close(self) -> None:
        """Stop after the running job, if any: storage is never closed under a sync."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            fn = self._jobs.get()
            if fn is None:
                return
            result = outcome.capture(fn)
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._report, result)


# Ticks a commit-index-only hard state may wait for a sync that happens anyway before it
# gets one of its own (it waited at least DEFERRED_COMMIT_TICKS_MAX - 1 whole ticks then).
DEFERRED_COMMIT_TICKS_MAX = 2


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
        # A sync runs in a worker thread right now (at most one: storage calls never
        # overlap, and the core hands out one Ready at a time); the nursery of that task.
        self._persisting = False
        self._sync_worker: _SyncWorker | None = None
        # The Ready whose sync the worker runs (None for a deferred commit index alone), and
        # the sync's outcome once it is back.
        self._syncing: Ready | None = None
        self._sync_result: outcome.Outcome[None] | None = None
        # A sync to start once the transport had a turn to put this Ready's appends on the
        # wire: run by the raft loop itself (storage_thread=False), or handed to the sync
        # thread then (a waking sync thread would take the GIL from the sends otherwise).
        self._next_sync: tuple[Ready | None, Sequence[Entry], HardState | None] | None = None
        # Term and vote as last handed to storage, and a commit-only hard state not handed yet:
        # it rides along with the next sync, or gets one of its own once it has waited through
        # DEFERRED_COMMIT_TICKS_MAX ticks (so an idle node's durable commit index catches up
        # within a few ticks, while a busy one never spends a sync on it).
        self._stored_term_vote = (core.term, core.vote)
        self._deferred_hard_state: HardState | None = None
        self._deferred_ticks = 0
        self._counters = dict.fromkeys(
            (
                "readies",  # Ready batches processed
                "syncs",  # storage syncs (each covers one Ready: group commit)
                "entries_persisted",
                "append_messages_sent",  # AppendEntries carrying entries
                "append_entries_sent",  # entries in them
                "early_append_messages",  # AppendEntries sent while a sync was running
            ),
            0,
        )

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

        Raises ``NotLeader`` (with the leader's address when known) or ``ProposalQueueFull``
        (backpressure: retry later) when the command never entered the log, and
        ``ProposalDropped`` once another entry was COMMITTED at its index: in all three cases it
        was not applied. Anything else has an unknown outcome: a cancelled call (a caller's
        timeout) or ``Stopped`` may still commit, and so may an entry that a newer leader merely
        truncated from this node's log (another node may hold it and win a later election), so
        a proposal waits until its index commits rather than guessing.
        """
        if not isinstance(command, bytes | bytearray | memoryview):
            raise TypeError("command must be bytes")
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        slot = _Slot()
        await self._submit(_Propose([bytes(command)], [slot]))
        return await slot.wait()

    async def propose_batch(self, commands: Sequence[bytes]) -> list[outcome.Outcome[Any]]:
        """Propose several commands at once; one outcome per command, in order."""
        if not all(isinstance(c, bytes | bytearray | memoryview) for c in commands):
            raise TypeError("commands must be bytes")
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        if not commands:
            await trio.lowlevel.checkpoint()
            return []
        slots = [_Slot() for _ in commands]
        await self._submit(_Propose([bytes(c) for c in commands], slots))
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
        await self._submit(_Read(request_id, slot))
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
            **self._counters,
            **{f"transport_{k}": v for k, v in self._endpoint.statistics().items()},
        }

    # --- driver tasks ---------------------------------------------------------------------

    async def _submit(self, item: _Input) -> None:
        """Queue ``item`` for the raft loop; waits only while the queue is full (backpressure).
        No scheduling round trip otherwise: the caller's next await is its result."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._in_tx.send_nowait(item)
        except trio.WouldBlock:
            await self._in_tx.send(item)

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
        receive_nowait = self._in_rx.receive_nowait
        handle = self._handle
        if self._thread and self.config.storage_thread:
            self._sync_worker = _SyncWorker(self._sync_finished)
        try:
            while True:
                handle(await self._in_rx.receive())
                for _ in range(limit - 1):
                    try:
                        item = receive_nowait()
                    except trio.WouldBlock:
                        break
                    handle(item)
                self._pump()
                while self._next_sync is not None:
                    rd, entries, hard_state = self._next_sync
                    self._next_sync = None
                    # Let the transport put this Ready's appends on the wire first, so the
                    # followers' fsyncs overlap ours.
                    await trio.lowlevel.checkpoint()
                    if self._sync_worker is not None:
                        self._sync_worker.submit(
                            functools.partial(self._persist, entries, hard_state)
                        )
                        break
                    self._persist(entries, hard_state)
                    self._persisted(rd)
                    self._pump()
        finally:
            if self._sync_worker is not None:
                self._sync_worker.close()

    def _handle(self, item: _Input) -> None:
        core = self._core
        if isinstance(item, list):
            step = core.step
            for msg in item:
                step(msg)
        elif isinstance(item, _Tick):
            if self._deferred_hard_state is not None:
                self._deferred_ticks += 1
            core.tick()
        elif isinstance(item, _Propose):
            self._handle_propose(item)
        elif isinstance(item, _SyncDone):
            pass  # _pump collects the result
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

    def _pump(self) -> None:
        """Hand the core's output to the disk, the network and the state machine."""
        core = self._core
        if self._sync_result is not None:
            result, self._sync_result = self._sync_result, None
            result.unwrap()  # a storage failure stops the node
            self._persisted(self._syncing)
        if self._persisting:
            # One Ready at a time: until its sync returns, only appends may leave (see
            # ``RaftCore.take_appends``), so followers start on the next batch meanwhile.
            appends = core.take_appends()
            if appends:
                self._counters["early_append_messages"] += len(appends)
                self._send(appends)
            return
        while core.has_ready():
            rd = core.ready()
            self._counters["readies"] += 1
            hard_state = self._hard_state_to_sync(rd)
            if hard_state is None and not rd.entries:
                # Nothing to make durable, so nothing to wait for.
                if rd.messages:
                    self._send(rd.messages)
                self._deliver(rd)
                core.advance(rd)
                continue
            appends = [m for m in rd.messages if type(m) is AppendEntries]
            if appends:
                # Only AppendEntries may go before the sync (thesis §10.2.1); the rest
                # (votes, acknowledgements) are sent by ``_persisted``.
                self._send(appends)
            self._deliver(rd)
            if self._start_persist(rd, rd.entries, hard_state, after_sends=bool(appends)):
                return
        deferred = self._deferred_hard_state
        if deferred is not None and self._deferred_ticks >= DEFERRED_COMMIT_TICKS_MAX:
            self._deferred_hard_state = None
            self._deferred_ticks = 0
            self._start_persist(None, (), deferred)

    def _start_persist(
        self,
        rd: Ready | None,
        entries: Sequence[Entry],
        hard_state: HardState | None,
        *,
        after_sends: bool = False,
    ) -> bool:
        """Sync, then call ``_persisted(rd)``. Returns True while the sync is pending or
        running (in the sync thread, the loop goes on stepping inputs meanwhile). With
        ``after_sends`` the sync starts only after the transport had its turn."""
        self._counters["syncs"] += 1
        self._counters["entries_persisted"] += len(entries)
        if self._sync_worker is not None:
            self._persisting = True
            self._syncing = rd
            if after_sends:
                self._next_sync = (rd, entries, hard_state)
            else:
                self._sync_worker.submit(functools.partial(self._persist, entries, hard_state))
            return True
        if self._thread:
            self._persisting = True
            self._next_sync = (rd, entries, hard_state)
            return True
        self._persist(entries, hard_state)
        self._persisted(rd)
        return False

    def _hard_state_to_sync(self, rd: Ready) -> HardState | None:
        """The hard state the sync of ``rd`` must write, or None. A change of the commit index
        alone is deferred to the next sync that happens anyway (module docstring)."""
        hard_state = rd.hard_state
        if hard_state is None:
            if rd.entries and self._deferred_hard_state is not None:
                hard_state, self._deferred_hard_state = self._deferred_hard_state, None
                self._deferred_ticks = 0
            return hard_state
        if not rd.entries and (hard_state.term, hard_state.vote) == self._stored_term_vote:
            # Replaces an older deferred one (commit only grows); its wait keeps counting.
            self._deferred_hard_state = hard_state
            return None
        self._deferred_hard_state = None
        self._deferred_ticks = 0
        self._stored_term_vote = (hard_state.term, hard_state.vote)
        return hard_state

    def _sync_finished(self, result: outcome.Outcome[None]) -> None:
        """Runs in the Trio thread (``run_sync_soon``) when the worker is done: wake the raft
        loop. If its queue is full it is busy anyway and finds the result after that batch."""
        self._sync_result = result
        with contextlib.suppress(trio.WouldBlock):
            self._in_tx.send_nowait(_SYNC_DONE)

    def _persisted(self, rd: Ready | None) -> None:
        """``rd`` is durable: what depended on it may leave; the core may count it."""
        self._persisting = False
        self._syncing = None
        if rd is None:
            return
        held = [m for m in rd.messages if type(m) is not AppendEntries]
        if held:
            self._send(held)
        self._core.advance(rd)

    def _send(self, messages: Sequence[Message]) -> None:
        counters = self._counters
        for m in messages:
            if type(m) is AppendEntries and m.entries:
                counters["append_messages_sent"] += 1
                counters["append_entries_sent"] += len(m.entries)
        self._endpoint.send_nowait(messages)

    def _deliver(self, rd: Ready) -> None:
        """Everything in ``rd`` that waits for no sync: committed entries are durable on a
        quorum already (an earlier Ready), reads and role changes depend on no disk."""
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

    def _persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        storage = self._storage
        if entries:
            storage.append(entries)
        if hard_state is not None:
            storage.set_hard_state(hard_state)
        storage.sync()

    def _apply(self, entries: Sequence[Entry]) -> None:
        apply = self._sm.apply
        proposals = self._proposals
        normal = EntryKind.NORMAL
        for entry in entries:
            index = entry.index
            if index != self._applied + 1:
                raise AssertionError(
                    f"apply out of order: applied={self._applied}, next entry {index}"
                )
            value: Any = None
            error: BaseException | None = None
            if entry.kind is normal:
                try:
                    value = apply(entry.data)
                except BaseException as exc:  # the proposer gets it; the node goes on
                    error = exc
                    log.error("state machine raised on entry %d: %r", index, exc)
            self._applied = index
            pending = proposals.pop(index, None) if proposals else None
            if pending is None:
                continue
            term, slot = pending
            if term != entry.term or entry.kind is not normal:
                # Another leader's entry took this index: ours was never committed and never
                # will be (nobody re-proposes it), so the caller knows it was not applied.
                slot.set_error(ProposalDropped(
                    f"entry {index} of term {term} was replaced by term {entry.term}"
                ))
            elif error is not None:
                slot.set_error(error)
            else:
                slot.set_value(value)
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

    def _sync_deferred_hard_state(self) -> None:
        """Leave the latest commit index durable too. Called once every task has stopped, so
        no other storage call can be running."""
        deferred, self._deferred_hard_state = self._deferred_hard_state, None
        if deferred is None:
            return
        try:
            self._persist((), deferred)
        except StorageError as exc:
            # Not a loss: entries up to it are durable on a quorum; a restart relearns it.
            log.warning("node %d: final commit index %d not made durable: %s",
                        self.node_id, deferred.commit, exc)

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
            # Only on a clean exit (a cancelled block is a crash as far as storage goes).
            node._sync_deferred_hard_state()
    finally:
        storage.close()
