"""SimNode: the production driver (``raftlib.driver.Driver``) on simulated disk, network and time.

Everything between the core and the outside world that decides ordering -- what may be sent
before an fsync, what waits for it, pipelining, the deferred commit index, applying, answering
proposers, serving reads -- is the same ``Driver`` the Trio node runs. This module keeps only
what is simulation:

- the disk (``SimParams.disk``): ``MemoryStorage`` (the default: fast), or the production
  ``WalStorage`` over ``CrashFS``, the in-memory file system whose persistence model the storage
  crash-state explorer proves the WAL against ("wal": the same files, records and recovery as a
  real node, at about half the speed). Each ``PersistJob`` is written at once (it reaches the
  OS) and its fsync completes after a simulated latency; meanwhile the node goes on stepping inputs,
  as the Trio node's loop does while its sync thread works. A crash in that window loses or
  tears the unsynced write;
- the network, the clock (ticks at the node's clock rate) and the process: crash drops the
  core, the driver and the unsynced writes; restart rebuilds them from ``storage.load()``;
  pause stops all processing (messages and requests queue); on resume the node is told the
  ticks it missed, as the Trio node counts them from its clock (``Driver.tick``): after the
  messages that queued, before any request;
- the KV service around the state machine: each client write is wrapped into
  ``Request(session, seq, now_ms, op)`` and a session open into ``OpenSession``, ``now_ms``
  from production's leader clock (``raftlib.kv.leader_clock``, as ``raftlib.service`` stamps
  it) on this node's clock (the clock nemesis skews its rate); a leader whose clock cannot
  tell the time yet refuses the write (the service's ``-TRYAGAIN``); a read goes through the
  driver's ReadIndex and is answered with ``KvStateMachine.get`` once served.

Inputs that arrive at one instant are stepped together and pumped once (as the Trio loop
drains its queue before it pumps). Methods are small on purpose: the bug zoo patches them, and
the driver's, from the harness side.
"""

from __future__ import annotations

import copy
import enum
import functools
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from harness import commands
from harness.sim.durable import DurableLog
from harness.sim.loop import EventLoop
from harness.sim.network import SimNetwork
from harness.sim.params import SimParams
from raftlib.core import membership
from raftlib.core.config import CoreConfig
from raftlib.core.membership import Change
from raftlib.core.raft import RaftCore
from raftlib.core.types import Anomaly, AppendEntriesResponse, Entry, Message, NodeId, Role
from raftlib.driver import Driver, DriverHooks, PersistJob, recover
from raftlib.errors import Diverged, NotLeader, ProposalDropped, ProposalQueueFull
from raftlib.invariants import Observer
from raftlib.kv.commands import NO_SESSION, Op, OpenSession, Request, encode_command
from raftlib.kv.leader_clock import LeaderClock, LeaderClockNotReady
from raftlib.kv.machine import KvStateMachine
from raftlib.snapshots import SnapshotPolicy
from raftlib.storage.fs import CrashFS
from raftlib.storage.memory import MemoryStorage
from raftlib.storage.wal import WalStorage


class NodeState(enum.Enum):
    UP = "up"
    PAUSED = "paused"
    DOWN = "down"


# Compared on every input (a module global is one lookup, ``NodeState.UP`` two).
_UP, _PAUSED, _DOWN = NodeState.UP, NodeState.PAUSED, NodeState.DOWN


class ReplyKind(enum.Enum):
    OK = "ok"
    NOT_LEADER = "not-leader"  # definite: the command never entered a log here
    UNAVAILABLE = "unavailable"  # connection refused: the node is down
    # definite: dropped by a new leader, backpressure, or a leader clock not ready (TRYAGAIN)
    REJECTED = "rejected"
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
    workload: str = ""  # what a read reads (harness.commands.read_state): GET or SMEMBERS
    session: int = NO_SESSION
    seq: int = 0


