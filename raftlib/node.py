"""The Trio node: runs the shared ``raftlib.driver.Driver`` with real disks, sockets and time.

One task, the *raft loop*, is the only code that touches the driver (and so the core).
Everything else (the timer, the transport's receive task, callers of ``propose``, ``read``,
``campaign`` and ``transfer_leadership``, the node's sync thread) hands it work through one
bounded channel and waits on a per-request result slot. Each loop iteration drains every input
that is already waiting (so a burst of proposals becomes one log append and one fsync: group
commit), then pumps the driver, which sends, applies and hands back a ``PersistJob``; the job
runs in the node's sync thread for a storage that blocks (``NodeConfig.storage_thread``), while
the loop keeps stepping inputs and sending new AppendEntries (pipelining). The ordering rules
themselves (what may leave before an fsync, what waits for it) live in ``raftlib.driver``, which
the deterministic simulator runs too.

Typical use::

    async with raftlib.open_node(config, storage=..., transport=..., state_machine=sm) as node:
        result = await node.propose(b"command")
        value = await node.read(sm.get, "key")
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import outcome
import trio

from raftlib.core.membership import Change, ChangeOp, address_of
from raftlib.core.raft import RaftCore
from raftlib.core.types import (
    NO_NODE,
    ConfState,
    Message,
    NodeId,
    Role,
)
from raftlib.driver import Driver, DriverHooks, PersistJob, SnapshotTask, recover
from raftlib.errors import (
    ChangeInProgress,
    ConfigError,
    LeadershipTransferFailed,
    NotLeader,
    ProposalOutcomeUnknown,
    ProposalQueueFull,
    RaftError,
    Stopped,
    StorageError,
)
from raftlib.nodeconfig import NodeConfig as NodeConfig  # re-exported (users import it here)
from raftlib.noderecords import FollowerStatus as FollowerStatus
from raftlib.noderecords import NodeHooks as NodeHooks
from raftlib.noderecords import NodeStatus as NodeStatus
from raftlib.noderecords import Observation as Observation
from raftlib.statemachine import StateMachine
from raftlib.storage.base import Storage
from raftlib.transport.base import Endpoint, Transport

log = logging.getLogger("raftlib.node")

T = TypeVar("T")


# How long a membership change waits for the one before it (or the leader's automatic leave of a
# joint configuration) to take effect before it gives up with ChangeInProgress.
CHANGE_WAIT_SECONDS_MAX = 10.0
# How long ``promote``/``add_voter`` wait for a learner to catch up before promoting it.
CATCH_UP_SECONDS_DEFAULT = 30.0
# Commands ``propose_batch_nowait`` calls may add to one queued input (``Node._open_proposal``)
# before the next call queues another: what one driver call proposes at most from that path.
OPEN_PROPOSAL_COMMANDS_MAX = 4096

# A learner counts as caught up when its log is this close to the leader's commit index.
CATCH_UP_ENTRIES_MAX = 64


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

    @property
    def done(self) -> bool:
        return self._done

    def outcome(self) -> outcome.Outcome[Any]:
        """The result of a filled slot, without waiting (or a checkpoint)."""
        assert self._done, "outcome() of a slot still waiting"
        if self._error is not None:
            return outcome.Error(self._error)
        return outcome.Value(self._value)

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


class _GroupSlot(_Slot):
    """A slot of a ``ProposalGroup``: filling it counts the group down instead of waking a
    task."""

    __slots__ = ("_group",)

    def __init__(self, group: ProposalGroup) -> None:
        # (_Slot's fields set here rather than through super().__init__: one per command.)
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._task: trio.lowlevel.Task | None = None
        self._group = group

    def _wake(self) -> None:
        self._group._one_done()


class ProposalGroup:
    """The outcomes of a ``propose_batch_nowait``: ``on_done`` is called once (from the raft
    loop, or the ticker at the deadline) when every command has one."""

    __slots__ = ("_left", "_on_done", "slots")

    def __init__(self, size: int, on_done: Callable[[], None]) -> None:
        assert size >= 1
        self.slots: list[_Slot] = [_GroupSlot(self) for _ in range(size)]
        self._left = size
        self._on_done = on_done

    def _one_done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._on_done()

    @property
    def done(self) -> bool:
        return self._left == 0

    def outcomes(self) -> list[outcome.Outcome[Any]]:
        """One outcome per command, in order (only once ``done``)."""
        assert self._left == 0, "outcomes() of a group still waiting"
        return [slot.outcome() for slot in self.slots]

    def results(self) -> list[tuple[Any, BaseException | None]]:
        """``outcomes`` as (value, None) or (None, error) pairs: the same, without an object
        per command to build and unwrap (an event loop's hot path)."""
        assert self._left == 0, "results() of a group still waiting"
        return [(slot._value, slot._error) for slot in self.slots]


@attrs.define
class _Propose:
    datas: list[bytes]
    slots: list[_Slot]


@attrs.define
class _Read:
    slot: _Slot
    # Filled by the raft loop: the driver's request id, so a reader that gives up can cancel.
    request_id: int = 0


@attrs.define
class _SnapshotWritten:
    task: SnapshotTask
    error: BaseException | None


@attrs.define
class _CancelRead:
    read: _Read


@attrs.define
class _Conf:
    changes: tuple[Change, ...]
    slot: _Slot


@attrs.define
class _Call:
    """An operator's call on the core (campaign, transfer), run by the raft loop: only the
    loop touches the core, and its pump then sends what the call produced."""

    fn: Callable[[], None]
    slot: _Slot


class _Tick:
    """Wakes the raft loop: a tick may be due (the loop reads the clock)."""


class _SyncDone:
    """Wakes the raft loop: the sync worker finished (the result waits in the node)."""


_TICK = _Tick()
_SYNC_DONE = _SyncDone()
_Input = (
    list[Message] | _Propose | _Read | _CancelRead | _Call | _Conf | _Tick | _SyncDone
    | _SnapshotWritten
)


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


class _Inbound:
    """Where an endpoint with ``deliver_to`` hands its batches: straight into the raft loop's
    queue, from the connection's own task (``raftlib.transport.base``). Such an endpoint
    gives batches from one peer each (the TCP transport closes a connection whose messages
    claim another sender), so the peer's last contact is noted once per batch."""

    __slots__ = ("_contact", "_tx")

    def __init__(self, node: Node) -> None:
        self._contact = node._last_contact
        self._tx = node._in_tx

    def put_nowait(self, batch: list[Message]) -> bool:
        """Queue ``batch``; False when the queue is full (nothing was queued)."""
        try:
            self._tx.send_nowait(batch)
        except trio.WouldBlock:
            return False
        self._contact[batch[0].src] = trio.current_time()
        return True

    async def put(self, batch: list[Message]) -> None:
        """Queue ``batch`` once there is room (the peer's connection waits meanwhile)."""
        await self._tx.send(batch)
        self._contact[batch[0].src] = trio.current_time()


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
        self._stopped = False
        self._thread = _needs_thread(storage)
        self._applied_changed = trio.Event()
        hooks_ = self._hooks
        on_apply = hooks_.on_apply
        node_id = config.node_id
        # Seconds (trio clock) each peer was last heard from (status: last contact).
        self._last_contact: dict[NodeId, float] = {}
        self._driver = Driver(
            core,
            state_machine,
            endpoint.send_nowait,
            not_leader=self.not_leader,
            pending_requests_max=config.pending_requests_max,
            hooks=DriverHooks(
                on_apply=None if on_apply is None else (lambda es: on_apply(node_id, es)),
                on_role=self._saw_role,
                on_conf=self._saw_conf,
                on_restore=None if hooks_.on_restore is None else functools.partial(
                    hooks_.on_restore, node_id
                ),
            ),
            storage=storage if hasattr(storage, "create_snapshot") else None,
            snapshot_policy=config.snapshot,
        )
        self._nursery: trio.Nursery | None = None
        self._sync_worker: _SyncWorker | None = None
        # The sync's outcome once the worker is back with it.
        self._sync_result: outcome.Outcome[None] | None = None
        # How long the last sync job took (set by the worker when on_sync is given).
        self._sync_seconds: float | None = None
        # Proposals waiting with a deadline (``propose_batch(timeout_seconds=...)``), soonest
        # first: (deadline, tie-breaker, slots). The ticker fails the overdue ones, so a caller
        # needs no cancel scope of its own. An entry leaves at a tick once its batch is done
        # and no older one waits, or at its deadline: at most the batches proposed within one
        # timeout, a few small tuples each.
        self._deadlines: list[tuple[float, int, list[_Slot], ProposalGroup | None]] = []
        self._deadline_order = itertools.count()
        # The ``propose_batch_nowait`` input queued and not yet taken by the raft loop: later
        # calls add their commands to it (up to ``OPEN_PROPOSAL_COMMANDS_MAX``) instead of
        # queueing an input each. An event loop serving many connections proposes once per
        # connection per round; one input for all of them is one channel send and one driver
        # call. (Commands of concurrent calls may enter the log in any order; a connection's
        # own are never concurrent: it proposes its next only once the last is done.)
        self._open_proposal: _Propose | None = None
        # When the core's next tick is due (trio clock). Ticks follow the clock, not the
        # ticker's wake-ups: the raft loop delivers every tick due before it handles a
        # request (``_catch_up_ticks``), so a node that stalled (SIGSTOP, a blocked loop, a
        # GC pause) counts the time it lost before it answers a read from its lease.
        self._next_tick_at = trio.current_time() + config.tick_seconds

    # --- public API ---------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self.config.node_id

    @property
    def term(self) -> int:
        """This node's current term (cheaper than ``status()``: no copy of the progress)."""
        return self._core.term

    @property
    def role(self) -> Role:
        return self._core.role

    @property
    def applied_every_command(self) -> bool:
        """Whether no state-machine command can exist that this node has not applied
        (``Driver.applied_every_command``)."""
        return self._driver.applied_every_command

    @property
    def lease_reads_served(self) -> int:
        """Reads this node answered under its lease since it started (``lease_reads``)."""
        return self._core.lease_reads_served

    def status(self) -> NodeStatus:
        core = self._core.status()
        now = trio.current_time()
        contact = self._last_contact
        followers = {
            peer: FollowerStatus(
                match_index=p.match,
                next_index=p.next,
                state=p.state,
                last_contact_seconds=now - contact[peer] if peer in contact else None,
            )
            for peer, p in core.progress.items()
        }
        return NodeStatus(
            node_id=core.node_id,
            role=core.role,
            term=core.term,
            leader=core.leader,
            commit_index=core.commit,
            applied_index=self._driver.applied,
            last_index=core.last_index,
            followers=followers,
            safety_anomalies=core.safety_anomalies,
            invalid_messages=core.invalid_messages,
            configuration=core.conf,
        )

    def address_of(self, node_id: NodeId) -> str | None:
        """Where ``node_id`` is reached: the configuration's address, else the one given at
        start."""
        address = address_of(self._core.conf, node_id)
        return address if address is not None else self.config.peers.get(node_id)

    def not_leader(self) -> NotLeader:
        leader = self._core.leader
        return NotLeader(leader, self.address_of(leader) if leader != NO_NODE else None)

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

    async def propose_batch(
        self, commands: Sequence[bytes], *, timeout_seconds: float | None = None,
    ) -> list[outcome.Outcome[Any]]:
        """Propose several commands at once; one outcome per command, in order.

        With ``timeout_seconds``, a command not applied by then gets ``ProposalOutcomeUnknown``
        (it may still commit later), and a batch that could not even be queued in that time
        (the node's input queue stayed full) gets ``ProposalQueueFull``: one deadline shared
        by the batch and kept by the node's ticker (so it fires up to one tick late), cheaper
        than a cancel scope around the call."""
        datas = list(commands)
        for n, data in enumerate(datas):
            if type(data) is not bytes:
                if not isinstance(data, bytearray | memoryview):
                    raise TypeError("commands must be bytes")
                datas[n] = bytes(data)
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        if not datas:
            await trio.lowlevel.checkpoint()
            return []
        slots = [_Slot() for _ in datas]
        item = _Propose(datas, slots)
        if timeout_seconds is None:
            await self._submit(item)
        else:
            deadline = trio.current_time() + timeout_seconds
            if not await self._submit_before(item, deadline):
                full = ProposalQueueFull(
                    f"the node's input queue stayed full for {timeout_seconds:g} s")
                return [outcome.Error(full) for _ in slots]
            self._fail_unfinished_at(deadline, slots)
        out: list[outcome.Outcome[Any]] = []
        for slot in slots:
            if not slot.done:
                # Waits (a checkpoint) at least for the first; the rest are usually filled by
                # then, as a batch commits and applies together.
                out.append(await outcome.acapture(slot.wait))
            else:
                out.append(slot.outcome())
        return out

    def propose_batch_nowait(
        self, commands: list[bytes], *, timeout_seconds: float, on_done: Callable[[], None],
    ) -> ProposalGroup:
        """``propose_batch`` for a caller that cannot wait (an event loop serving many
        connections): queues the commands at once and returns their group, whose ``on_done``
        is called when each has its outcome (by ``timeout_seconds`` at the latest:
        ``ProposalOutcomeUnknown``, as ``propose_batch``). ``on_done`` runs in the raft loop's
        task or the ticker's: it must only note that the group is done, never raise. Raises
        ``NotLeader``, ``Stopped``, or ``ProposalQueueFull`` when the node's input queue is
        full (nothing was queued)."""
        # (The types by map, not a generator: this runs once per client batch.)
        assert commands and set(map(type, commands)) == {bytes}, "non-empty, bytes"
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        group = ProposalGroup(len(commands), on_done)
        item = self._open_proposal
        if item is not None and len(item.datas) + len(commands) <= OPEN_PROPOSAL_COMMANDS_MAX:
            item.datas += commands
            item.slots += group.slots
        else:
            item = _Propose(list(commands), list(group.slots))
            try:
                self._in_tx.send_nowait(item)
            except trio.WouldBlock:
                raise ProposalQueueFull("the node's input queue is full") from None
            self._open_proposal = item
        self._fail_unfinished_at(trio.current_time() + timeout_seconds, group.slots, group)
        return group

    async def read_barrier(self) -> int:
        """Wait until this node may serve a linearizable read (ReadIndex, thesis §6.4): the
        leader confirmed it still leads with a heartbeat round after the read arrived, and this
        node applied everything committed before it. Returns the read index. On a follower the
        request is forwarded to the leader. Raises ``NotLeader`` when it cannot be confirmed."""
        self._check_running()
        read = _Read(_Slot())
        await self._submit(read)
        # A forwarded request or its reply may be lost; after this long the leader we asked is
        # presumed gone and the caller may retry elsewhere.
        with trio.move_on_after(self.config.read_timeout_seconds):
            index: int = await read.slot.wait()
            return index
        with contextlib.suppress(trio.WouldBlock):
            self._in_tx.send_nowait(_CancelRead(read))
        raise self.not_leader()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` (a read of the state machine) at a linearizable point."""
        await self.read_barrier()
        return fn(*args)

    async def wait_applied(self, index: int) -> None:
        """Wait until this node has applied every entry up to ``index``."""
        while self._driver.applied < index:
            self._check_running()
            await self._applied_changed.wait()

    async def campaign(self) -> None:
        """Start an election now (tests, operators)."""
        await self._call(self._core.campaign)

    async def barrier(self) -> int:
        """Wait until everything committed before the call is applied here, at a point a
        leader confirmed (hashicorp's Barrier); returns that index."""
        return await self.read_barrier()

    async def transfer_leadership(
        self, to: NodeId | None = None, *, timeout_seconds: float | None = None
    ) -> NodeId:
        """Hand leadership to ``to`` (the most caught-up other voter when None; thesis
        §3.10) and return once it leads. Raises ``NotLeader``, ``ConfigError`` (not a voter)
        or ``LeadershipTransferFailed`` (it did not take over within ``timeout_seconds``,
        default two maximum election timeouts: this node leads on)."""
        self._check_running()
        if self._core.role is not Role.LEADER:
            raise self.not_leader()
        if to is None:
            to = self._best_successor()
        await self._call(functools.partial(self._core.transfer_leadership, to))
        if to == self.node_id:
            return to
        cfg = self.config
        if timeout_seconds is None:
            timeout_seconds = 2 * cfg.core.election_timeout_ticks_max * cfg.tick_seconds
        with trio.move_on_after(timeout_seconds):
            while self._core.leader != to or self._core.role is Role.LEADER:
                self._check_running()
                await trio.sleep(cfg.tick_seconds)
            return to
        raise LeadershipTransferFailed(
            f"node {to} did not take over within {timeout_seconds:.2f}s "
            f"(leader now: {self._core.leader or 'unknown'})"
        )

    def _best_successor(self) -> NodeId:
        progress = self._core.status().progress
        voters = [v for v in sorted(set(self._core.conf.voters)) if v != self.node_id]
        if not voters:
            raise ConfigError("transfer_leadership: this node is the only voter")
        return max(voters, key=lambda v: progress[v].match if v in progress else -1)

    # --- membership (hashicorp/raft's AddVoter, AddNonvoter, RemoveServer) -----------------

    def configuration(self) -> ConfState:
        """The configuration in force on this node (it follows its applied log)."""
        return self._core.conf

    async def add_learner(self, node_id: NodeId, address: str = "") -> None:
        """Make ``node_id`` (reached at ``address``) a learner: it receives the log and
        snapshots but never votes. Returns once the change took effect here (leader only)."""
        await self.change_membership((Change(ChangeOp.ADD_LEARNER, node_id, address),))

    async def add_voter(
        self, node_id: NodeId, address: str = "", *,
        catch_up_seconds: float = CATCH_UP_SECONDS_DEFAULT,
    ) -> None:
        """Add ``node_id`` as a voter the safe way: as a learner first, promoted once its
        log has caught up (so the cluster never waits on an empty node for its quorum)."""
        conf = self._core.conf
        if node_id in conf.voters:
            return
        if node_id not in conf.learners:
            await self.add_learner(node_id, address)
        await self.promote(node_id, catch_up_seconds=catch_up_seconds)

    async def promote(
        self, node_id: NodeId, *, catch_up_seconds: float = CATCH_UP_SECONDS_DEFAULT
    ) -> None:
        """Make the learner ``node_id`` a voter once it caught up (it answers, and its log is
        within CATCH_UP_ENTRIES_MAX of the commit index; ``RaftError`` after
        ``catch_up_seconds``)."""
        with trio.move_on_after(catch_up_seconds):
            while True:
                self._check_running()
                if self._core.role is not Role.LEADER:
                    raise self.not_leader()
                follower = self._core.status().progress.get(node_id)
                if follower is None:
                    raise ConfigError(f"promote: node {node_id} is not a learner of this cluster")
                # It answered (replicating, not probing or receiving a snapshot) and its log is
                # close to the commit index: as a voter it will not hold a quorum back.
                caught_up = follower.match + CATCH_UP_ENTRIES_MAX >= self._core.commit_index
                if follower.state == "replicate" and follower.match > 0 and caught_up:
                    break
                await trio.sleep(self.config.tick_seconds)
            await self.change_membership((Change(ChangeOp.ADD_VOTER, node_id),))
            return
        raise RaftError(f"node {node_id} did not catch up within {catch_up_seconds}s")

    async def remove(self, node_id: NodeId) -> None:
        """Remove ``node_id`` (voter or learner). Removing this node, the leader, makes it
        step down once the change is committed: the others elect a successor."""
        await self.change_membership((Change(ChangeOp.REMOVE, node_id),))

    async def change_membership(self, changes: Sequence[Change]) -> None:
        """Make several changes at once (more than one voter: through the joint
        configuration, left automatically). Returns once the change took effect on this
        node; waits up to CHANGE_WAIT_SECONDS_MAX for a change still under way."""
        changes = tuple(changes)
        with trio.move_on_after(CHANGE_WAIT_SECONDS_MAX):
            while True:
                self._check_running()
                if self._core.role is not Role.LEADER:
                    raise self.not_leader()
                slot = _Slot()
                await self._submit(_Conf(changes, slot))
                try:
                    await slot.wait()
                except ChangeInProgress:
                    await trio.sleep(self.config.tick_seconds)
                    continue
                # Took effect here; a joint change is finished when its leave did too.
                while self._core.conf.voters_outgoing:
                    self._check_running()
                    await trio.sleep(self.config.tick_seconds)
                return
        raise ChangeInProgress(
            f"another configuration change did not finish within {CHANGE_WAIT_SECONDS_MAX}s"
        )

    def statistics(self) -> dict[str, int]:
        driver = self._driver
        return {
            "pending_proposals": len(driver.proposals),
            "pending_reads": len(driver.reads),
            "applied_index": driver.applied,
            **driver.counters,
            **{f"transport_{k}": v for k, v in self._endpoint.statistics().items()},
        }

    # --- driver tasks ---------------------------------------------------------------------

    async def _call(self, fn: Callable[[], None]) -> None:
        self._check_running()
        slot = _Slot()
        await self._submit(_Call(fn, slot))
        await slot.wait()

    async def _submit(self, item: _Input) -> None:
        """Queue ``item`` for the raft loop; waits only while the queue is full (backpressure).
        No scheduling round trip otherwise: the caller's next await is its result."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._in_tx.send_nowait(item)
        except trio.WouldBlock:
            await self._in_tx.send(item)

    async def _submit_before(self, item: _Input, deadline: float) -> bool:
        """``_submit`` unless the queue stays full until ``deadline``: False then."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._in_tx.send_nowait(item)
        except trio.WouldBlock:
            with trio.move_on_at(deadline):
                await self._in_tx.send(item)
                return True
            return False
        return True

    def _check_running(self) -> None:
        if self._stopped:
            raise Stopped(f"node {self.node_id} has stopped")

    def _fail_unfinished_at(
        self, deadline: float, slots: list[_Slot], group: ProposalGroup | None = None,
    ) -> None:
        """The slots still unfilled at ``deadline`` get ``ProposalOutcomeUnknown`` then (the
        ticker's ``_expire_deadlines``); ``group``: theirs, which counts what is done."""
        heapq.heappush(self._deadlines, (deadline, next(self._deadline_order), slots, group))

    def _expire_deadlines(self, now: float) -> None:
        """Fail the proposals whose ``propose_batch`` deadline passed; drop finished ones."""
        deadlines = self._deadlines
        while deadlines:
            deadline, _, slots, group = deadlines[0]
            if deadline > now:
                if group.done if group is not None else all(slot.done for slot in slots):
                    heapq.heappop(deadlines)
                    continue
                return
            heapq.heappop(deadlines)
            for slot in slots:
                if not slot.done:  # a fresh error each: raises must not share a traceback
                    slot.set_error(ProposalOutcomeUnknown(
                        "no commit within the request's timeout; it may still be applied"))

    async def _ticker(self) -> None:
        """Wakes the raft loop once per tick (the loop counts the ticks due itself) and fails
        overdue proposals."""
        tick_seconds = self.config.tick_seconds
        wake_at = self._next_tick_at
        while True:
            await trio.sleep_until(wake_at)
            now = trio.current_time()
            # After a stall, the next wake-up is a tick from now, not a burst of the missed
            # ones: the loop delivers those from the clock at once.
            wake_at = max(wake_at + tick_seconds, now)
            if self._deadlines:
                self._expire_deadlines(now)
            await self._in_tx.send(_TICK)

    def _catch_up_ticks(self) -> None:
        """Deliver to the driver every tick due by now (the driver bounds a long stall's)."""
        now = trio.current_time()
        due_at = self._next_tick_at
        if now < due_at:
            return
        tick_seconds = self.config.tick_seconds
        count = int((now - due_at) // tick_seconds) + 1
        self._next_tick_at = due_at + count * tick_seconds
        self._driver.tick(count)

    async def _receiver(self) -> None:
        """Moves the endpoint's batches into the raft loop's queue (an endpoint without
        ``deliver_to``)."""
        contact = self._last_contact
        while True:
            batch = await self._endpoint.receive()
            now = trio.current_time()
            for message in batch:
                contact[message.src] = now
            await self._in_tx.send(batch)

    def _saw_role(self, role: Role, leader: NodeId, term: int, reason: str) -> None:
        log.info("node %d: %s in term %d, leader %s (%s)", self.node_id, role.value, term,
                 leader or "unknown", reason)
        hooks = self._hooks
        if hooks.on_role is not None:
            hooks.on_role(self.node_id, role, term)
        if hooks.on_observation is not None:
            hooks.on_observation(Observation("role", self.node_id, role, term, leader, reason))

    def _add_peers(self, conf: ConfState) -> None:
        """Tell the transport where the members of ``conf`` that were added later listen."""
        add_peer = getattr(self._endpoint, "add_peer", None)
        if add_peer is not None:
            for member, address in conf.addresses:
                if member != self.node_id and address:
                    add_peer(member, address)

    def _saw_conf(self, conf: ConfState) -> None:
        log.info("node %d: configuration voters=%s learners=%s%s", self.node_id,
                 list(conf.voters), list(conf.learners),
                 f" outgoing={list(conf.voters_outgoing)}" if conf.voters_outgoing else "")
        self._add_peers(conf)
        hooks = self._hooks
        if hooks.on_observation is not None:
            core = self._core
            hooks.on_observation(Observation(
                "configuration", self.node_id, core.role, core.term, core.leader, "", conf
            ))

    async def _raft_loop(self) -> None:
        limit = self.config.inputs_per_iteration_max
        receive_nowait = self._in_rx.receive_nowait
        handle = self._handle
        # The ticks due are delivered before anything but peers' messages (a read must meet a
        # lease that counted the time it waited), and before each pump. Messages that queued
        # during a stall go first: a heartbeat that arrived in time then resets a follower's
        # election timer before the stall's ticks could fire it (a spurious election), and a
        # leader's acknowledgements only ever date its lease from when their round was sent.
        catch_up = self._catch_up_ticks
        if self._thread and self.config.storage_thread:
            self._sync_worker = _SyncWorker(self._sync_finished)
        try:
            while True:
                item = await self._in_rx.receive()
                if item is self._open_proposal:
                    self._open_proposal = None  # taken: later calls queue a new one
                merged = False
                for _ in range(limit - 1):
                    try:
                        after = receive_nowait()
                    except trio.WouldBlock:
                        break
                    if after is self._open_proposal:
                        self._open_proposal = None
                    if type(item) is _Propose and type(after) is _Propose:
                        # Proposals queued one after another (one per RESP connection under
                        # load) enter the log as one batch: one driver and core call, not one
                        # each. Nothing else came between them, so the order is the same.
                        # (Copied once: the callers' own lists must not grow.)
                        if not merged:
                            item = _Propose(list(item.datas), list(item.slots))
                            merged = True
                        item.datas += after.datas
                        item.slots += after.slots
                        continue
                    if type(item) is not list:
                        catch_up()
                    handle(item)
                    item = after
                    merged = False
                if type(item) is not list:
                    catch_up()
                handle(item)
                catch_up()
                await self._pump()
        finally:
            if self._sync_worker is not None:
                self._sync_worker.close()

    async def _pump(self) -> None:
        driver = self._driver
        applied = driver.applied
        try:
            if self._sync_result is not None:
                result, self._sync_result = self._sync_result, None
                result.unwrap()  # a storage failure stops the node
                job = driver.persisting
                assert job is not None
                driver.persisted(job)
                self._report_sync()
            while True:
                job = driver.pump()
                if job is None:
                    if driver.snapshot_task is not None and not self._thread:
                        # A storage that never blocks (memory): write the snapshot inline, as
                        # its syncs are (a virtual-time run stays deterministic), and pump
                        # again so its commit goes out with a job now.
                        self._snapshot_inline(driver.snapshot_task)
                        continue
                    break
                if self._thread and (job.after_sends or self._sync_worker is None):
                    # Let the transport put this Ready's appends on the wire first, so the
                    # followers' fsyncs overlap ours (a waking sync thread would take the GIL
                    # from the sends otherwise).
                    await trio.lowlevel.checkpoint()
                run = self._job_runner(job)
                if self._sync_worker is not None:
                    self._sync_worker.submit(run)
                    break
                run()
                driver.persisted(job)
                self._report_sync()
            task = driver.snapshot_task
            if task is not None and self._nursery is not None:
                # Written on a worker thread while the loop goes on (prepare_snapshot took a
                # consistent copy already).
                driver.snapshot_task = None
                self._nursery.start_soon(self._write_snapshot, task)
        finally:
            if driver.applied != applied:
                self._applied_changed.set()
                self._applied_changed = trio.Event()

    def _job_runner(self, job: PersistJob) -> Callable[[], None]:
        run = functools.partial(job.run, self._storage)
        if self._hooks.on_sync is None:
            return run

        def timed() -> None:  # in the sync thread; the loop reads the figure after it
            started = time.perf_counter()
            run()
            self._sync_seconds = time.perf_counter() - started

        return timed

    def _report_sync(self) -> None:
        seconds, self._sync_seconds = self._sync_seconds, None
        on_sync = self._hooks.on_sync
        if seconds is not None and on_sync is not None:
            on_sync(seconds)

    def _snapshot_inline(self, task: SnapshotTask) -> None:
        self._driver.snapshot_task = None
        try:
            task.run()
        except Exception as exc:
            self._driver.snapshot_failed(task, exc)
        else:
            self._driver.snapshot_written(task)

    async def _write_snapshot(self, task: SnapshotTask) -> None:
        """Write a snapshot off the event loop (the state machine captured a consistent copy
        when the driver made the task), then hand it back to the raft loop."""
        error: BaseException | None = None
        try:
            await trio.to_thread.run_sync(task.run, abandon_on_cancel=False)
        except Exception as exc:
            error = exc
        await self._in_tx.send(_SnapshotWritten(task, error))

    def _handle(self, item: _Input) -> None:
        driver = self._driver
        if isinstance(item, list):
            driver.step(item)
        elif isinstance(item, _Tick):
            pass  # a wake-up: the loop delivered the ticks due (_catch_up_ticks)
        elif isinstance(item, _Propose):
            driver.propose(item.datas, item.slots)
        elif isinstance(item, _Conf):
            driver.propose_conf_change(item.changes, item.slot)
        elif isinstance(item, _Read):
            item.request_id = driver.read(item.slot)
        elif isinstance(item, _SyncDone):
            pass  # _pump collects the result
        elif isinstance(item, _CancelRead):
            driver.cancel_read(item.read.request_id)
        elif isinstance(item, _SnapshotWritten):
            if item.error is None:
                driver.snapshot_written(item.task)
            else:
                driver.snapshot_failed(item.task, item.error)
        else:
            try:
                item.fn()
            except RaftError as exc:
                item.slot.set_error(exc)
            else:
                item.slot.set_value(None)

    def _sync_finished(self, result: outcome.Outcome[None]) -> None:
        """Runs in the Trio thread (``run_sync_soon``) when the worker is done: wake the raft
        loop. If its queue is full it is busy anyway and finds the result after that batch."""
        self._sync_result = result
        with contextlib.suppress(trio.WouldBlock):
            self._in_tx.send_nowait(_SYNC_DONE)

    def _sync_deferred_hard_state(self) -> None:
        """Leave the latest commit index durable too. Called once every task has stopped, so
        no other storage call can be running."""
        job = self._driver.final_job()
        if job is None or job.hard_state is None:
            return
        try:
            job.run(self._storage)
        except StorageError as exc:
            # Not a loss: entries up to it are durable on a quorum; a restart relearns it.
            log.warning("node %d: final commit index %d not made durable: %s",
                        self.node_id, job.hard_state.commit, exc)

    def _stop(self) -> None:
        self._stopped = True
        if self._driver.stopped is None:
            self._driver.stop(Stopped(f"node {self.node_id} has stopped"))
        self._applied_changed.set()


def _share_identity(node_id: NodeId, storage: Any, transport: Any) -> None:
    """A storage whose data directory has an identity (``WalStorage``) and a transport that
    checks its peers' (``TcpTransport``): the node's hellos carry its data directory's id, and
    a peer whose data directory is not the one it knew is refused (``raftlib.identity``)."""
    data_identity = getattr(storage, "data_identity", None)
    use_identity = getattr(transport, "use_identity", None)
    if callable(data_identity) and callable(use_identity):
        use_identity(node_id, data_identity())


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
    waiting get ``Stopped``. The storage is closed on the way out. A node whose committed log
    contradicts its leader's stops with ``raftlib.errors.Diverged`` (raised out of the block).
    """
    if not isinstance(config, NodeConfig):
        raise ConfigError(f"config must be a NodeConfig, got {type(config).__name__}")
    recovered = recover(storage, state_machine)
    if recovered.snapshot is not None and hooks is not None and hooks.on_restore is not None:
        hooks.on_restore(config.node_id, recovered.snapshot.index)
    core = RaftCore(
        config.core,
        rng if rng is not None else random.Random(config.seed),
        hard_state=recovered.hard_state,
        entries=recovered.entries,
        snapshot=recovered.snapshot,
    )
    try:
        _share_identity(config.node_id, storage, transport)
        async with transport.open(config.node_id) as endpoint:
            node = Node(config, core, storage, endpoint, state_machine, hooks)
            try:
                async with trio.open_nursery() as nursery:
                    node._nursery = nursery
                    # The configuration recovered from disk (a snapshot's) may name members
                    # added after this node's --peers: the transport must reach them too.
                    node._add_peers(core.conf)
                    nursery.start_soon(node._raft_loop)
                    deliver_to = getattr(endpoint, "deliver_to", None)
                    if callable(deliver_to):
                        deliver_to(_Inbound(node))  # no task of ours between the two
                    else:
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
