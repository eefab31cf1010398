"""SimNode: a real ``RaftCore`` on simulated storage and network, driven like raftlib.node.

This driver honours the Ready contract exactly as the production Trio driver does
(``raftlib/node.py``):

1. persist hard state and entries to ``MemoryStorage``; the ``sync()`` completes after a
   simulated fsync latency, during which the node is busy and queues its inputs (so a crash in
   that window loses or tears the unsynced write, and inputs batch up: group commit);
2. only then send the messages;
3. apply the committed entries to the state machine and answer their proposers (a proposal
   is refused as definitely not applied only when another entry commits at its index: one a
   newer leader merely truncated from this node's log may still commit elsewhere);
4. ``advance``.

The object under test is ``raftlib.kv.KvStateMachine``: the node is also the KV service, so it
wraps each client write into ``Request(session, seq, now_ms, op)`` (``now_ms`` from its own
clock, as ``raftlib.service`` stamps the leader's time) and a session open into
``OpenSession``. ReadIndex reads are served once the applied index reaches their read index,
with ``KvStateMachine.get``. Crash drops the
core, the inputs in flight and the unsynced writes; restart rebuilds the core from
``storage.load()`` and replays the log into a fresh state machine (through the first Ready's
``committed``). Pause stops all processing: messages and requests queue, ticks are lost.

Methods are small on purpose: the bug zoo of the next issue patches them from the harness side.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from harness.sim.loop import EventLoop
from harness.sim.network import SimNetwork
from harness.sim.params import SimParams
from raftlib.core.config import CoreConfig
from raftlib.core.raft import RaftCore
from raftlib.core.types import Entry, EntryKind, Message, NodeId, Ready, Role
from raftlib.errors import NotLeader, ProposalDropped, ProposalQueueFull
from raftlib.invariants import Observer
from raftlib.kv.commands import NO_SESSION, Op, OpenSession, Request, encode_command
from raftlib.kv.machine import KvStateMachine
from raftlib.storage.memory import MemoryStorage


class NodeState(enum.Enum):
    UP = "up"
    PAUSED = "paused"
    DOWN = "down"


class ReplyKind(enum.Enum):
    OK = "ok"
    NOT_LEADER = "not-leader"  # definite: the command never entered a log here
    UNAVAILABLE = "unavailable"  # connection refused: the node is down
    REJECTED = "rejected"  # definite: dropped by a new leader, or backpressure
    LOST = "lost"  # the node crashed holding the request: outcome unknown


class RequestKind(enum.Enum):
    OPEN = "open"  # SESSION.OPEN: a log entry whose result is the new session id
    WRITE = "write"  # a KV op, exactly once within (session, seq)
    READ = "read"  # GET through ReadIndex


@attrs.frozen
class Reply:
    op: int  # the client's operation number ...
    attempt: int  # ... and which of its attempts this answers
    kind: ReplyKind
    value: Any = None  # the state machine's result, or the raw bytes a read saw
    leader: NodeId = 0
    command: bytes | None = None  # the log command whose application answered a write


class ReplyTarget(Protocol):
    def on_reply(self, reply: Reply) -> None: ...


@attrs.define
class ClientRequest:
    client: ReplyTarget
    op: int
    attempt: int
    kind: RequestKind
    write: Op | None = None  # the KV op of a write
    key: bytes = b""  # the key of a read
    session: int = NO_SESSION
    seq: int = 0


_MSGS, _REQUEST, _TICK = 0, 1, 2

EventLog = Callable[[NodeId, str], None]


class SimNode:
    def __init__(
        self,
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        *,
        loop: EventLoop,
        network: SimNetwork,
        params: SimParams,
        observer: Observer,
        log: EventLog,
        seed: int,
        core_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = node_id
        # core_settings: CoreConfig fields the run sets (RunOptions.core_settings()).
        self._config = CoreConfig(
            node_id=node_id,
            voters=voters,
            election_timeout_ticks_min=params.election_timeout_ticks_min,
            election_timeout_ticks_max=params.election_timeout_ticks_max,
            heartbeat_interval_ticks=params.heartbeat_interval_ticks,
            **(core_settings or {}),
        )
        self._loop = loop
        self._network = network
        self._params = params
        self._observer = observer
        self._log = log
        self._seed = seed
        # Disk latency and torn-write cut points: this node's own stream.
        self._disk_rng = random.Random(f"{seed}:disk:{node_id}")
        self.storage = MemoryStorage()
        self.state = NodeState.DOWN
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.sm = KvStateMachine()
        self.clock_rate = 1.0
        self.busy = False
        self._deferred: Ready | None = None  # an fsync that completed while paused
        self._inbox: deque[tuple[int, Any]] = deque()
        self._proposals: dict[int, tuple[int, ClientRequest]] = {}  # index -> (term, request)
        self._reads: dict[int, ClientRequest] = {}
        self._read_states: list[tuple[int, int]] = []
        self._next_read_id = 1
        self.applied = 0
        self.crashes = 0
        self.ticks = 0
        self.inbox_dropped = 0

    # --- lifecycle (the nemesis calls these) ------------------------------------------------

    def start(self) -> None:
        """Boot (or reboot) from what the storage holds."""
        if self.state is not NodeState.DOWN:
            raise AssertionError(f"node {self.id}: start while {self.state.value}")
        hard_state, entries = self.storage.load()
        self.incarnation += 1
        rng = random.Random(f"{self._seed}:core:{self.id}:{self.incarnation}")
        self.core = RaftCore(self._config, rng, hard_state=hard_state, entries=entries)
        self.sm = KvStateMachine()
        self.applied = 0
        self.state = NodeState.UP
        self._observer.saw_restart(self.id)
        self._log(self.id, f"start: term={hard_state.term} commit={hard_state.commit} "
                           f"log={len(entries)} entries")
        # A random phase, so nodes do not tick in lockstep.
        phase = 1 + int(self._disk_rng.random() * self._params.tick_us)
        self._loop.after(phase, self._tick, self.incarnation)
        self._drain()

    def restart(self) -> None:
        """The end of a kill window: boot again if still down (two windows may overlap)."""
        if self.state is NodeState.DOWN:
            self.start()

    def crash(self, *, lose_unsynced: bool, torn: bool) -> None:
        if self.state is NodeState.DOWN:
            return
        self.state = NodeState.DOWN
        self.incarnation += 1
        self.crashes += 1
        self.core = None
        self.busy = False
        self._deferred = None
        unsynced = self.storage.statistics().unsynced_appends
        self.storage.crash(
            lose_unsynced=lose_unsynced, torn_write=torn and lose_unsynced, rng=self._disk_rng
        )
        how = "power loss" if lose_unsynced else "process crash"
        self._log(self.id, f"crash ({how}{', torn write' if torn else ''}; "
                           f"{unsynced} unsynced appends)")
        # Every connection to this node breaks: its clients learn the outcome is unknown.
        for _term, request in self._proposals.values():
            self._reply(request, ReplyKind.LOST)
        for request in self._reads.values():
            self._reply(request, ReplyKind.LOST)
        for tag, item in self._inbox:
            if tag == _REQUEST:
                self._reply(item, ReplyKind.LOST)
        self._proposals.clear()
        self._reads.clear()
        self._read_states.clear()
        self._inbox.clear()

    def pause(self) -> None:
        if self.state is NodeState.UP:
            self.state = NodeState.PAUSED
            self._log(self.id, "pause")

    def resume(self) -> None:
        if self.state is not NodeState.PAUSED:
            return
        self.state = NodeState.UP
        self._log(self.id, "resume")
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self._complete_persist(deferred)
        else:
            self._run_inbox()

    # --- inputs -----------------------------------------------------------------------------

    def receive(self, msgs: Sequence[Message]) -> None:
        if self.state is NodeState.DOWN:
            self._network.counters["dropped_down"] += len(msgs)
            return
        if self.busy or self.state is NodeState.PAUSED:
            self._enqueue(_MSGS, msgs)
            return
        core = self.core
        assert core is not None
        for msg in msgs:
            core.step(msg)
        self._drain()

    def request(self, request: ClientRequest) -> None:
        if self.state is NodeState.DOWN:
            self._reply(request, ReplyKind.UNAVAILABLE)
            return
        if self.busy or self.state is NodeState.PAUSED:
            self._enqueue(_REQUEST, request)
            return
        self._handle_request(request)
        self._drain()

    def _tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return  # a tick of an earlier life of this node
        self._loop.after(max(1, round(self._params.tick_us / self.clock_rate)), self._tick,
                         incarnation)
        if self.state is NodeState.PAUSED:
            return  # a stopped process's timers fire once it runs again: ticks are lost
        self.ticks += 1
        if self.busy:
            self._enqueue(_TICK, None)
            return
        core = self.core
        assert core is not None
        core.tick()
        self._drain()

    def _enqueue(self, tag: int, item: Any) -> None:
        if len(self._inbox) >= self._params.inbox_items_max:
            self.inbox_dropped += 1
            if tag == _REQUEST:
                self._reply(item, ReplyKind.REJECTED)
            return
        self._inbox.append((tag, item))

    def _run_inbox(self) -> None:
        """Handle what queued up while busy or paused, in batches, then the Readies."""
        inbox = self._inbox
        limit = self._params.inputs_per_iteration_max
        while inbox and not self.busy and self.state is NodeState.UP:
            core = self.core
            assert core is not None
            for _ in range(min(limit, len(inbox))):
                tag, item = inbox.popleft()
                if tag == _MSGS:
                    for msg in item:
                        core.step(msg)
                elif tag == _REQUEST:
                    self._handle_request(item)
                else:
                    core.tick()
            self._drain()
        if not inbox and not self.busy and self.state is NodeState.UP:
            self._drain()

    def _handle_request(self, request: ClientRequest) -> None:
        core = self.core
        assert core is not None
        if request.kind is RequestKind.READ:
            self._handle_read(request)
            return
        if core.role is not Role.LEADER:
            self._reply(request, ReplyKind.NOT_LEADER, leader=core.leader)
            return
        if len(self._proposals) >= self._params.pending_requests_max:
            self._reply(request, ReplyKind.REJECTED)
            return
        try:
            index = core.propose(self._command(request))
        except NotLeader as exc:
            self._reply(request, ReplyKind.NOT_LEADER, leader=exc.leader_id)
            return
        except (ProposalDropped, ProposalQueueFull):
            self._reply(request, ReplyKind.REJECTED)
            return
        self._proposals[index] = (core.term, request)

    def _command(self, request: ClientRequest) -> bytes:
        """The log command of a write or session open, stamped with this leader's clock."""
        now_ms = self._loop.now_us // 1000
        if request.kind is RequestKind.OPEN:
            return encode_command(OpenSession(now_ms))
        assert request.write is not None
        return encode_command(Request(request.session, request.seq, now_ms, request.write))

    def _handle_read(self, request: ClientRequest) -> None:
        """A linearizable read: ReadIndex (thesis §6.4), forwarded by a follower."""
        core = self.core
        assert core is not None
        if len(self._reads) >= self._params.pending_requests_max:
            self._reply(request, ReplyKind.REJECTED)
            return
        request_id = self._next_read_id
        self._next_read_id += 1
        self._reads[request_id] = request
        core.read_index(request_id)

    # --- the Ready contract -----------------------------------------------------------------

    def _drain(self) -> None:
        core = self.core
        if core is None or self.busy or self.state is not NodeState.UP:
            return
        for _ in range(self._params.readies_per_drain_max):
            if not core.has_ready():
                return
            rd = core.ready()
            if rd.soft_state is not None:
                self._saw_role(rd.soft_state.role, rd.soft_state.leader, core.term)
            if rd.hard_state is not None or rd.entries:
                self._begin_persist(rd)
                return
            self._finish(rd)
        raise AssertionError(f"node {self.id}: more than {self._params.readies_per_drain_max} "
                             "Readies in one drain")

    def _saw_role(self, role: Role, leader: NodeId, term: int) -> None:
        if role is Role.LEADER:
            self._observer.saw_leader(self.id, term)
        self._log(self.id, f"role {role.value} term={term} leader={leader}")

    def _begin_persist(self, rd: Ready) -> None:
        """Step 1: write now (it reaches the OS), fsync completes after the disk latency."""
        storage = self.storage
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        self.busy = True
        params = self._params
        latency = params.fsync_us_min + int(
            self._disk_rng.random() * (params.fsync_us_max - params.fsync_us_min + 1)
        )
        self._loop.after(latency, self._fsync_done, (self.incarnation, rd))

    def _fsync_done(self, item: tuple[int, Ready]) -> None:
        incarnation, rd = item
        if incarnation != self.incarnation:
            return  # the node crashed before its fsync returned
        if self.state is NodeState.PAUSED:
            self._deferred = rd
            return
        self._complete_persist(rd)

    def _complete_persist(self, rd: Ready) -> None:
        self.storage.sync()
        self.busy = False
        self._finish(rd)
        self._run_inbox()

    def _finish(self, rd: Ready) -> None:
        """Steps 2-4 of the contract, in the production driver's order."""
        if rd.messages:
            self._network.send(self.id, rd.messages)
        if rd.committed:
            self._apply(rd.committed)
        if rd.dropped_reads:
            leader = self.core.leader if self.core is not None else 0
            for request_id in rd.dropped_reads:
                request = self._reads.pop(request_id, None)
                if request is not None:
                    self._reply(request, ReplyKind.NOT_LEADER, leader=leader)
        for rs in rd.read_states:
            self._read_states.append((rs.index, rs.request_id))
        if self._read_states:
            self._serve_reads()
        core = self.core
        assert core is not None
        core.advance(rd)

    def _apply(self, entries: Sequence[Entry]) -> None:
        self._observer.saw_committed(entries)
        self.apply_in_order(entries)

    def apply_in_order(self, entries: Sequence[Entry]) -> None:
        """Apply entries (the next ones after ``applied``) and answer their proposers. Says
        nothing about whether they are committed: ``_apply`` does, for committed ones (the bug
        zoo's apply-before-commit calls this directly)."""
        self._observer.saw_applied(self.id, entries)
        for entry in entries:
            if entry.index != self.applied + 1:
                raise AssertionError(
                    f"node {self.id}: apply out of order: applied={self.applied}, "
                    f"next entry {entry.index}"
                )
            result = None
            if entry.kind is EntryKind.NORMAL:
                result = self.sm.apply(entry.data)
            self.applied = entry.index
            pending = self._proposals.pop(entry.index, None)
            if pending is not None:
                term, request = pending
                if term == entry.term and entry.kind is EntryKind.NORMAL:
                    self._reply(request, ReplyKind.OK, value=result, command=entry.data)
                else:
                    self._reply(request, ReplyKind.REJECTED)

    def _serve_reads(self) -> None:
        keep: list[tuple[int, int]] = []
        for index, request_id in self._read_states:
            if index <= self.applied:
                request = self._reads.pop(request_id, None)
                if request is not None:
                    self._reply(request, ReplyKind.OK, value=self.sm.get(request.key))
            else:
                keep.append((index, request_id))
        self._read_states = keep

    def _reply(
        self, request: ClientRequest, kind: ReplyKind, *, value: Any = None, leader: NodeId = 0,
        command: bytes | None = None,
    ) -> None:
        reply = Reply(request.op, request.attempt, kind, value, leader, command)
        self._network.client_hop(request.client.on_reply, reply)

    # --- observation ----------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.core is not None and self.core.role is Role.LEADER

    def log_entries(self) -> list[Entry]:
        if self.core is not None:
            return self.core.log_entries()
        return self.storage.durable_state()[1]