_MSGS, _REQUEST, _TICK = 0, 1, 2
# Where a simulated node keeps its data, on its own CrashFS; segments small enough that
# compaction deletes whole ones within a run.
DATA_DIR = "/data"
SEGMENT_BYTES_MAX = 64 << 10

EventLog = Callable[[NodeId, str], None]


class _Crashed(Exception):
    """The node crashed holding a request: its outcome is unknown to the client."""


class _WriteWaiter:
    """Turns the driver's answer to a write into the client's reply."""

    __slots__ = ("command", "node", "request")

    def __init__(self, node: SimNode, request: ClientRequest, command: bytes) -> None:
        self.node = node
        self.request = request
        self.command = command

    def set_value(self, value: Any) -> None:
        self.node._reply(self.request, ReplyKind.OK, value=value, command=self.command)

    def set_error(self, error: BaseException) -> None:
        self.node._reply_error(self.request, error)


class _ReadWaiter:
    """Answers a read from the state machine at the moment the driver serves it."""

    __slots__ = ("node", "request")

    def __init__(self, node: SimNode, request: ClientRequest) -> None:
        self.node = node
        self.request = request

    def set_value(self, value: Any) -> None:
        node = self.node
        request = self.request
        node._reply(request, ReplyKind.OK,
                    value=commands.read_state(node.sm, request.key, request.workload))

    def set_error(self, error: BaseException) -> None:
        self.node._reply_error(self.request, error)


