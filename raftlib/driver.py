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

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from raftlib.core.raft import RaftCore
from raftlib.core.types import (
    AppendEntries,
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    Ready,
    Role,
)
from raftlib.errors import Diverged, NotLeader, ProposalDropped, ProposalQueueFull, RaftError
from raftlib.statemachine import StateMachine

log = logging.getLogger("raftlib.driver")

# Ticks a commit-index-only hard state may wait for a sync that happens anyway before it
# gets one of its own (it waited at least DEFERRED_COMMIT_TICKS_MAX - 1 whole ticks then).
DEFERRED_COMMIT_TICKS_MAX = 2


class Waiter(Protocol):
    """Where a proposal's or a read's outcome goes (a Trio slot, a simulated client)."""

    def set_value(self, value: Any) -> None: ...

    def set_error(self, error: BaseException) -> None: ...


class StorageWriter(Protocol):
    """The part of ``raftlib.storage.base.Storage`` a ``PersistJob`` uses."""

    def append(self, entries: Sequence[Entry]) -> None: ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def sync(self) -> None: ...


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

    def write(self, storage: StorageWriter) -> None:
        """Hand the data to storage (not yet durable)."""
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
    on_role: Callable[[Role, NodeId, int], None] | None = None


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
        # The job handed out and not yet durable (at most one: one Ready at a time).
        self.persisting: PersistJob | None = None
        # Term and vote as last handed to storage, and a commit-only hard state not handed
        # yet (module docstring).
        self._stored_term_vote = (core.term, core.vote)
        self._deferred_hard_state: HardState | None = None
        self._deferred_ticks = 0
        self.stopped: BaseException | None = None
        self.counters = dict.fromkeys(
            (
                "readies",  # Ready batches processed
                "syncs",  # storage syncs (each covers one Ready: group commit)
                "entries_persisted",
                "append_messages_sent",  # AppendEntries carrying entries
                "append_entries_sent",  # entries in them
                "early_append_messages",  # AppendEntries sent while a sync was running
                "anomalies",  # what Raft says cannot happen, logged at error level
            ),
            0,
        )

    # --- inputs ------------------------------------------------------------------------------

    def step(self, messages: Sequence[Message]) -> None:
        step = self.core.step
        for msg in messages:
            step(msg)

    def tick(self) -> None:
        if self._deferred_hard_state is not None:
            self._deferred_ticks += 1
        self.core.tick()

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
        while core.has_ready():
            rd = core.ready()
            self.counters["readies"] += 1
            if rd.anomalies:
                self._report_anomalies(rd)
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
                # (votes, acknowledgements) leave in ``persisted``.
                self._send(appends)
            self._deliver(rd)
            return self._job(rd, rd.entries, hard_state, after_sends=bool(appends))
        deferred = self._deferred_hard_state
        if deferred is not None and self._deferred_ticks >= DEFERRED_COMMIT_TICKS_MAX:
            self._deferred_hard_state = None
            self._deferred_ticks = 0
            return self._job(None, (), deferred)
        return None

    def persisted(self, job: PersistJob) -> None:
        """``job`` is durable: what depended on it may leave; the core may count it."""
        if job is not self.persisting:
            raise AssertionError("persisted() must get the job pump() handed out last")
        self.persisting = None
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
        for anomaly in rd.anomalies:
            self.counters["anomalies"] += 1
            log.error("raft anomaly: %s", anomaly.text)
        fatal = [a.text for a in rd.anomalies if a.fatal]
        if fatal:
            error = Diverged(fatal[0])
            self.stop(error)
            raise error

    def _send(self, messages: Sequence[Message]) -> None:
        counters = self.counters
        for m in messages:
            if type(m) is AppendEntries and m.entries:
                counters["append_messages_sent"] += 1
                counters["append_entries_sent"] += len(m.entries)
        self._send_out(messages)

    def _deliver(self, rd: Ready) -> None:
        """Everything in ``rd`` that waits for no sync: committed entries are durable on a
        quorum already (an earlier Ready), reads and role changes depend on no disk."""
        if rd.soft_state is not None and self._hooks.on_role is not None:
            self._hooks.on_role(rd.soft_state.role, rd.soft_state.leader, self.core.term)
        if rd.committed:
            if self._hooks.on_apply is not None:
                self._hooks.on_apply(rd.committed)
            self.apply(rd.committed)
        for request_id in rd.dropped_reads:
            waiter = self.reads.pop(request_id, None)
            if waiter is not None:
                waiter.set_error(self._not_leader())
        for rs in rd.read_states:
            self._read_states.append((rs.index, rs.request_id))
        if self._read_states:
            self._serve_reads()

    def apply(self, entries: Sequence[Entry]) -> None:
        """Apply the entries after ``applied``, in order, and answer their proposers. Says
        nothing about whether they are committed: ``_deliver`` calls it for committed ones
        only (the bug zoo's apply-before-commit calls it for others)."""
        apply = self.state_machine.apply
        proposals = self.proposals
        normal = EntryKind.NORMAL
        for entry in entries:
            index = entry.index
            if index != self.applied + 1:
                raise AssertionError(
                    f"apply out of order: applied={self.applied}, next entry {index}"
                )
            value: Any = None
            error: Exception | None = None
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
            if term != entry.term or entry.kind is not normal:
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


def _fail_all(waiters: Sequence[Waiter], exc: BaseException) -> None:
    for waiter in waiters:
        waiter.set_error(exc)
