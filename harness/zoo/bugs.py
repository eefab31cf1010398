"""The broken variants themselves: each ``*_patches()`` returns the methods to swap in.

Every patch is a replacement for one method of a class, installed by ``harness.zoo.active``
for the length of a run and restored afterwards. The library's own code has no flag for any
of these: a bug exists only while its patch is in place. Each mimics a mistake real Raft
implementations have shipped; the comment on each says what the correct code does instead.

The replacements reach into private attributes on purpose (they rewrite private methods);
``tests/harness/test_zoo.py`` proves each one changes behaviour while active and that the
original is back afterwards, so a refactoring of the library that breaks a patch is noticed.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from harness.sim.node import ClientRequest, ReplyKind, SimNode
from raftlib.core import membership, quorum
from raftlib.core.follower import FollowerMixin
from raftlib.core.leader import LeaderMixin
from raftlib.core.lease import LeaseMixin
from raftlib.core.log import RaftLog
from raftlib.core.raft import RaftCore
from raftlib.core.reconfigure import ReconfigureMixin
from raftlib.core.types import (
    NO_NODE,
    AppendEntries,
    ConfState,
    Entry,
    HardState,
    Message,
    Ready,
    Role,
    SnapshotMeta,
)
from raftlib.core.validation import is_plausible
from raftlib.driver import Driver, PersistJob
from raftlib.kv.commands import KvError, Result
from raftlib.kv.machine import KvStateMachine
from raftlib.kv.sessions import SessionTable
from raftlib.storage.base import Recovered
from raftlib.storage.memory import MemoryStorage
from raftlib.storage.wal import WalStorage

# (class, method name, replacement built from the original)
Patch = tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]


# --- persistence ----------------------------------------------------------------------------


def vote_not_persisted() -> list[Patch]:
    """The vote goes out but never reaches the disk: after a restart the node has forgotten
    whom it voted for in its current term and can vote again (correct: the vote is durable
    before the grant is sent, Figure 2)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def set_hard_state(self: MemoryStorage | WalStorage, hard_state: HardState) -> None:
            original(self, HardState(hard_state.term, NO_NODE, hard_state.commit))

        return set_hard_state

    return [(MemoryStorage, "set_hard_state", wrap), (WalStorage, "set_hard_state", wrap)]


