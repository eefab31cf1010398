"""The driver: the one place that honours the Ready contract, with no I/O of its own.

Both the Trio node (``raftlib.node``) and the deterministic simulator (``harness.sim.node``) run
this code; each plugs in its own storage, transport and clock. The driver never touches a disk
or a socket: it hands the caller a ``PersistJob`` to make durable and is told when that is
done (``persisted``), and it sends through a ``send`` callable. So the ordering below, the part
of a Raft implementation where a slip loses acknowledged data, is the same code under the
simulator's seeds as in production.

For each ``Ready`` of the core:

1. send the leader's AppendEntries at once: they depend on nothing it has yet to persist
   (thesis §10.2.1; the core counts the leader towards commit only for persisted entries);
2. apply committed entries and answer their proposers: they are durable on a quorum already;
3. hand out a ``PersistJob`` for hard state and entries (one sync: group commit); while it runs
   the caller keeps stepping inputs, and ``pump`` sends the new AppendEntries that accumulate
   (pipelining: the next batch forms during this sync; ``RaftCore.take_appends``);
4. only once the job is durable (``persisted``), send every other message (a vote or an append
   acknowledgement must never outrun its fsync) and ``advance`` the core.

A Ready that changes nothing but the commit index does not wait for a sync: no message or
result depends on the commit index being durable (a restarted node relearns it), so it rides
along with the next sync, or gets its own after ``DEFERRED_COMMIT_TICKS_MAX`` idle ticks, or at
a clean exit (``final_job``).

Anomalies the core reports (``Ready.anomalies``) are logged at error level; a fatal one stops
the driver with ``Diverged`` (raised out of ``pump``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from raftlib.core.membership import Change
from raftlib.core.raft import RaftCore
from raftlib.core.types import (
    Anomaly,
    AppendEntries,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    NodeId,
    Ready,
    Role,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
)
from raftlib.errors import (
    CorruptSnapshot,
    Diverged,
    NotLeader,
    ProposalDropped,
    ProposalOutcomeUnknown,
    ProposalQueueFull,
    RaftError,
)
from raftlib.snapshots import (
    ReaderFile,
    SnapshotPolicy,
    SnapshotReceiver,
    SnapshotSender,
    WriterFile,
)
from raftlib.statemachine import StateMachine
from raftlib.storage.base import Recovered, SnapshotReader, SnapshotWriter

log = logging.getLogger("raftlib.driver")

# Ticks a commit-index-only hard state may wait for a sync that happens anyway before it
# gets one of its own (it waited at least DEFERRED_COMMIT_TICKS_MAX - 1 whole ticks then).
DEFERRED_COMMIT_TICKS_MAX = 2
_ONE_TICK = (1,)  # what ``Driver.tick`` counts through for a single tick


class Waiter(Protocol):
    """Where a proposal's or a read's outcome goes (a Trio slot, a simulated client)."""

    def set_value(self, value: Any) -> None: ...

    def set_error(self, error: BaseException) -> None: ...


class StorageWriter(Protocol):
    """The part of ``raftlib.storage.base.Storage`` a ``PersistJob`` uses."""

    def append(self, entries: Sequence[Entry]) -> None: ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def sync(self) -> None: ...

    def compact(self, index: int) -> None: ...

    def reset_log(self, meta: SnapshotMeta) -> None: ...


class SnapshotStorage(Protocol):
    """The snapshot calls of ``raftlib.storage.base.Storage`` the driver makes itself (quick:
    they open files; the data is written by ``SnapshotWriter.write``)."""

    def create_snapshot(self, meta: SnapshotMeta) -> SnapshotWriter: ...

    def open_snapshot(self) -> SnapshotReader | None: ...


class RecoverableStorage(SnapshotStorage, Protocol):
    def load(self) -> Recovered: ...


def recover(storage: RecoverableStorage, state_machine: StateMachine) -> Recovered:
    """Load durable state; restore the state machine from the snapshot, if there is one (so a
    restart replays only the log after it)."""
    recovered = storage.load()
    meta = recovered.snapshot
    if meta is not None:
        reader = storage.open_snapshot()
        if reader is None or reader.meta != meta:
            raise CorruptSnapshot("<storage>", f"the snapshot at index {meta.index} is missing")
        _restore(state_machine, reader)
    return recovered


def _restore(state_machine: StateMachine, reader: SnapshotReader) -> None:
    restore = getattr(state_machine, "restore", None)
    if restore is None:
        reader.close()
        raise CorruptSnapshot("<storage>", "the state machine has no restore() for a snapshot")
    with ReaderFile(reader) as file:
        restore(file)


StorageOp = Callable[[StorageWriter], None]


@attrs.frozen
class _PendingCommit:
    """A snapshot file to commit first thing in the next storage job, then the compaction (or
    log reset) that it allows."""

    meta: SnapshotMeta
    compact_to: int
    commit: StorageOp
    writer: SnapshotWriter
    local: bool  # taken here (True) or received from the leader


@attrs.define(eq=False)
class SnapshotTask:
    """A local snapshot to write: ``run`` (on a worker thread if the caller likes) writes the
    state captured at ``meta.index`` into ``writer``; then ``Driver.snapshot_written``."""

    meta: SnapshotMeta
    writer: SnapshotWriter
    write: Callable[[Any], None]
    size: int = 0  # payload bytes, once run

    def run(self) -> None:
        file = WriterFile(self.writer)
        self.write(file)
        self.size = file.bytes_written


@attrs.define(eq=False)
class PersistJob:
    """What must be durable before ``ready``'s held messages may leave. ``ready`` is None for a
    deferred commit index alone (nothing waits for it)."""

    ready: Ready | None
    entries: Sequence[Entry]
    hard_state: HardState | None
    # AppendEntries of this Ready already went to the transport: a caller that can should let
    # them reach the wire before it starts the sync, so the followers' fsyncs overlap ours.
    after_sends: bool = False
    # Storage calls that go first (commit a snapshot, then compact or reset the log).
    before: list[StorageOp] = attrs.Factory(list)
    # The snapshot this job makes current (taken here, or received): the core learns of it
    # once the job is durable.
    snapshot: SnapshotMeta | None = None
    compact_to: int = 0

    def write(self, storage: StorageWriter) -> None:
        """Hand the data to storage (not yet durable)."""
        for op in self.before:
            op(storage)
        if self.entries:
            storage.append(self.entries)
        if self.hard_state is not None:
            storage.set_hard_state(self.hard_state)

    def run(self, storage: StorageWriter) -> None:
        """Write and sync: once this returns the job is durable."""
        self.write(storage)
        storage.sync()


@attrs.frozen
class DriverHooks:
    """Observation points (tests, the harness, the node's hooks); called synchronously, so
    keep them quick and never let them raise. ``on_apply`` sees every committed entry batch
    (noops too) just before it is applied; ``on_role`` each role change with its leader and
    term."""

    on_apply: Callable[[Sequence[Entry]], None] | None = None
    # (role, leader, term, reason: why the role changed, see SoftState.reason)
    on_role: Callable[[Role, NodeId, int, str], None] | None = None
    # Where anomalies are reported; None: the ``raftlib.driver`` logger at error level (the
    # simulator writes them to its node log instead).
    on_anomaly: Callable[[Anomaly], None] | None = None
    # The state machine was replaced by a snapshot received from the leader (its index).
    on_restore: Callable[[int], None] | None = None
    # A new cluster configuration took effect (a CONF entry applied, or a snapshot's):
    # transports learn new members' addresses here.
    on_conf: Callable[[ConfState], None] | None = None


class Driver:
    """Runs one ``RaftCore`` for a node (see the module docstring for the contract)."""

    def __init__(
        self,
        core: RaftCore,
        state_machine: StateMachine,
        send: Callable[[Sequence[Message]], None],
        *,
        not_leader: Callable[[], RaftError] | None = None,
        pending_requests_max: int = 65536,
        hooks: DriverHooks | None = None,
        storage: SnapshotStorage | None = None,
        snapshot_policy: SnapshotPolicy | None = None,
    ) -> None:
        self.core = core
        self.state_machine = state_machine
        self._send_out = send
        self._not_leader = not_leader or (lambda: NotLeader(core.leader))
        # Outstanding proposals and reads this node will track at once.
        self.pending_requests_max = pending_requests_max
        self._hooks = hooks or DriverHooks()
        # index -> (term the entry was proposed in, its waiter)
        self.proposals: dict[int, tuple[int, Waiter]] = {}
        self.reads: dict[int, Waiter] = {}
        self._read_states: list[tuple[int, int]] = []  # (index, request id), served once applied
        self._next_read_id = 1
        self.applied = core.applied_index
        # The configuration last reported to ``on_conf``.
        self._conf = core.conf
        # The job handed out and not yet durable (at most one: one Ready at a time).
        self.persisting: PersistJob | None = None
        # Term and vote as last handed to storage, and a commit-only hard state not handed
        # yet (module docstring).
        self._stored_term_vote = (core.term, core.vote)
        self._deferred_hard_state: HardState | None = None
        self._deferred_ticks = 0
        self.stopped: BaseException | None = None
        # Snapshots (None storage: a driver without them, e.g. a bare core in tests).
        self._storage = storage
        self.snapshot_policy = snapshot_policy or SnapshotPolicy()
        self._snapshots_on = storage is not None and callable(
            getattr(state_machine, "restore", None)
        ) and (callable(getattr(state_machine, "snapshot", None))
               or callable(getattr(state_machine, "prepare_snapshot", None)))
        self._since_snapshot_entries = 0
        self._since_snapshot_bytes = 0
        # The current snapshot's payload bytes (the policy's ``state_ratio`` weighs the log
        # since against it); None until known: asked of the storage when first needed.
        self._snapshot_bytes: int | None = None
        # A local snapshot handed to the caller to write (``snapshot_task``), until written.
        self.snapshot_task: SnapshotTask | None = None
        self._snapshot_running = False
        # A snapshot (written here, or received) whose commit rides with the next storage job:
        # one at a time, and a received one replaces a local one not yet committed.
        self._pending: _PendingCommit | None = None
        self._senders: dict[NodeId, SnapshotSender] = {}
        self._next_stream = 1
        self._receiver: SnapshotReceiver | None = None
        if storage is not None:
            self._receiver = SnapshotReceiver(storage.create_snapshot, self.snapshot_policy)
        # A received snapshot the core accepted, waiting for the Ready that installs it.
        self._install: tuple[SnapshotMeta, SnapshotWriter] | None = None
        self.counters = dict.fromkeys(
            (
                "readies",  # Ready batches processed
                "syncs",  # storage syncs (each covers one Ready: group commit)
                "entries_persisted",
                "append_messages_sent",  # AppendEntries carrying entries
                "append_entries_sent",  # entries in them
                "early_append_messages",  # AppendEntries sent while a sync was running
                "anomalies",  # what Raft says cannot happen, logged at error level
                "snapshots_taken",
                "snapshots_sent",  # transfers a follower acknowledged whole
                "snapshots_installed",
                "snapshot_chunks_sent",
            ),
            0,
        )

    # --- inputs ------------------------------------------------------------------------------

    def step(self, messages: Sequence[Message]) -> None:
        step = self.core.step
        for msg in messages:
            # ``type(...) is``: message types are final (msgspec structs), and this runs for
            # every message a node receives.
            if type(msg) is SnapshotChunk:
                self._on_chunk(msg)
            elif type(msg) is SnapshotChunkAck:
                self._on_chunk_ack(msg)
            else:
                step(msg)

    def tick(self, count: int = 1) -> None:
        """``count`` ticks of this node's clock passed. A node that stalled (a stopped process,
        a blocked event loop, a long GC pause) reports every tick it missed, so that what the
        core counts in ticks (the read lease, CheckQuorum, election timeouts) follows the time
        that really passed: a leader that lost its stall's ticks would serve lease reads after
        its lease ran out. Beyond ``election_timeout_ticks_max`` ticks every timer of the core
        has fired (the lease is shorter than the election timeout), so a longer stall is
        delivered as that many: bounded work, whatever the stall's length."""
        assert count >= 1, f"ticks come one or more at a time, got {count}"
        core = self.core
        # (One tick, the usual case, without the ``min`` and the range: once per clock tick.)
        ticks = _ONE_TICK if count == 1 else range(
            min(count, core.config.election_timeout_ticks_max))
        for _ in ticks:
            if self._deferred_hard_state is not None:
                self._deferred_ticks += 1
            core.tick()
            if self._senders:
                self._tick_senders()

    def propose(self, datas: Sequence[bytes], waiters: Sequence[Waiter]) -> None:
        """Append commands; each waiter later gets the state machine's result, or an error
        saying the command was not applied (NotLeader, ProposalQueueFull, ProposalDropped)."""
        if len(self.proposals) + len(datas) > self.pending_requests_max:
            _fail_all(waiters, ProposalQueueFull("too many proposals pending"))
            return
        try:
            first = self.core.propose_batch(datas)
        except RaftError as exc:
            if isinstance(exc, NotLeader):
                exc = self._not_leader()
            _fail_all(waiters, exc)
            return
        term = self.core.term
        for offset, waiter in enumerate(waiters):
            self.proposals[first + offset] = (term, waiter)

    def propose_conf_change(self, changes: Sequence[Change], waiter: Waiter) -> None:
        """Propose a membership change (``raftlib.core.membership``); ``waiter`` gets None once
        it took effect on this node, or the error saying it was not made (NotLeader,
        ChangeInProgress, MembershipError, ProposalDropped)."""
        if len(self.proposals) >= self.pending_requests_max:
            waiter.set_error(ProposalQueueFull("too many proposals pending"))
            return
        try:
            index = self.core.propose_conf_change(changes)
        except RaftError as exc:
            waiter.set_error(self._not_leader() if isinstance(exc, NotLeader) else exc)
            return
        self.proposals[index] = (self.core.term, waiter)

    def read(self, waiter: Waiter) -> int:
        """Start a linearizable read (ReadIndex); ``waiter`` gets the read index once this
        node applied up to it, or NotLeader. Returns the request id (for ``cancel_read``)."""
        request_id = self._next_read_id
        self._next_read_id += 1
        if len(self.reads) >= self.pending_requests_max:
            waiter.set_error(ProposalQueueFull("too many reads pending"))
            return request_id
        self.reads[request_id] = waiter
        self.core.read_index(request_id)
        return request_id

    def cancel_read(self, request_id: int) -> None:
        self.reads.pop(request_id, None)

    # --- output ------------------------------------------------------------------------------

    def has_work(self) -> bool:
        """Whether ``pump`` would do anything now: a pure query (``RaftCore.has_ready`` is
        one), so a caller that pumps after its inputs may leave out a pump that would find
        nothing. True while a job persists: pump then takes the appends owed, which this does
        not look into."""
        if self.persisting is not None or self._pending is not None:
            return True
        deferred = self._deferred_hard_state
        if deferred is not None and self._deferred_ticks >= DEFERRED_COMMIT_TICKS_MAX:
            return True
        return self.core.has_ready()

    def pump(self) -> PersistJob | None:
        """Hand the core's output to the network and the state machine; return a job for the
        storage when one must start (call ``persisted(job)`` once it is durable, then pump
        again). Returns None when there is nothing to persist now."""
        core = self.core
        if self.persisting is not None:
            # One Ready at a time: until its job is durable only appends may leave.
            appends = core.take_appends()
            if appends:
                self.counters["early_append_messages"] += len(appends)
                self._send(appends)
            return None
        counters = self.counters
        while core.has_ready():
            rd = core.ready()
            counters["readies"] += 1
            if rd.anomalies:
                self._report_anomalies(rd)
            entries = rd.entries
            # (Most Readies hold neither: then there is no hard state to sync.)
            hard_state = (self._hard_state_to_sync(rd)
                          if rd.hard_state is not None or entries else None)
            if rd.snapshot is not None:
                self._queue_install(rd.snapshot, rd.snapshot_keeps_log)
            if hard_state is None and not entries and self._pending is None:
                # Nothing to make durable, so nothing to wait for.
                if rd.messages:
                    self._send(rd.messages)
                self._deliver(rd)
                core.advance(rd)
                continue
            appends = [m for m in rd.messages if type(m) is AppendEntries]
            if appends:
                # Only AppendEntries may go before the sync (thesis §10.2.1); the rest
                # (votes, acknowledgements) leave in ``persisted``.
                self._send(appends)
            self._deliver(rd)
            return self._job(rd, entries, hard_state, after_sends=bool(appends))
        deferred = self._deferred_hard_state
        if self._pending is not None or (
            deferred is not None and self._deferred_ticks >= DEFERRED_COMMIT_TICKS_MAX
        ):
            self._deferred_hard_state = None
            self._deferred_ticks = 0
            return self._job(None, (), deferred)
        return None

    def persisted(self, job: PersistJob) -> None:
        """``job`` is durable: what depended on it may leave; the core may count it."""
        if job is not self.persisting:
            raise AssertionError("persisted() must get the job pump() handed out last")
        self.persisting = None
        if job.snapshot is not None:
            self._snapshot_durable(job)
        rd = job.ready
        if rd is None:
            return
        held = [m for m in rd.messages if type(m) is not AppendEntries]
        if held:
            self._send(held)
        self.core.advance(rd)

    def final_job(self) -> PersistJob | None:
        """At a clean exit: the commit index not yet durable, if any (not a loss if it is
        never run: entries up to it are durable on a quorum and a restart relearns it)."""
        deferred, self._deferred_hard_state = self._deferred_hard_state, None
        return None if deferred is None else PersistJob(None, (), deferred)

    def stop(self, error: BaseException) -> None:
        """Fail every waiting request with ``error``; the driver takes no more input."""
        self.stopped = error
        for _term, waiter in self.proposals.values():
            waiter.set_error(error)
        for waiter in self.reads.values():
            waiter.set_error(error)
        self.proposals.clear()
        self.reads.clear()
        self._read_states.clear()
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
        if self._receiver is not None:
            self._receiver.abort()
        if self._install is not None:
            self._install[1].abort()
            self._install = None

    # --- internals ---------------------------------------------------------------------------

    def _job(
        self,
        rd: Ready | None,
        entries: Sequence[Entry],
        hard_state: HardState | None,
        *,
        after_sends: bool = False,
    ) -> PersistJob:
        self.counters["syncs"] += 1
        self.counters["entries_persisted"] += len(entries)
        job = PersistJob(rd, entries, hard_state, after_sends)
        pending, self._pending = self._pending, None
        if pending is not None:
            job.before = [pending.commit]
            job.snapshot, job.compact_to = pending.meta, pending.compact_to
        self.persisting = job
        return job

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

    def _report_anomalies(self, rd: Ready) -> None:
        report = self._hooks.on_anomaly
        for anomaly in rd.anomalies:
            self.counters["anomalies"] += 1
            if report is not None:
                report(anomaly)
            else:
                log.error("raft anomaly: %s", anomaly.text)
        fatal = [a.text for a in rd.anomalies if a.fatal]
        if fatal:
            error = Diverged(fatal[0])
            self.stop(error)
            raise error

    def _send(self, messages: Sequence[Message]) -> None:
        counters = self.counters
        snapshots = False
        for m in messages:
            if type(m) is AppendEntries:
                if m.entries:
                    counters["append_messages_sent"] += 1
                    counters["append_entries_sent"] += len(m.entries)
            elif type(m) is InstallSnapshot:
                snapshots = True
        if snapshots:
            # The core names the snapshot; its bytes go as chunks (raftlib.snapshots).
            for m in messages:
                if isinstance(m, InstallSnapshot) and self._leads(m.term):
                    # (A Ready's messages may leave after its sync, by when the node may have
                    # stepped down: a transfer of an earlier term is not started then.)
                    self._start_sender(m.dst, m.term)
            messages = [m for m in messages if type(m) is not InstallSnapshot]
            if not messages:
                return
        self._send_out(messages)

    def _deliver(self, rd: Ready) -> None:
        """Everything in ``rd`` that waits for no sync: committed entries are durable on a
        quorum already (an earlier Ready), reads and role changes depend on no disk."""
        if rd.soft_state is not None and self._hooks.on_role is not None:
            soft = rd.soft_state
            self._hooks.on_role(soft.role, soft.leader, self.core.term, soft.reason)
        committed = rd.committed
        if committed:
            if self._hooks.on_apply is not None:
                self._hooks.on_apply(committed)
            self.apply(committed)
        if rd.dropped_reads:
            for request_id in rd.dropped_reads:
                waiter = self.reads.pop(request_id, None)
                if waiter is not None:
                    waiter.set_error(self._not_leader())
        if rd.read_states:
            for rs in rd.read_states:
                self._read_states.append((rs.index, rs.request_id))
        if self._read_states:
            self._serve_reads()
        if committed and self._snapshots_on:
            self._maybe_snapshot()
        conf = self.core.conf
        if conf is not self._conf:
            self._conf = conf
            if self._hooks.on_conf is not None:
                self._hooks.on_conf(conf)

    def apply(self, entries: Sequence[Entry]) -> None:
        """Apply the entries after ``applied``, in order, and answer their proposers. Says
        nothing about whether they are committed: ``_deliver`` calls it for committed ones
        only (the bug zoo's apply-before-commit calls it for others)."""
        apply = self.state_machine.apply
        proposals = self.proposals
        normal = EntryKind.NORMAL
        noop = EntryKind.NOOP
        for entry in entries:
            index = entry.index
            if index != self.applied + 1:
                raise AssertionError(
                    f"apply out of order: applied={self.applied}, next entry {index}"
                )
            value: Any = None
            error: Exception | None = None
            self._since_snapshot_entries += 1
            self._since_snapshot_bytes += len(entry.data)
            if entry.kind is normal:
                try:
                    value = apply(entry.data)
                except Exception as exc:  # the proposer gets it; the node goes on
                    error = exc
                    log.error("state machine raised on entry %d: %r", index, exc)
            self.applied = index
            pending = proposals.pop(index, None) if proposals else None
            if pending is None:
                continue
            term, waiter = pending
            if term != entry.term or entry.kind is noop:
                # Another leader's entry took this index: ours was never committed and never
                # will be (nobody re-proposes it), so the caller knows it was not applied.
                waiter.set_error(ProposalDropped(
                    f"entry {index} of term {term} was replaced by term {entry.term}"
                ))
            elif error is not None:
                waiter.set_error(error)
            else:
                waiter.set_value(value)

    def _serve_reads(self) -> None:
        keep: list[tuple[int, int]] = []
        for index, request_id in self._read_states:
            if index <= self.applied:
                waiter = self.reads.pop(request_id, None)
                if waiter is not None:
                    waiter.set_value(index)
            else:
                keep.append((index, request_id))
        self._read_states = keep


    # --- snapshots ---------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        if self._snapshot_running or self._pending is not None:
            return
        if not self.snapshot_policy.due(self._since_snapshot_entries, self._since_snapshot_bytes,
                                        self._current_snapshot_bytes()):
            return
        core = self.core
        index = self._snapshot_index()
        term = core.term_at(index)
        if term is None or (core.snapshot is not None and index <= core.snapshot.index):
            return
        assert self._storage is not None
        meta = SnapshotMeta(index, term, core.conf)
        prepare = getattr(self.state_machine, "prepare_snapshot", None)
        if callable(prepare):
            # A consistent copy taken now, on the loop; written out wherever the caller likes.
            write: Callable[[Any], None] = prepare()
        else:
            # Only ``snapshot(file)``: it must see the state at ``index``, so it runs now, on
            # the loop, into memory; the caller writes the bytes out.
            buffer = io.BytesIO()
            getattr(self.state_machine, "snapshot")(buffer)  # noqa: B009 - not in the protocol
            data = buffer.getvalue()

            def write(file: Any) -> None:
                file.write(data)
        self._snapshot_running = True
        self._since_snapshot_entries = 0
        self._since_snapshot_bytes = 0
        self.snapshot_task = SnapshotTask(meta, self._storage.create_snapshot(meta), write)

    def _current_snapshot_bytes(self) -> int:
        """The current snapshot's size (0 without one); read from the storage once after a
        start, then kept as snapshots are written and installed."""
        if self._snapshot_bytes is None:
            assert self._storage is not None
            reader = self._storage.open_snapshot() if self.core.snapshot is not None else None
            if reader is None:
                self._snapshot_bytes = 0
            else:
                self._snapshot_bytes = reader.size
                reader.close()
        return self._snapshot_bytes

    def _snapshot_index(self) -> int:
        """A snapshot stands for exactly what the state machine has applied: its index is the
        applied index, never one above it (entries not in the state would be compacted)."""
        return self.applied

    def snapshot_written(self, task: SnapshotTask) -> None:
        """The caller ran ``task``: commit it with the next storage job, and compact."""
        self._snapshot_running = False
        if self.stopped is not None:
            task.writer.abort()
            return
        meta = task.meta
        writer = task.writer
        newest = self.core.snapshot
        overtaken = newest is not None and meta.index <= newest.index
        if self._pending is not None or overtaken:
            writer.abort()  # a snapshot from the leader overtook it
            return
        compact_to = max(0, meta.index - self.snapshot_policy.trailing_entries)

        def commit(storage: StorageWriter) -> None:
            writer.commit()
            if compact_to > 0:
                storage.compact(compact_to)

        self._pending = _PendingCommit(meta, compact_to, commit, writer, local=True)
        self._snapshot_bytes = task.size

    def snapshot_failed(self, task: SnapshotTask, error: BaseException) -> None:
        self._snapshot_running = False
        task.writer.abort()
        log.error("snapshot at index %d failed: %r", task.meta.index, error)

    def _snapshot_durable(self, job: PersistJob) -> None:
        meta = job.snapshot
        assert meta is not None
        core = self.core
        if job.ready is not None and job.ready.snapshot is meta:
            # Received from the leader: the state machine becomes the snapshot.
            assert self._storage is not None
            reader = self._storage.open_snapshot()
            if reader is None or reader.meta != meta:
                raise CorruptSnapshot("<storage>", f"installed snapshot {meta.index} is gone")
            self._snapshot_bytes = reader.size
            _restore(self.state_machine, reader)
            self.applied = meta.index
            if self._hooks.on_restore is not None:
                self._hooks.on_restore(meta.index)
            # Proposals the snapshot covers: whether they made it is in the snapshot only.
            for index in [i for i in self.proposals if i <= meta.index]:
                _term, waiter = self.proposals.pop(index)
                waiter.set_error(ProposalOutcomeUnknown(
                    f"entry {index} was covered by the leader's snapshot at {meta.index}"
                ))
            if self._read_states:
                self._serve_reads()
            self._since_snapshot_entries = 0
            self._since_snapshot_bytes = 0
            self.counters["snapshots_installed"] += 1
            log.info("node %d: installed the leader's snapshot at index %d (term %d)",
                     core.node_id, meta.index, meta.term)
            return
        core.snapshot_taken(meta)
        if job.compact_to > 0:
            core.compact(job.compact_to)
        self.counters["snapshots_taken"] += 1
        log.info("node %d: snapshot at index %d taken; log compacted to %d",
                 core.node_id, meta.index, job.compact_to)

    def _queue_install(self, meta: SnapshotMeta, keeps_log: bool) -> None:
        install, self._install = self._install, None
        if install is None or install[0] is not meta:
            raise AssertionError(f"the core installs snapshot {meta.index} the driver lacks")
        writer = install[1]
        if self._pending is not None:
            # Our own snapshot, not yet committed, is older than the leader's: drop it (the
            # core accepts one install at a time, so a pending commit here is a local one).
            assert self._pending.local
            self._pending.writer.abort()

        def commit(storage: StorageWriter) -> None:
            writer.commit()
            if keeps_log:
                storage.compact(meta.index)
            else:
                storage.reset_log(meta)

        self._pending = _PendingCommit(meta, 0, commit, writer, local=False)

    def _on_chunk(self, chunk: SnapshotChunk) -> None:
        core = self.core
        receiver = self._receiver
        if receiver is None or chunk.term < core.term or core.role is Role.LEADER:
            return  # from a deposed leader, or we cannot store snapshots
        ack, whole = receiver.on_chunk(chunk)
        if whole is not None:
            meta = whole.meta
            core.step(InstallSnapshot(chunk.term, chunk.src, chunk.dst, meta))
            if core.pending_install is meta and self._install is None:
                self._install = (meta, whole.writer)
            else:
                whole.writer.abort()
        self._send_out([ack])

    def _on_chunk_ack(self, ack: SnapshotChunkAck) -> None:
        if self._senders and not self._leads(self.core.term):
            # No longer the leader (a higher term arrived before the tick that would have
            # closed the transfers): an ack must not send the next chunk. Sent in the new
            # term, it claimed a leadership this node does not have (swarm seed 2660: a leader
            # resumed from a pause, stepped down on a queued vote request, then answered a
            # queued ack with a chunk of the new term: "two leaders in term 8").
            self._close_senders()
            return
        sender = self._senders.get(ack.src)
        if sender is None or sender.stream != ack.stream or ack.term != sender.term:
            return
        sender.on_ack(ack.offset)
        if sender.restart_needed:
            self._start_sender(ack.src, sender.term)
            return
        self.core.snapshot_progress(ack.src)
        if sender.done:
            sender.close()
            del self._senders[ack.src]
            self.counters["snapshots_sent"] += 1
            return
        self._send_chunks(sender)

    def _start_sender(self, peer: NodeId, term: int) -> None:
        old = self._senders.pop(peer, None)
        if old is not None:
            old.close()
        if self._storage is None:
            self.core.snapshot_failed(peer)
            return
        try:
            sender = SnapshotSender(self._storage, peer, self._next_stream, self.snapshot_policy,
                                    term=term)
        except CorruptSnapshot as exc:
            log.error("cannot send a snapshot to node %d: %s", peer, exc)
            self.core.snapshot_failed(peer)
            return
        self._next_stream += 1
        self._senders[peer] = sender
        log.info("node %d: sending the snapshot at index %d (%d bytes) to node %d",
                 self.core.node_id, sender.meta.index, sender.size, peer)
        self._send_chunks(sender)

    def _send_chunks(self, sender: SnapshotSender) -> None:
        assert self._leads(sender.term), (
            f"a snapshot chunk of term {sender.term} from a node that does not lead it "
            f"(term {self.core.term}, {self.core.role.value})")
        try:
            chunks = sender.chunks(sender.term, self.core.node_id)
        except CorruptSnapshot as exc:
            # Our own snapshot file is damaged: say so, and let the core retry later (never
            # stop the leader over a transfer).
            log.error("snapshot transfer to node %d failed: %s", sender.peer, exc)
            sender.close()
            self._senders.pop(sender.peer, None)
            self.core.snapshot_failed(sender.peer)
            return
        if chunks:
            self.counters["snapshot_chunks_sent"] += len(chunks)
            self._send_out(chunks)

    def _leads(self, term: int) -> bool:
        core = self.core
        return core.role is Role.LEADER and core.term == term

    def _close_senders(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()

    def _tick_senders(self) -> None:
        if self.core.role is not Role.LEADER:
            self._close_senders()
            return
        for sender in list(self._senders.values()):
            if sender.tick():
                self._send_chunks(sender)

    # --- questions about the applied state (the Trio node and the simulator both ask) -----------

    @property
    def applied_every_command(self) -> bool:
        """Whether no state-machine command can exist that this node has not applied: its log
        (after its snapshot) holds none, or it leads, an entry of its term is committed (so is
        everything before it, and every other entry never will be) and it applied everything
        committed. Scans the log in the first case: for rare questions (a new cluster's)."""
        core = self.core
        commit = core.commit_index
        if (core.role is Role.LEADER and core.term_at(commit) == core.term
                and self.applied >= commit):
            return True
        entries = core.entries(core.first_index, core.last_index)
        return all(entry.kind is not EntryKind.NORMAL for entry in entries)


def _fail_all(waiters: Sequence[Waiter], exc: BaseException) -> None:
    for waiter in waiters:
        waiter.set_error(exc)