class _ChangeWaiter:
    """Reports the outcome of a membership change this node proposed."""

    __slots__ = ("done",)

    def __init__(self, done: Callable[[BaseException | None], None]) -> None:
        self.done = done

    def set_value(self, value: Any) -> None:
        self.done(None)

    def set_error(self, error: BaseException) -> None:
        self.done(error)


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
        durable_logs: dict[NodeId, DurableLog],
        log: EventLog,
        seed: int,
        core_settings: Mapping[str, Any] | None = None,
        snapshot_settings: Mapping[str, int] | None = None,
    ) -> None:
        self.id = node_id
        self._snapshot_policy = SnapshotPolicy(**(snapshot_settings or {}))
        # The machine's core settings, then the run's (RunOptions.core), over CoreConfig's.
        self.config = CoreConfig(
            node_id=node_id, voters=voters, **{**params.core, **(core_settings or {})}
        )
        self._loop = loop
        self._network = network
        self._params = params
        self._observer = observer
        self._log = log
        self._seed = seed
        # Disk latency and torn-write cut points: this node's own stream.
        self._disk_rng = random.Random(f"{seed}:disk:{node_id}")
        # The node's disk survives its crashes. "wal": a CrashFS that each boot opens afresh
        # (what a power loss keeps is its model); "memory": one MemoryStorage for all lives.
        self.fs = CrashFS()
        self._memory = MemoryStorage() if params.disk == "memory" else None
        # What its disk holds for certain (harness.sim.durable), which every node's commit
        # check reads; the term this node last led, and the commit index it last checked.
        self.durable = durable_logs[node_id] = DurableLog()
        self._durable_logs = durable_logs
        self._led_term = -1
        self._commit_checked = 0
        self.storage: WalStorage | MemoryStorage | None = self._memory
        self.state = NodeState.DOWN
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.driver: Driver | None = None
        self.sm = KvStateMachine()
        self._clock_rate = 1.0
        # This node's clock (microseconds): it read _clock_base_us at simulated time
        # _clock_since_us, and runs at clock_rate since (the clock nemesis changes the rate).
        self._clock_base_us = 0
        self._clock_since_us = 0
        self._tick_interval_us = 1  # between ticks, in simulated microseconds (set just below)
        self.clock_rate = 1.0
        # The time a leader stamps into writes (production's, ``raftlib.kv.leader_clock``),
        # on this node's clock: one per life, as a process has.
        self._leader_clock: LeaderClock | None = None
        self._deferred: PersistJob | None = None  # an fsync that completed while paused
        self._missed_ticks = 0  # ticks that fell while paused: delivered at resume
        self._inbox: deque[tuple[int, Any]] = deque()
        self._pump_scheduled = False
        # (time, place, incarnation): the place in the event order held for a pump that the
        # driver had no work for (``_pump_soon``).
        self._pump_place: tuple[int, int, int] | None = None
        self.crashes = 0
        self.ticks = 0
        self.inbox_dropped = 0
        # Counters of earlier lives (a crash must not hide what a node saw before it).
        self.past_invalid_messages = 0
        self.past_safety_anomalies = 0
        # The drivers' counters summed over every life of this node.
        self.driver_counters: dict[str, int] = {}
        # Set when the driver stopped this node on a fatal anomaly: it stays down.
        self.diverged: str | None = None
        # Set when the membership nemesis wiped its disk and removed it for good: it stays
        # down (its id is never reused, as an operator must not reuse it).
        self.retired = False

    @property
    def clock_rate(self) -> float:
        """How fast this node's clock runs against real time (the clock nemesis skews it)."""
        return self._clock_rate

    @clock_rate.setter
    def clock_rate(self, rate: float) -> None:
        now = self._loop.now_us
        self._clock_base_us = self._clock_us(now)
        self._clock_since_us = now
        self._clock_rate = rate
        self._tick_interval_us = max(1, round(self._params.tick_us / rate))

    def _clock_us(self, now_us: int) -> int:
        return self._clock_base_us + round((now_us - self._clock_since_us) * self._clock_rate)

    def clock_seconds(self) -> float:
        """What this node's clock reads now: simulated time at its clock's rate (its wall
        clock and its monotonic clock alike: the simulator steps neither)."""
        return self._clock_us(self._loop.now_us) / 1_000_000

    @property
    def applied(self) -> int:
        return self.driver.applied if self.driver is not None else 0

    # --- lifecycle (the nemesis calls these) ------------------------------------------------

    def start(self) -> None:
        """Boot (or reboot) from what the storage holds."""
        if self.state is not NodeState.DOWN:
            raise AssertionError(f"node {self.id}: start while {self.state.value}")
        if self.diverged is not None or self.retired:
            return  # stopped on divergence (an operator must look at it first), or retired
        self.sm = KvStateMachine()
        self.storage = self._open_disk()  # a new process opens its data directory afresh
        recovered = recover(self.storage, self.sm)
        hard_state, entries = recovered.hard_state, recovered.entries
        self.durable.booted(recovered.snapshot, entries)
        if recovered.snapshot is not None:
            self._observer.saw_snapshot(self.id, recovered.snapshot.index)
        self.incarnation += 1
        rng = random.Random(f"{self._seed}:core:{self.id}:{self.incarnation}")
        self.core = RaftCore(self.config, rng, hard_state=hard_state, entries=entries,
                             snapshot=recovered.snapshot)
        storage = self.storage
        assert storage is not None
        self.driver = Driver(
            self.core,
            self.sm,
            # Straight to the network (no method of this node in between: one call less
            # for every batch sent).
            functools.partial(self._network.send, self.id),
            pending_requests_max=self._params.pending_requests_max,
            hooks=DriverHooks(on_apply=self._saw_apply, on_role=self._saw_role,
                              on_anomaly=self._saw_anomaly, on_restore=self._saw_restore),
            storage=storage if hasattr(storage, "create_snapshot") else None,
            snapshot_policy=self._snapshot_policy,
        )
        core, driver, sm = self.core, self.driver, self.sm
        self._leader_clock = LeaderClock(
            lambda: core.term, lambda: sm.sessions.clock_ms,
            lambda: driver.applied_every_command,
            wall=self.clock_seconds, monotonic=self.clock_seconds)
        self.state = NodeState.UP
        self._missed_ticks = 0  # an earlier life's pause is not this one's
        self._pump_scheduled = False  # one scheduled by an earlier life never runs
        self._observer.saw_restart(self.id)
        base = recovered.snapshot.index if recovered.snapshot is not None else 0
        self._log(self.id, f"start: term={hard_state.term} commit={hard_state.commit} "
                           f"snapshot={base} log={len(entries)} entries")
        # A random phase, so nodes do not tick in lockstep.
        phase = 1 + int(self._disk_rng.random() * self._params.tick_us)
        self._loop.after(phase, self._tick, self.incarnation)
        self._pump()

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
        self._forget_core()
        driver, self.driver = self.driver, None
        self._deferred = None
        # The process dies with whatever the WAL buffered; a power loss also drops what the
        # disk had not made durable (the last write may be torn).
        how = "power loss" if lose_unsynced else "process crash"
        if self._memory is not None:
            unsynced = self._memory.statistics().unsynced_appends
            self._memory.crash(lose_unsynced=lose_unsynced, torn_write=torn and lose_unsynced,
                               rng=self._disk_rng)
            self._log(self.id, f"crash ({how}{', torn write' if torn else ''}; "
                               f"{unsynced} unsynced appends)")
        else:
            self.storage = None
            self.fs.crash(self._disk_rng, "power" if lose_unsynced else "process")
            self._log(self.id, f"crash ({how}, on the WAL over CrashFS)")
        # Every connection to this node breaks: its clients learn the outcome is unknown.
        if driver is not None:
            driver.stop(_Crashed())
        for tag, item in self._inbox:
            if tag == _REQUEST:
                self._reply(item, ReplyKind.LOST)
        self._inbox.clear()

    def retire(self) -> None:
        """Its disk is lost and it leaves the cluster for good (the membership nemesis)."""
        self.crash(lose_unsynced=True, torn=False)
        self.crashes -= 1  # counted as a membership change, not a crash
        self.retired = True
        self.durable.lost()
        self._log(self.id, "retired: disk lost, never restarted under this id")

    def propose_change(
        self, changes: Sequence[Change], done: Callable[[BaseException | None], None]
    ) -> None:
        """Propose a membership change here (the leader); ``done`` gets None once it took
        effect on this node, or the error."""
        driver = self.driver
        if driver is None or self.state is not NodeState.UP:
            done(NotLeader())
            return
        self._check_commit()  # (a commit before the new entry is judged by the one before)
        driver.propose_conf_change(changes, _ChangeWaiter(done))
        self._schedule_pump()

    def _forget_core(self) -> None:
        self._bank_counters()
        core = self.core
        if core is not None:
            status = core.status()
            self.past_invalid_messages += status.invalid_messages
            self.past_safety_anomalies += status.safety_anomalies
        self.core = None

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
        self._run_inbox()

    # --- inputs -----------------------------------------------------------------------------

    def receive(self, msgs: Sequence[Message]) -> None:
        state = self.state
        if state is not _UP:
            if state is _DOWN:
                self._network.count_dropped_down(len(msgs))
            else:
                self._enqueue(_MSGS, msgs)
            return
        driver = self.driver
        assert driver is not None
        self._step(driver, msgs)
        for msg in msgs:
            if type(msg) is not AppendEntriesResponse:
                # It asks for an answer (or brings news): pump without asking the driver
                # first (asking would almost always say yes).
                self._schedule_pump()
                return
        # Acknowledgements alone: a leader mostly has nothing to send for them.
        self._pump_soon(driver)

    def request(self, request: ClientRequest) -> None:
        if self.state is NodeState.DOWN:
            self._reply(request, ReplyKind.UNAVAILABLE)
            return
        if self.state is NodeState.PAUSED:
            self._enqueue(_REQUEST, request)
            return
        self._handle_request(request)
        self._schedule_pump()

    def _tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return  # a tick of an earlier life of this node
        self._loop.after(self._tick_interval_us, self._tick, incarnation)
        if self.state is _PAUSED:
            self._missed_ticks += 1  # counted when it runs again (``resume``)
            return
        self.ticks += 1
        driver = self.driver
        assert driver is not None
        driver.tick()
        self._pump_soon(driver)

    def _enqueue(self, tag: int, item: Any) -> None:
        if len(self._inbox) >= self._params.inbox_items_max:
            self.inbox_dropped += 1
            if tag == _REQUEST:
                self._reply(item, ReplyKind.REJECTED)
            return
        self._inbox.append((tag, item))

    def _step(self, driver: Driver, msgs: Sequence[Message]) -> None:
        """Step a batch of messages, then check the commits it made."""
        core = self.core
        if (core is not None and core.role is Role.LEADER and len(msgs) > 1
                and any(msg.term > core.term for msg in msgs)):
            # A batch that may depose this leader (a higher term in it) may also, before
            # that, carry the acknowledgements that move its commit index: checked after
            # each message, or a commit made just before the step-down would go unchecked
            # (the check only judges a leader's commits). The driver steps a batch one
            # message after another, so this changes nothing else.
            for msg in msgs:
                driver.step((msg,))
                self._check_commit()
        else:
            driver.step(msgs)
            self._check_commit()

    def _run_inbox(self) -> None:
        """Handle what queued up while paused, in batches, pumping after each."""
        inbox = self._inbox
        limit = self._params.inputs_per_iteration_max
        while inbox and self.state is NodeState.UP:
            driver = self.driver
            assert driver is not None
            for _ in range(min(limit, len(inbox))):
                tag, item = inbox.popleft()
                if tag == _MSGS:
                    self._step(driver, item)
                    continue
                self._deliver_missed_ticks()
                if tag == _REQUEST:
                    self._handle_request(item)
                else:
                    driver.tick()
            self._deliver_missed_ticks()
            self._pump()
        self._deliver_missed_ticks()
        self._pump()

    def _deliver_missed_ticks(self) -> None:
        """What a stopped process's clock says when it runs again: the ticks it missed, as the
        Trio node delivers them (``raftlib.node``): after the peers' messages that queued, before
        any request (a read must not meet a lease that stood still) and before each pump."""
        missed, self._missed_ticks = self._missed_ticks, 0
        if missed and self.state is _UP:
            self.ticks += missed
            driver = self.driver
            assert driver is not None
            driver.tick(missed)

    def _handle_request(self, request: ClientRequest) -> None:
        driver = self.driver
        assert driver is not None
        if request.kind is RequestKind.READ:
            self._handle_read(request)
            return
        core = driver.core
        if core.role is not Role.LEADER:
            self._reply(request, ReplyKind.NOT_LEADER, leader=core.leader)
            return
        command = self._command(request)
        if command is None:
            # The service's -TRYAGAIN: nothing was proposed (a definite failure).
            self._reply(request, ReplyKind.REJECTED)
            return
        driver.propose([command], [_WriteWaiter(self, request, command)])

    def _command(self, request: ClientRequest) -> bytes | None:
        """The log command of a write or session open, stamped with this leader's clock
        (``raftlib.kv.leader_clock``, as ``raftlib.service`` stamps it); None while that clock
        cannot tell the time yet (``LeaderClockNotReady``)."""
        assert self._leader_clock is not None, "a node that is up has its leader clock"
        try:
            now_ms = self._leader_clock.now_ms()
        except LeaderClockNotReady:
            return None
        if request.kind is RequestKind.OPEN:
            return encode_command(OpenSession(now_ms))
        assert request.write is not None
        return encode_command(Request(request.session, request.seq, now_ms, request.write))

    def _handle_read(self, request: ClientRequest) -> None:
        """A linearizable read: the driver's ReadIndex (thesis §6.4), forwarded by a follower."""
        driver = self.driver
        assert driver is not None
        driver.read(_ReadWaiter(self, request))

    # --- the driver -------------------------------------------------------------------------

    def _schedule_pump(self) -> None:
        """Pump once after every input of this instant (the Trio loop drains its queue before
        it pumps: the same batching)."""
        if self._pump_scheduled:
            return
        self._pump_scheduled = True
        loop = self._loop
        place = self._pump_place
        if place is not None:
            self._pump_place = None
            time_us, seq, incarnation = place
            if incarnation == self.incarnation and time_us == loop.now_us \
                    and loop.reserved_open(time_us, seq):
                # An earlier input of this instant held the pump's place: it runs there.
                loop.at_reserved(seq, self._pump, incarnation)
                return
        loop.after(0, self._pump, self.incarnation)

    def _pump_soon(self, driver: Driver) -> None:
        """``_schedule_pump`` after an input, except when the driver has no work now: then
        the pump would find nothing, so it only holds its place in the event order, which a
        later input of this instant takes (most ticks and acknowledgements need no pump, and
        the run stays event for event what it would be with every pump scheduled)."""
        if self._pump_scheduled:
            return
        if driver.has_work():
            self._schedule_pump()
            return
        loop = self._loop
        now = loop.now_us
        place = self._pump_place
        # (A place held at an earlier instant is passed: the time test first, no call.)
        if place is None or place[0] != now or place[2] != self.incarnation \
                or not loop.reserved_open(now, place[1]):
            self._pump_place = (now, loop.reserve(), self.incarnation)

    def _pump(self, incarnation: int | None = None) -> None:
        """Pump the driver (when up). With ``incarnation``: the pump ``_schedule_pump``
        scheduled, for that life of this node (an earlier life's does nothing). One method
        for both: the scheduled pump is the event run most often, and this saves it a call."""
        if incarnation is not None:
            if incarnation != self.incarnation:
                return
            self._pump_scheduled = False
        driver = self.driver
        if driver is None or self.state is not _UP:
            return
        try:
            job = driver.pump()
        except Diverged as exc:
            self._halt(str(exc))
            return
        if job is not None:
            self._begin_persist(job)
        task = driver.snapshot_task
        if task is not None:
            # Written at once: the simulated disk takes no time for it (its commit, with the
            # next job, does: it waits for that job's fsync).
            driver.snapshot_task = None
            task.run()
            driver.snapshot_written(task)
            self._schedule_pump()

    def _halt(self, reason: str) -> None:
        """The driver stopped this node: its committed log contradicts the leader's. It stays
        down (a real node exits with this error) and the run's safety check reports it."""
        self.diverged = reason
        self._log(self.id, f"stopped: {reason}")
        self.crash(lose_unsynced=False, torn=False)
        self.crashes -= 1  # not a fault the nemesis injected

    def _saw_role(self, role: Role, leader: NodeId, term: int, reason: str) -> None:
        if role is Role.LEADER:
            self._observer.saw_leader(self.id, term)
        elif role is Role.CANDIDATE or role is Role.PRE_CANDIDATE:
            core = self.core
            assert core is not None
            # What it applied is judged from the committed log (ground truth), what its log
            # brings beyond from the log itself: not from the configuration its core holds.
            self._observer.saw_campaign(
                self.id, term, core._apply_handed, core.config.voters,
                [membership.voters_of(conf) for conf in core._log_confs()])
        self._log(self.id, f"role {role.value} term={term} leader={leader} ({reason})")

    def _saw_restore(self, index: int) -> None:
        self._observer.saw_snapshot(self.id, index)
        self._log(self.id, f"installed the leader's snapshot at index {index}")

    def _saw_anomaly(self, anomaly: Anomaly) -> None:
        self._log(self.id, f"{'FATAL ' if anomaly.fatal else ''}anomaly: {anomaly.text}")

    def _saw_apply(self, entries: Sequence[Entry]) -> None:
        self._observer.saw_committed(entries)
        self._observer.saw_applied(self.id, entries)

    def _begin_persist(self, job: PersistJob) -> None:
        """Write now (it reaches the OS); the fsync completes after the disk latency."""
        assert self.storage is not None
        job.write(self.storage)
        self.durable.written(job)
        params = self._params
        latency = params.fsync_us_min + int(
            self._disk_rng.random() * (params.fsync_us_max - params.fsync_us_min + 1)
        )
        self._loop.after(latency, self._fsync_done, (self.incarnation, job))

    def _fsync_done(self, item: tuple[int, PersistJob]) -> None:
        incarnation, job = item
        if incarnation != self.incarnation:
            return  # the node crashed before its fsync returned
        if self.state is _PAUSED:
            self._deferred = job
            return
        self._complete_persist(job)
        self._pump()

    def _complete_persist(self, job: PersistJob) -> None:
        assert self.storage is not None
        self.storage.sync()
        self.durable.synced(job)
        driver = self.driver
        assert driver is not None
        driver.persisted(job)
        self._check_commit()

    def _check_commit(self) -> None:
        """Called after each input that can move a leader's commit index (a message, its own
        fsync): a commit this leader made must be on the disks of a majority of the voters it
        decides by (``Observer.saw_commit``; ``harness.sim.durable``). Only commits it made
        count: the index it had when its term began was its predecessors'."""
        core = self.core
        if core is None or core.role is not Role.LEADER:
            return
        commit = core.commit_index
        if core.term != self._led_term:
            self._led_term = core.term
            self._commit_checked = commit
            return
        if commit <= self._commit_checked:
            return
        self._commit_checked = commit
        term = core.term_at(commit)
        if term is None:
            return  # compacted already: checked when it was committed
        # The configuration the log brings last, as the correct core decides by (read from
        # the log's configuration entries, not from what the core decided with).
        confs = core._log_confs()
        conf = confs[-1] if confs else core.conf
        holders = [node for node, log in self._durable_logs.items() if log.holds(commit, term)]
        self._observer.saw_commit(self.id, core.term, commit, conf, holders)

    def _reply_error(self, request: ClientRequest, error: BaseException) -> None:
        if isinstance(error, NotLeader):
            self._reply(request, ReplyKind.NOT_LEADER, leader=error.leader_id)
        elif isinstance(error, ProposalDropped | ProposalQueueFull):
            self._reply(request, ReplyKind.REJECTED)
        else:
            # A crash (or a stop) while the request was in flight: outcome unknown.
            self._reply(request, ReplyKind.LOST)

    def _reply(
        self, request: ClientRequest, kind: ReplyKind, *, value: Any = None, leader: NodeId = 0,
        command: bytes | None = None,
    ) -> None:
        reply = Reply(request.op, request.attempt, kind, value, leader, command)
        self._network.client_hop(request.client.on_reply, reply)

    # --- observation ----------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.core is not None and self.core.role is Role.LEADER

    def _bank_counters(self) -> None:
        driver = self.driver
        if driver is not None:
            for name, value in driver.counters.items():
                self.driver_counters[name] = self.driver_counters.get(name, 0) + value
            driver.counters = dict.fromkeys(driver.counters, 0)

    def counters(self) -> dict[str, int]:
        """The driver's counters over every life of this node."""
        self._bank_counters()
        return dict(self.driver_counters)

    def anomaly_counts(self) -> tuple[int, int]:
        """(invalid messages, safety anomalies) over every life of this node."""
        invalid, anomalies = self.past_invalid_messages, self.past_safety_anomalies
        if self.core is not None:
            status = self.core.status()
            invalid += status.invalid_messages
            anomalies += status.safety_anomalies
        return invalid, anomalies

    def log_entries(self) -> list[Entry]:
        if self.core is not None:
            return self.core.log_entries()
        if self._memory is not None:
            return self._memory.durable_state()[1]
        # A node that is down: what its disk would give it (read from a copy, so that reading
        # changes nothing of the run).
        with WalStorage(DATA_DIR, fs=copy.deepcopy(self.fs)) as disk:
            return disk.load().entries

    def _open_disk(self) -> WalStorage | MemoryStorage:
        if self._memory is not None:
            return self._memory
        return WalStorage(DATA_DIR, fs=self.fs, segment_bytes_max=SEGMENT_BYTES_MAX)