def term_not_persisted() -> list[Patch]:
    """The current term is not saved: a restarted node takes the term of its last log entry,
    which can be older than a term it already voted in, and so votes in that term again
    (correct: currentTerm is durable, Figure 2)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def load(self: MemoryStorage | WalStorage) -> Recovered:
            recovered: Recovered = original(self)
            stored, entries, snap = recovered.hard_state, recovered.entries, recovered.snapshot
            base_term = snap.term if snap is not None else 0
            term = entries[-1].term if entries else base_term
            vote = stored.vote if stored.term == term else NO_NODE
            last = (snap.index if snap is not None else 0) + len(entries)
            return Recovered(HardState(term, vote, min(stored.commit, last)), snap, entries)

        return load

    return [(MemoryStorage, "load", wrap), (WalStorage, "load", wrap)]


def ack_before_fsync() -> list[Patch]:
    """The driver acts on a Ready as soon as it is written, before its fsync returns: votes and
    append acknowledgements go out, the leader counts itself, entries are applied and clients
    told ``ok`` while the data can still vanish in a power loss (correct: persist, THEN send
    and advance, the Ready contract). Planted in the shared driver, which production runs."""

    def wrap_pump(original: Callable[..., Any]) -> Callable[..., Any]:
        def pump(self: Driver) -> PersistJob | None:
            job: PersistJob | None = original(self)
            if job is not None:
                # What ``persisted`` does, now, with the fsync still to come.
                self.persisting = None
                if job.ready is not None:
                    held = [m for m in job.ready.messages if type(m) is not AppendEntries]
                    if held:
                        self._send(held)
                    self.core.advance(job.ready)
            return job

        return pump

    def wrap_persisted(original: Callable[..., Any]) -> Callable[..., Any]:
        def persisted(self: Driver, job: PersistJob) -> None:
            if self.persisting is job:
                original(self, job)
            # else: the late fsync of a job already acted on

        return persisted

    return [(Driver, "persisted", wrap_persisted), (Driver, "pump", wrap_pump)]


def ack_before_fsync_live() -> list[Patch]:
    """``ack_before_fsync`` for a real node (``harness.zoo.live``). Its storage runs on a
    thread of its own, one job at a time, and the raft loop acts on a job's Ready when that
    thread returns; so the bug is planted where the job ends: ``PersistJob.run`` hands the data
    to storage and returns, and the sync runs later on a thread of the bug's, while the loop
    sends the acks, counts the leader's own copy, applies and answers the clients. That is the
    real bug's shape (the data is durable one sync later than the node acts as if it were),
    and what the simulator's variant does to the driver. (Holding the Ready back instead, until
    the next job, would let the leader answer a client only after its own fsync: a loss would
    then need both followers to lose their copies and elect one of them, and runs rarely
    showed it.)"""
    disk = threading.Lock()  # one job's write or sync at a time, in job order
    later = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="zoo-late-fsync")

    def wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: PersistJob, storage: Any) -> None:
            with disk:  # after the previous job's sync: the WAL's buffer is not shared
                self.write(storage)

            def sync() -> None:
                with disk:
                    storage.sync()

            later.submit(sync)

        return run

    return [(PersistJob, "run", wrap_run)]


def send_before_fsync() -> list[Patch]:
    """The driver sends every message of a Ready at once, votes and append acknowledgements
    included, while the hard state and entries they promise are still on their way to the
    disk (correct: only AppendEntries may leave before the fsync, thesis §10.2.1). A power
    loss then forgets a vote already counted. Planted in the shared driver."""

    def wrap_pump(original: Callable[..., Any]) -> Callable[..., Any]:
        def pump(self: Driver) -> PersistJob | None:
            job: PersistJob | None = original(self)
            if job is not None and job.ready is not None:
                held = [m for m in job.ready.messages if type(m) is not AppendEntries]
                if held:
                    self._send(held)
            return job

        return pump

    def wrap_persisted(original: Callable[..., Any]) -> Callable[..., Any]:
        def persisted(self: Driver, job: PersistJob) -> None:
            if job is not self.persisting:
                raise AssertionError("persisted() must get the job pump() handed out last")
            self.persisting = None
            if job.ready is not None:
                self.core.advance(job.ready)  # its messages already left in pump

        return persisted

    return [(Driver, "pump", wrap_pump), (Driver, "persisted", wrap_persisted)]


# --- replication ------------------------------------------------------------------------------


def figure8() -> list[Patch]:
    """A leader commits an entry of an earlier term as soon as a majority stores it (the bug
    Figure 8 of the Raft paper warns about: such an entry can still be overwritten). Correct:
    only entries of the leader's own term commit by counting replicas (§5.4.2)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def maybe_commit(self: LeaderMixin) -> None:
            # The voters' quorum, as the correct code counts it (learners never count): only
            # the term check of §5.4.2 is missing.
            matches = {peer: pr.match for peer, pr in self._progress.items()}
            matches[self._id] = self._log.persisted
            candidate = self._committed_by_quorum(matches)
            if candidate <= self._commit:
                return
            first_own = self._log.term(self._commit) != self._term
            self._commit = candidate
            self._send_pending = True
            if first_own and self._pending_reads and self._log.term(candidate) == self._term:
                for read in self._pending_reads:
                    if read.index is None:
                        read.index = candidate
                self._check_reads()

        return maybe_commit

    return [(LeaderMixin, "_maybe_commit", wrap)]


def no_prevlog_check() -> list[Patch]:
    """A follower accepts an append whose prevLogTerm does not match its own entry at
    prevLogIndex, as if it did (correct: reject, the consistency check of §5.3)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def on_append(self: FollowerMixin, msg: AppendEntries) -> None:
            prev = msg.prev_log_index
            ours = self._log.term(prev)
            if prev >= self._commit and ours is not None and ours != msg.prev_log_term:
                msg = msgspec.structs.replace(msg, prev_log_term=ours)
            original(self, msg)

        return on_append

    return [(FollowerMixin, "_on_append", wrap)]


def truncate_on_stale_append() -> list[Patch]:
    """A follower truncates its log after the last entry of every append it accepts, even a
    stale (delayed or duplicated) one that holds only a prefix of what it already acknowledged
    (correct: truncate only at the first conflicting entry, §5.3 step 3)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def find_conflict(self: RaftLog, entries: Sequence[Entry]) -> int:
            return 0 if entries else original(self, entries)

        return find_conflict

    return [(RaftLog, "find_conflict", wrap)]


def leader_ignores_higher_term() -> list[Patch]:
    """A leader that hears of a higher term does not step down: it handles the message as if
    it were of its own term and keeps leading (correct: any higher term turns it into a
    follower of that term, §5.1)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def step(self: RaftCore, msg: Message) -> None:
            if (self._role is Role.LEADER and msg.term > self._term
                    and is_plausible(msg, self._id)):
                self._handle(msg)
                return
            original(self, msg)

        return step

    return [(RaftCore, "step", wrap)]


def apply_before_commit() -> list[Patch]:
    """The driver applies entries as soon as they are stored locally, before they are
    committed, and answers the leader's clients from that (correct: apply only what
    Ready.committed hands over, §5.3). Planted in the shared driver."""

    def wrap_persisted(original: Callable[..., Any]) -> Callable[..., Any]:
        def persisted(self: Driver, job: PersistJob) -> None:
            original(self, job)
            early = [entry for entry in job.entries if entry.index > self.applied]
            if early and early[0].index == self.applied + 1:
                self.apply(early)

        return persisted

    def wrap_deliver(original: Callable[..., Any]) -> Callable[..., Any]:
        def deliver(self: Driver, rd: Ready) -> None:
            if rd.committed:
                # Whatever was applied early is not applied again, even if it was replaced.
                later = tuple(e for e in rd.committed if e.index > self.applied)
                rd = msgspec.structs.replace(rd, committed=later)
            original(self, rd)

        return deliver

    return [(Driver, "persisted", wrap_persisted), (Driver, "_deliver", wrap_deliver)]


# --- snapshots ---------------------------------------------------------------------------------


def snapshot_forgets_sessions() -> list[Patch]:
    """The KV state machine's snapshot holds the data but not the client session table: a
    node restored from it has forgotten which (session, seq) it applied, so a retried write is
    applied twice (correct: sessions are replicated state and go into snapshots, thesis §6.3)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def prepare_snapshot(self: KvStateMachine) -> Callable[[Any], None]:
            sessions, self.sessions._sessions = self.sessions._sessions, type(
                self.sessions._sessions)()
            try:
                write: Callable[[Any], None] = original(self)
            finally:
                self.sessions._sessions = sessions
            return write

        return prepare_snapshot

    return [(KvStateMachine, "prepare_snapshot", wrap)]


def snapshot_ahead_of_apply() -> list[Patch]:
    """A node labels its snapshot with its last log index rather than the index its state
    machine has applied: the snapshot claims entries it does not contain, and compaction then
    drops them (correct: a snapshot's index is the applied index)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def snapshot_index(self: Driver) -> int:
            return max(self.applied, self.core.last_index)

        return snapshot_index

    return [(Driver, "_snapshot_index", wrap)]


def snapshot_regresses_commit() -> list[Patch]:
    """A follower installs any snapshot the leader sends, even one older than what it has
    committed and applied: its state machine (and commit index) go backwards and reads see the
    past (correct: ignore a snapshot at or below the commit index)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def is_news(self: FollowerMixin, meta: SnapshotMeta) -> bool:
            return self._snapshot_to_install is None and meta.index >= self._log.base_index

        return is_news

    return [(FollowerMixin, "_snapshot_is_news", wrap)]


# --- reads and sessions -----------------------------------------------------------------------


def local_reads() -> list[Patch]:
    """Any node answers a read from its own state machine at once, without ReadIndex: a
    deposed leader or a lagging follower serves stale values (correct: confirm leadership
    and wait for the read index, thesis §6.4)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def handle_read(self: SimNode, request: ClientRequest) -> None:
            self._reply(request, ReplyKind.OK, value=self.sm.get(request.key))

        return handle_read

    return [(SimNode, "_handle_read", wrap)]


def lease_ignores_drift() -> list[Patch]:
    """A leader's read lease lasts the whole minimum election timeout, with no margin for
    clock drift (or for a tick's rounding): when its clock runs slower than a follower's, the
    followers elect a new leader, which takes writes, while the old one still serves reads
    from its lease (correct: the lease is shorter than the election timeout by the
    drift bound, lease_drift_ticks; thesis §6.4.1)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def lease_ticks(self: LeaseMixin) -> int:
            return self.config.election_timeout_ticks_min

        return lease_ticks

    return [(LeaseMixin, "_lease_ticks", wrap)]


def session_cache_off() -> list[Patch]:
    """The session table forgets replies: a retry of a write that was already applied is
    applied again (correct: answer a repeated (session, seq) from the cache, thesis §6.3)."""

    def wrap_check(original: Callable[..., Any]) -> Callable[..., Any]:
        def check(self: SessionTable, sid: int, seq: int) -> KvError | tuple[Result] | None:
            verdict: KvError | tuple[Result] | None = original(self, sid, seq)
            return None if isinstance(verdict, tuple) else verdict

        return check

    def wrap_record(original: Callable[..., Any]) -> Callable[..., Any]:
        def record(self: SessionTable, sid: int, seq: int, reply: Result) -> None:
            session = self._sessions[sid]
            session.last_seq = max(seq, session.last_seq)
            session.reply = reply

        return record

    return [(SessionTable, "check", wrap_check), (SessionTable, "record", wrap_record)]


# --- membership -------------------------------------------------------------------------------


def learner_in_quorum() -> list[Patch]:
    """A leader counts learners' acknowledgements towards the commit quorum (correct: only
    voters count; a learner may be an empty node that never votes)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def committed_by_quorum(self: ReconfigureMixin, matches: dict[int, int]) -> int:
            conf = self._decision_conf()
            if not conf.voters:
                return 0
            return quorum.joint_committed_index(
                tuple(sorted(set(conf.voters) | set(conf.learners))), conf.voters_outgoing,
                matches)

        return committed_by_quorum

    return [(ReconfigureMixin, "_committed_by_quorum", wrap)]


def pending_conf_ignored() -> list[Patch]:
    """Elections and commits count only the configuration in force, not the latest one the
    CONF entries of the log bring (correct: the latest, raftlib.core.reconfigure). A node
    restarted from a snapshot older than a change it applied, or a new leader that inherits
    a joint and a leave-joint entry, then commits with the old voters alone entries the new
    voters must hold (found by a swarm campaign)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def decision_conf(self: ReconfigureMixin) -> ConfState:
            return self._conf

        return decision_conf

    return [(ReconfigureMixin, "_decision_conf", wrap)]


def early_leave_joint() -> list[Patch]:
    """A leader appends the entry leaving a joint configuration right behind the one that
    enters it, before the joint one committed: quorums follow the latest configuration of the
    log, so both commit with the new voters alone while the old voters' majority, which never
    saw them, can still elect a leader (correct: leave only once the joint configuration took
    effect, thesis §4.3)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def append_conf(self: ReconfigureMixin, conf: ConfState) -> int:
            index = int(original(self, conf))
            if conf.voters_outgoing:
                original(self, membership.leave_joint(conf))
            return index

        return append_conf

    return [(ReconfigureMixin, "_append_conf", wrap)]


def removed_node_campaigns() -> list[Patch]:
    """A node removed from the configuration keeps the one it had: it goes on campaigning
    and counting votes and acknowledgements among the old voters (correct: a node that is no
    voter never campaigns, and the configuration in force is the one applied)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def use_conf(self: ReconfigureMixin, conf: ConfState) -> None:
            was_voter = self._id in getattr(self, "_voter_ids", frozenset())
            if was_voter and self._id not in membership.voters_of(conf):
                return  # ignores its own removal
            original(self, conf)

        return use_conf

    return [(ReconfigureMixin, "_use_conf", wrap)]
