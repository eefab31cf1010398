"""RaftCore: the Raft algorithm as a synchronous, deterministic state machine.

Inputs are ``tick()`` (abstract time), ``step(message)`` (a message from a peer), ``propose``,
``read_index``, ``campaign`` and ``transfer_leadership``. Output is collected in a ``Ready``
batch (``ready()``) that the driver persists, sends and applies, then acknowledges with
``advance(ready)``. No I/O, no clock, no global randomness: the same config, rng seed and
inputs produce the same Readies.

The Ready contract, as this core relies on it (see ``Ready`` in ``types.py``):

- Persist ``hard_state`` and ``entries`` (one fsync) BEFORE sending ``messages``: vote grants and
  append acknowledgements are emitted in the same Ready as the state they promise, never
  earlier. (A leader's AppendEntries do not depend on its own disk — thesis §10.2.1 — so a
  driver may send those early, and ``take_appends()`` hands out the ones owed while a Ready is
  still being persisted; everything else must wait.)
- The commit index in ``hard_state`` is the one exception to "persist first": no message and no
  apply depends on it being durable (a restarted node that forgot part of it relearns it from
  the leader; the entries below it are durable on a quorum either way), so a driver may defer a
  change of the commit index alone to its next sync.
- ``committed`` only holds entries made durable by an earlier, advanced Ready.
- One Ready at a time: call ``advance(ready)`` before the next ``ready()``. ``step``, ``tick``,
  ``propose`` and ``read_index`` may be called between ``ready()`` and ``advance()``.
- A leader counts itself towards a commit quorum only for entries it has persisted.

Roles are not subclasses: one ``_become_*`` function per role and one handler per message type,
each checking the role where it matters (§5, Figure 2; PreVote and CheckQuorum from the thesis
§9.6; ReadIndex from §6.4; leadership transfer from §3.10).
"""

from __future__ import annotations

import types as _pytypes
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat

import attrs

from raftlib.core import quorum
from raftlib.core.config import CoreConfig, Rng
from raftlib.core.log import RaftLog
from raftlib.core.progress import Progress, ProgressState
from raftlib.core.types import (
    NO_NODE,
    Anomaly,
    AppendEntries,
    AppendEntriesResponse,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Ready,
    RequestVote,
    RequestVoteResponse,
    Role,
    SnapshotMeta,
    SoftState,
    TimeoutNow,
)
from raftlib.errors import ConfigError, NotLeader, ProposalDropped, ProposalQueueFull

# Terms and indexes stay within a signed 64-bit range so storage and the wire codec can hold
# them; a message claiming more is not from a correct peer.
_VALUE_MAX = (1 << 63) - 1
_ENTRY_KINDS = (EntryKind.NORMAL, EntryKind.NOOP)
# A snapshot transfer that shows no progress (``RaftCore.snapshot_progress``) for this many
# election timeouts is presumed lost: the follower is probed again, which restarts it.
SNAPSHOT_STALL_ELECTION_TIMEOUTS = 5
# Anomaly descriptions held for the next Ready; past it they are only counted (a peer gone
# wrong must not grow our memory).
_ANOMALIES_QUEUED_MAX = 64


def _plain(value: object) -> bool:
    return type(value) is int and 0 <= value <= _VALUE_MAX


@attrs.frozen
class ProgressStatus:
    match: int
    next: int
    state: str


@attrs.frozen
class CoreStatus:
    """An immutable snapshot of the core for status pages and tests."""

    node_id: NodeId
    role: Role
    term: int
    vote: NodeId
    leader: NodeId
    commit: int
    applied: int
    last_index: int
    persisted_index: int
    # Leader only (empty otherwise): follower id -> replication progress.
    progress: Mapping[NodeId, ProgressStatus]
    # Messages dropped because no correct peer could have sent them (wrong dst, unknown src,
    # impossible values) and messages that would break a safety rule if obeyed (a second
    # leader in one term, an append rewriting committed entries). Both stay 0 in a healthy
    # cluster; tests assert it.
    invalid_messages: int
    safety_anomalies: int
    # The first index the log holds, and the latest snapshot's (0: none yet).
    first_index: int = 1
    snapshot_index: int = 0


@attrs.define
class _PendingRead:
    seq: int
    request_id: int
    # Who asked: this node (a local reader) or a follower that forwarded the request.
    origin: NodeId
    # The commit index the read must wait for; None until this leader has committed an entry
    # of its own term (before that its commit index may be behind the true one).
    index: int | None


class RaftCore:
    def __init__(
        self,
        config: CoreConfig,
        rng: Rng,
        hard_state: HardState = HardState(),  # noqa: B008 - immutable value
        entries: Sequence[Entry] = (),
        applied: int | None = None,
        snapshot: SnapshotMeta | None = None,
    ) -> None:
        """Restart from durable state: the hard state, the latest snapshot (None before the
        first) and the log after it. ``applied`` is where the state machine stands (the
        snapshot's index when it was just restored from it: the default)."""
        if not isinstance(config, CoreConfig):
            raise ConfigError(f"config must be a CoreConfig, got {type(config).__name__}")
        base = snapshot.index if snapshot is not None else 0
        if applied is None:
            applied = base
        _check_restart_state(hard_state, entries, applied, snapshot)
        durable_hard_state = hard_state
        hard_state = _recovered_hard_state(hard_state, entries, snapshot)
        self.config = config
        self._rng = rng
        self._id = config.node_id
        self._voters: tuple[NodeId, ...] = tuple(sorted(config.voters))
        self._peers: tuple[NodeId, ...] = tuple(v for v in self._voters if v != self._id)
        self._peer_set = frozenset(self._peers)

        self._term = hard_state.term
        self._vote = hard_state.vote
        # A snapshot holds only committed entries: commit is at least its index.
        self._commit = max(hard_state.commit, base)
        self._log = RaftLog(entries, base, snapshot.term if snapshot is not None else 0)
        # The latest durable snapshot: what a follower behind the log's start is sent.
        self._snapshot = snapshot
        self._conf = snapshot.conf if snapshot is not None else ConfState(tuple(config.voters))
        # A snapshot received from the leader and accepted, for the next Ready.
        self._snapshot_to_install: SnapshotMeta | None = None
        self._snapshot_keeps_log = False
        self._applied = applied
        # Highest index given to the driver in Ready.committed (applied once advanced).
        self._apply_handed = applied

        self._role = Role.FOLLOWER
        self._leader = NO_NODE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._transfer_target = NO_NODE

        self._msgs: list[Message] = []
        # The leader owes followers an AppendEntries pass (new entries, new commit index,
        # unpaused progress): done once per Ready in _flush so proposals batch up.
        self._send_pending = False
        self._read_bcast_pending = False
        self._read_seq = 0
        self._pending_reads: deque[_PendingRead] = deque()
        self._forwarded_reads: dict[int, NodeId] = {}
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[int] = []

        # What storage holds: a term raised on recovery is persisted by the first Ready.
        self._prev_hard = durable_hard_state
        self._prev_soft = SoftState(Role.FOLLOWER, NO_NODE)
        self._outstanding: Ready | None = None
        self._invalid_messages = 0
        self._safety_anomalies = 0
        self._anomalies: list[Anomaly] = []
        # Set by a fatal anomaly: the node's committed state disagrees with the cluster's, so
        # it takes no more input (the driver stops it once it has the Ready saying why).
        self._halted = False

        self._reset_election_timer()
        self._handlers: dict[type, Callable[[Message], None]] = {
            RequestVote: self._on_request_vote,  # type: ignore[dict-item]
            RequestVoteResponse: self._on_vote_response,  # type: ignore[dict-item]
            AppendEntries: self._on_append,  # type: ignore[dict-item]
            AppendEntriesResponse: self._on_append_response,  # type: ignore[dict-item]
            TimeoutNow: self._on_timeout_now,  # type: ignore[dict-item]
            ReadIndexRequest: self._on_read_request,  # type: ignore[dict-item]
            ReadIndexResponse: self._on_read_response,  # type: ignore[dict-item]
            InstallSnapshot: self._on_install_snapshot,  # type: ignore[dict-item]
        }
        self._check_invariants()

    # --- properties ------------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> NodeId:
        return self._vote

    @property
    def leader(self) -> NodeId:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def first_index(self) -> int:
        """The first index the log holds (entries before it are in the snapshot)."""
        return self._log.first_index

    @property
    def snapshot(self) -> SnapshotMeta | None:
        """The latest durable snapshot this node knows of."""
        return self._snapshot

    @property
    def conf(self) -> ConfState:
        return self._conf

    @property
    def pending_install(self) -> SnapshotMeta | None:
        """A received snapshot this core accepted, not yet handed out in a Ready."""
        return self._snapshot_to_install

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` (None when not held: compacted or beyond)."""
        return self._log.term(index)

    def log_entries(self) -> list[Entry]:
        """A copy of the in-memory log after its base (tests and invariant checkers)."""
        return self._log.slice(self._log.first_index, self._log.last_index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index <= hi`` (clamped to the log), persisted or not."""
        return self._log.slice(lo, hi)

    def status(self) -> CoreStatus:
        progress = {
            peer: ProgressStatus(pr.match, pr.next, pr.state.value)
            for peer, pr in self._progress.items()
        }
        return CoreStatus(
            node_id=self._id,
            role=self._role,
            term=self._term,
            vote=self._vote,
            leader=self._leader,
            commit=self._commit,
            applied=self._applied,
            last_index=self._log.last_index,
            persisted_index=self._log.persisted,
            progress=_pytypes.MappingProxyType(progress),
            invalid_messages=self._invalid_messages,
            safety_anomalies=self._safety_anomalies,
            first_index=self._log.first_index,
            snapshot_index=self._snapshot.index if self._snapshot is not None else 0,
        )

    # --- inputs: time ----------------------------------------------------------------------

    def tick(self) -> None:
        if self._halted:
            return
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                self.campaign()

    def _tick_leader(self) -> None:
        cfg = self.config
        stall = SNAPSHOT_STALL_ELECTION_TIMEOUTS * cfg.election_timeout_ticks_max
        for pr in self._progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= stall:
                    pr.become_probe()
                    self._send_pending = True
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= cfg.election_timeout_ticks_min:
            self._election_elapsed = 0
            # A transfer that did not finish within an election timeout is abandoned so the
            # leader accepts proposals again (thesis §3.10).
            self._transfer_target = NO_NODE
            if cfg.check_quorum:
                # CheckQuorum (thesis §9.6): without a quorum heard from in the last period,
                # this leader may already be replaced; step down instead of serving.
                active = [self._id] + [p for p, pr in self._progress.items() if pr.recent_active]
                if not quorum.has_quorum(self._voters, active):
                    self._become_follower(self._term, NO_NODE)
                    return
                for pr in self._progress.values():
                    pr.recent_active = False
        if self._heartbeat_elapsed >= cfg.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    # --- inputs: elections -----------------------------------------------------------------

    def campaign(self) -> None:
        """Start an election now (what an election timeout does). A leader ignores it."""
        if self._role is Role.LEADER:
            return
        if self.config.pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=False)

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to ``to`` (thesis §3.10): once its log is caught up it gets a
        TimeoutNow and campaigns at once. Proposals are refused meanwhile; the transfer is
        abandoned after an election timeout."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if to == self._id:
            return
        if to not in self._peer_set:
            raise ConfigError(f"transfer_leadership: {to!r} is not a voter of this cluster")
        self._transfer_target = to
        self._election_elapsed = 0
        if self._progress[to].match == self._log.last_index:
            self._send(TimeoutNow(self._term, self._id, to))
        else:
            self._send_pending = True

    # --- inputs: client requests -----------------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append one command (leader only). Returns its log index; it is committed once it
        shows up in ``Ready.committed``."""
        return self.propose_batch((data,))

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        """Append several commands at once; returns the index of the first. Raises NotLeader
        (with the known leader), ProposalDropped (leadership transfer under way) or
        ProposalQueueFull (more than uncommitted_entries_max entries would await commit)."""
        if self._role is not Role.LEADER or self._halted:
            raise NotLeader(self._leader)
        if self._transfer_target != NO_NODE:
            raise ProposalDropped(
                f"leadership transfer to node {self._transfer_target} in progress"
            )
        count = len(datas)
        if count == 0:
            raise ValueError("propose_batch needs at least one command")
        log = self._log
        first = log.last_index + 1
        if first - 1 - self._commit + count > self.config.uncommitted_entries_max:
            raise ProposalQueueFull(
                f"{first - 1 - self._commit} entries await commit; adding {count} would exceed "
                f"uncommitted_entries_max={self.config.uncommitted_entries_max}"
            )
        for data in datas:
            if type(data) is not bytes:
                raise TypeError(f"a command must be bytes, got {type(data).__name__}")
        log.append(list(map(Entry, repeat(self._term), range(first, first + count), datas)))
        self._send_pending = True
        return first

    def read_index(self, request_id: int) -> None:
        """Ask for a linearizable read (thesis §6.4). The answer arrives in a later Ready as
        ``ReadState(request_id, index)`` (serve the read once applied >= index) or as
        ``request_id`` in ``dropped_reads`` (no leader, or leadership lost: retry)."""
        if self._role is Role.LEADER:
            self._register_read(request_id, self._id)
        elif self._leader != NO_NODE:
            self._forwarded_reads[request_id] = self._leader
            self._send(ReadIndexRequest(self._term, self._id, self._leader, request_id))
        else:
            self._dropped_reads.append(request_id)

    # --- inputs: messages ------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """Process one message. Anything a correct peer could not have sent (wrong ``dst``,
        unknown ``src``, impossible values) is counted and ignored, never raised."""
        if self._halted:
            return
        handler = self._handlers.get(type(msg))
        if handler is None or not self._is_plausible(msg):
            self._invalid_messages += 1
            return
        term = msg.term
        if term > self._term:
            if type(msg) is RequestVote:
                if self._in_lease(msg):
                    # Thesis §9.6: we heard from a leader within the minimum election
                    # timeout, so this candidate is disruptive: keep our term.
                    if msg.pre_vote:
                        self._send(RequestVoteResponse(self._term, self._id, msg.src, False, True))
                    return
                if not msg.pre_vote:
                    self._become_follower(term, NO_NODE)
            elif type(msg) is RequestVoteResponse and msg.pre_vote and msg.granted:
                # A pre-vote grant carries the term we would campaign in; ours stays.
                pass
            else:
                leader = msg.src if type(msg) is AppendEntries else NO_NODE
                self._become_follower(term, leader)
        elif term < self._term:
            self._on_stale(msg)
            return
        handler(msg)

    def _is_plausible(self, msg: Message) -> bool:
        src = msg.src
        if (
            msg.dst != self._id
            or type(src) is not int
            or src not in self._peer_set
            or not _plain(msg.term)
        ):
            return False
        kind = type(msg)
        if kind is AppendEntries:
            return self._is_plausible_append(msg)  # type: ignore[arg-type]
        if kind is AppendEntriesResponse:
            return (
                type(msg.success) is bool  # type: ignore[union-attr]
                and _plain(msg.match_index)  # type: ignore[union-attr]
                and _plain(msg.conflict_index)  # type: ignore[union-attr]
                and _plain(msg.conflict_term)  # type: ignore[union-attr]
                and msg.conflict_term <= msg.term  # type: ignore[union-attr]
                and _plain(msg.read_ctx)  # type: ignore[union-attr]
            )
        if kind is RequestVote:
            return (
                _plain(msg.last_log_index)  # type: ignore[union-attr]
                and _plain(msg.last_log_term)  # type: ignore[union-attr]
                and msg.last_log_term <= msg.term  # type: ignore[union-attr]
                and (msg.last_log_index == 0) == (msg.last_log_term == 0)  # type: ignore[union-attr]
                and type(msg.pre_vote) is bool  # type: ignore[union-attr]
                and type(msg.transfer) is bool  # type: ignore[union-attr]
            )
        if kind is RequestVoteResponse:
            return type(msg.granted) is bool and type(msg.pre_vote) is bool  # type: ignore[union-attr]
        if kind is ReadIndexRequest:
            return type(msg.request_id) is int  # type: ignore[union-attr]
        if kind is ReadIndexResponse:
            return type(msg.request_id) is int and _plain(msg.index)  # type: ignore[union-attr]
        if kind is InstallSnapshot:
            meta = msg.meta  # type: ignore[union-attr]
            return (
                type(meta) is SnapshotMeta
                and _plain(meta.index)
                and _plain(meta.term)
                and meta.index >= 1
                and 1 <= meta.term <= msg.term
            )
        return True

    @staticmethod
    def _is_plausible_append(msg: AppendEntries) -> bool:
        prev = msg.prev_log_index
        prev_term = msg.prev_log_term
        if not (
            _plain(prev)
            and _plain(prev_term)
            and prev_term <= msg.term
            and (prev == 0) == (prev_term == 0)
            and _plain(msg.commit)
            and _plain(msg.read_ctx)
            and type(msg.entries) is tuple
            and prev + len(msg.entries) <= _VALUE_MAX
        ):
            return False
        # Entries must follow prev contiguously with non-decreasing terms no newer than the
        # sender's: anything else cannot come from a correct leader (Log Matching).
        expected = prev + 1
        last_term = prev_term
        top = msg.term
        for entry in msg.entries:
            if (
                type(entry) is not Entry
                or entry.index != expected
                or type(entry.term) is not int
                or not last_term <= entry.term <= top
                or type(entry.data) is not bytes
                or entry.kind not in _ENTRY_KINDS
            ):
                return False
            expected += 1
            last_term = entry.term
        return last_term >= 1 or not msg.entries

    def _in_lease(self, msg: RequestVote) -> bool:
        """Whether a (pre)vote request must be refused because a leader is known and was heard
        from within the minimum election timeout (thesis §9.6, §4.2.3)."""
        if msg.transfer or self._leader == NO_NODE:
            return False
        if not (self.config.check_quorum or msg.pre_vote):
            return False
        return self._election_elapsed < self.config.election_timeout_ticks_min

    def _on_stale(self, msg: Message) -> None:
        """A message from an older term (§5.1: reject it, telling the sender our term)."""
        kind = type(msg)
        if kind is AppendEntries:
            # An old leader learns our newer term and steps down.
            self._send(AppendEntriesResponse(self._term, self._id, msg.src, False))
        elif kind is RequestVote:
            self._send(
                RequestVoteResponse(self._term, self._id, msg.src, False, msg.pre_vote)  # type: ignore[union-attr]
            )
        elif kind is ReadIndexRequest:
            self._send(
                ReadIndexResponse(self._term, self._id, msg.src, msg.request_id, 0)  # type: ignore[union-attr]
            )
        # Stale responses and TimeoutNow carry nothing we may act on.

    # --- handlers: elections ---------------------------------------------------------------

    def _on_request_vote(self, msg: RequestVote) -> None:
        log_ok = self._log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        if msg.pre_vote:
            # A pre-vote changes nothing here; grant when a real vote in that term could be.
            granted = msg.term > self._term and log_ok
            reply_term = msg.term if granted else self._term
            self._send(RequestVoteResponse(reply_term, self._id, msg.src, granted, True))
            return
        # Same term now (a newer one made us a follower in step). §5.2: one vote per term,
        # first come first served; §5.4.1: only for a log at least as up to date as ours.
        can_vote = self._vote == msg.src or (self._vote == NO_NODE and self._leader == NO_NODE)
        granted = can_vote and log_ok
        if granted:
            self._vote = msg.src
            # Granting a vote resets the election timer (Figure 2, Followers).
            self._election_elapsed = 0
        self._send(RequestVoteResponse(self._term, self._id, msg.src, granted, False))

    def _on_vote_response(self, msg: RequestVoteResponse) -> None:
        if msg.pre_vote:
            if self._role is not Role.PRE_CANDIDATE:
                return
            expected_term = self._term + 1 if msg.granted else self._term
            if msg.term != expected_term:
                return
            self._votes[msg.src] = msg.granted
            result = quorum.vote_result(self._voters, self._votes)
            if result is quorum.VoteResult.WON:
                self._become_candidate(transfer=False)
            elif result is quorum.VoteResult.LOST:
                self._become_follower(self._term, NO_NODE)
            return
        if self._role is not Role.CANDIDATE or msg.term != self._term:
            return
        self._votes[msg.src] = msg.granted
        result = quorum.vote_result(self._voters, self._votes)
        if result is quorum.VoteResult.WON:
            self._become_leader()
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self._term, NO_NODE)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if self._role is not Role.FOLLOWER or msg.src != self._leader:
            return
        self._become_candidate(transfer=True)

    # --- handlers: replication (follower side) ---------------------------------------------

    def _on_append(self, msg: AppendEntries) -> None:
        if self._role is Role.LEADER:
            # Two leaders in one term would break Election Safety (§5.2): never obey it.
            self._anomaly(f"two leaders in term {self._term}: this node and node {msg.src}")
            return
        if self._role is not Role.FOLLOWER:
            # §5.2: a candidate that hears from the leader of its term returns to follower.
            self._become_follower(self._term, msg.src)
        elif self._leader != msg.src:
            if self._leader != NO_NODE:
                self._anomaly(
                    f"two leaders in term {self._term}: node {self._leader} and node {msg.src}"
                )
                return
            self._set_leader(msg.src)
        self._election_elapsed = 0
        log = self._log
        prev = msg.prev_log_index
        entries: Sequence[Entry] = msg.entries
        commit = self._commit
        if prev <= commit:
            # Our log up to commit must already match every later leader's (Leader
            # Completeness). Check that it does -- a leader contradicting a committed entry
            # means a disk lost acknowledged data somewhere: stop, never answer "success" --
            # then skip what we have committed and go on from there. (Entries our snapshot
            # covers are committed too; their terms are not held, so not compared.)
            ours = log.term(prev)
            if ours is not None and ours != msg.prev_log_term:
                self._diverged(prev, msg.prev_log_term, msg.src)
                return
            skip = min(commit - prev, len(entries))
            for entry in entries[:skip]:
                ours = log.term(entry.index)
                if ours is not None and ours != entry.term:
                    self._diverged(entry.index, entry.term, msg.src)
                    return
            if skip == len(entries):
                self._reply_append(msg, match_index=max(commit, prev + len(entries)))
                return
            entries = entries[skip:]
            prev = commit
        elif log.term(prev) != msg.prev_log_term:
            self._reject_append(msg)
            return
        position = log.find_conflict(entries)
        if position < len(entries):
            # Only entries above commit may be replaced (checked above): §5.3's suffix.
            assert entries[position].index > self._commit
            # Drops any conflicting suffix of ours first (§5.3).
            log.replace_from(entries[position:])
        last_new = prev + len(entries)
        if msg.commit > self._commit:
            new_commit = min(msg.commit, last_new)
            if new_commit > self._commit:
                self._commit = new_commit
        self._reply_append(msg, match_index=last_new)

    def _anomaly(self, text: str, *, fatal: bool = False) -> None:
        """Record what Raft says cannot happen; the driver logs it (``Ready.anomalies``)."""
        self._safety_anomalies += 1
        if len(self._anomalies) < _ANOMALIES_QUEUED_MAX:
            self._anomalies.append(Anomaly(f"node {self._id}: {text}", fatal))
        if fatal:
            self._halted = True

    def _diverged(self, index: int, leader_term: int, leader: NodeId) -> None:
        ours = self._log.term(index)
        self._anomaly(
            f"diverged at index {index} (committed up to {self._commit}): leader {leader} of "
            f"term {self._term} has an entry of term {leader_term} there, this node's "
            f"committed log has term {ours}; stopping rather than apply a different history",
            fatal=True,
        )

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        """The leader's snapshot is whole in a file of our storage (the driver streamed it):
        take it unless we already have everything it holds (thesis §5.1, Figure 5.3)."""
        if self._role is Role.LEADER:
            self._anomaly(f"two leaders in term {self._term}: this node and node {msg.src}")
            return
        if self._role is not Role.FOLLOWER:
            self._become_follower(self._term, msg.src)
        elif self._leader != msg.src:
            if self._leader != NO_NODE:
                self._anomaly(
                    f"two leaders in term {self._term}: node {self._leader} and node {msg.src}"
                )
                return
            self._set_leader(msg.src)
        self._election_elapsed = 0
        meta = msg.meta
        log = self._log
        if meta.index <= self._commit or self._snapshot_to_install is not None:
            # Nothing new in it (or one install at a time): say how far we are.
            self._reply_append_to(msg.src, self._commit, 0)
            return
        ours = log.term(meta.index)
        if ours is not None and ours != meta.term and meta.index <= self._commit:
            self._diverged(meta.index, meta.term, msg.src)
            return
        keeps = ours == meta.term and meta.index <= log.persisted
        if keeps:
            # Our log holds its last entry: keep what follows (§5.1 / Figure 13 step 6).
            log.compact(meta.index)
        else:
            log.restore(meta.index, meta.term)
        self._snapshot = meta
        self._conf = meta.conf
        self._commit = meta.index
        # The state machine is replaced wholesale: nothing at or below it is applied again.
        self._apply_handed = meta.index
        self._snapshot_to_install = meta
        self._snapshot_keeps_log = keeps
        self._reply_append_to(msg.src, meta.index, 0)

    def _reply_append_to(self, dst: NodeId, match_index: int, read_ctx: int) -> None:
        self._send(
            AppendEntriesResponse(self._term, self._id, dst, True, match_index, read_ctx=read_ctx)
        )

    # --- snapshots (the driver's calls) ----------------------------------------------------

    def snapshot_taken(self, meta: SnapshotMeta) -> None:
        """A snapshot of this node's state machine is durable in storage: followers behind the
        log's start will be sent it."""
        if not isinstance(meta, SnapshotMeta):
            raise TypeError(f"meta must be a SnapshotMeta, got {type(meta).__name__}")
        if meta.index > self._applied:
            raise AssertionError(f"snapshot at {meta.index} beyond applied {self._applied}")
        if self._log.term(meta.index) not in (None, meta.term):
            raise AssertionError(f"snapshot at {meta.index} has the wrong term {meta.term}")
        if self._snapshot is None or meta.index > self._snapshot.index:
            self._snapshot = meta

    def compact(self, index: int) -> None:
        """Forget the in-memory entries up to ``index``: a durable snapshot covers them and the
        state machine has applied them (the driver then compacts storage the same way)."""
        snap = self._snapshot
        if snap is None or index > snap.index:
            raise AssertionError(f"compact to {index}: no durable snapshot covers it")
        self._log.compact(min(index, self._applied, self._log.persisted))

    def snapshot_progress(self, peer: NodeId) -> None:
        """The transfer of a snapshot to ``peer`` made progress (a chunk was acknowledged)."""
        pr = self._progress.get(peer)
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            pr.snapshot_elapsed = 0

    def snapshot_failed(self, peer: NodeId) -> None:
        """The transfer to ``peer`` broke off: probe it again (which retries the snapshot)."""
        pr = self._progress.get(peer)
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            pr.become_probe()
            self._send_pending = True

    def _reject_append(self, msg: AppendEntries) -> None:
        """Consistency check failed (§5.3). Hint where our log may match: the start of the
        term we hold at prev (or our end when prev is beyond it), so the leader skips a whole
        conflicting term per round trip."""
        log = self._log
        prev = msg.prev_log_index
        ours = log.term(prev)
        if ours is None:
            conflict_index, conflict_term = log.last_index + 1, 0
        else:
            conflict_term = ours
            conflict_index = log.first_index_of_term(ours, self._commit + 1, prev)
        self._send(
            AppendEntriesResponse(
                self._term,
                self._id,
                msg.src,
                False,
                match_index=prev,  # on rejection: the prev_log_index that was refused
                conflict_index=conflict_index,
                conflict_term=conflict_term,
                read_ctx=msg.read_ctx,
            )
        )

    def _reply_append(self, msg: AppendEntries, match_index: int) -> None:
        self._send(
            AppendEntriesResponse(
                self._term, self._id, msg.src, True, match_index, read_ctx=msg.read_ctx
            )
        )

    # --- handlers: replication (leader side) -----------------------------------------------

    def _on_append_response(self, msg: AppendEntriesResponse) -> None:
        if self._role is not Role.LEADER:
            return
        pr = self._progress[msg.src]
        pr.recent_active = True
        if msg.read_ctx > pr.read_acked and msg.read_ctx <= self._read_seq:
            pr.read_acked = msg.read_ctx
            self._check_reads()
        if msg.success:
            if msg.match_index > self._log.last_index:
                # A follower cannot match entries we never had.
                self._anomaly(
                    f"node {msg.src} claims to match index {msg.match_index}, beyond this "
                    f"leader's last index {self._log.last_index}"
                )
                return
            if pr.acknowledged(msg.match_index):
                self._maybe_commit()
            if self._transfer_target == msg.src and pr.match == self._log.last_index:
                self._send(TimeoutNow(self._term, self._id, msg.src))
            self._send_pending = True
            return
        rejected = msg.match_index
        if pr.rejected(rejected, self._next_from_hint(msg, rejected)):
            self._send_pending = True

    def _next_from_hint(self, msg: AppendEntriesResponse, rejected: int) -> int:
        """Where to probe next after a rejection (fast backtracking).

        Let j be our last index <= ``rejected`` with term <= the follower's conflict term ct.
        Our entries after j have terms > ct while the follower's up to ``rejected`` have
        terms <= ct, so the logs cannot match after j. If our term at j is ct, they may match
        at j; otherwise we hold no entry of term ct, so the follower's run of ct entries
        (from ``conflict_index``) cannot match either. One round trip skips any number of
        terms on both sides.
        """
        conflict_term = msg.conflict_term
        if not conflict_term:
            return msg.conflict_index
        log = self._log
        last_at_most = log.last_index_of_term_at_most(conflict_term, rejected)
        if log.term(last_at_most) == conflict_term:
            return last_at_most + 1
        return min(last_at_most + 1, msg.conflict_index)

    def _maybe_commit(self) -> None:
        """§5.3/§5.4.2: advance commit to the highest index a quorum persisted, but only when
        that entry is of the current term; earlier entries then commit with it (Figure 8)."""
        matches = [self._log.persisted]
        matches.extend(pr.match for pr in self._progress.values())
        candidate = quorum.committed_index(matches)
        if candidate <= self._commit or self._log.term(candidate) != self._term:
            return
        first_own = self._log.term(self._commit) != self._term
        self._commit = candidate
        self._send_pending = True
        if first_own and self._pending_reads:
            # Now that an entry of our term is committed, our commit index is at least the
            # cluster's, so waiting reads may use it (thesis §6.4 step 1).
            for read in self._pending_reads:
                if read.index is None:
                    read.index = candidate
            self._check_reads()

    def _send_appends(self, peer: NodeId, pr: Progress, heartbeat: bool) -> None:
        """Send what ``peer`` is missing within the flow-control limits. With ``heartbeat``
        (or a commit index it has not seen) an empty append goes out if nothing else does."""
        log = self._log
        cfg = self.config
        last = log.last_index
        term = self._term
        sent = False
        while pr.next <= last and not pr.is_paused():
            if pr.next <= log.base_index:
                # What it needs next is compacted away: send the snapshot instead.
                self._send_snapshot(peer, pr)
                return
            prev = pr.next - 1
            prev_term = log.term(prev)
            assert prev_term is not None
            batch = log.entries_from(pr.next, cfg.append_entries_max, cfg.append_bytes_max)
            self._msgs.append(
                AppendEntries(
                    term,
                    self._id,
                    peer,
                    prev,
                    prev_term,
                    tuple(batch),
                    self._commit,
                    self._read_seq,
                )
            )
            pr.sent(batch[-1].index, len(batch))
            pr.commit_sent = self._commit
            sent = True
            if pr.state is ProgressState.PROBE:
                break
        if sent:
            return
        stale_commit = min(self._commit, pr.next - 1) > pr.commit_sent
        if heartbeat or (stale_commit and not pr.is_paused()):
            prev = pr.next - 1
            prev_term = log.term(prev)
            if pr.state is ProgressState.SNAPSHOT:
                # Keep its election timer quiet while the snapshot travels; from a point we
                # still know the term of (its answer is ignored in this state).
                prev, prev_term = log.base_index, log.base_term
            elif prev_term is None:
                self._send_snapshot(peer, pr)
                return
            self._msgs.append(
                AppendEntries(
                    term, self._id, peer, prev, prev_term, (), self._commit, self._read_seq
                )
            )
            pr.commit_sent = self._commit

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        snap = self._snapshot
        if snap is None or snap.index < self._log.base_index:
            raise AssertionError(
                f"log compacted to {self._log.base_index} without a snapshot covering it"
            )
        pr.become_snapshot(snap.index)
        self._msgs.append(InstallSnapshot(self._term, self._id, peer, snap))

    def _broadcast_heartbeat(self) -> None:
        for peer, pr in self._progress.items():
            self._send_appends(peer, pr, heartbeat=True)

    def _flush(self) -> None:
        """Send the appends owed since the last Ready: one pass over the followers however
        many proposals and acknowledgements arrived meanwhile (batching)."""
        if self._role is not Role.LEADER:
            self._send_pending = self._read_bcast_pending = False
            return
        if not (self._send_pending or self._read_bcast_pending):
            return
        read_bcast = self._read_bcast_pending
        self._send_pending = self._read_bcast_pending = False
        for peer, pr in self._progress.items():
            self._send_appends(peer, pr, heartbeat=read_bcast)

    # --- reads (thesis §6.4) ----------------------------------------------------------------

    def _register_read(self, request_id: int, origin: NodeId) -> None:
        self._read_seq += 1
        own_term_committed = self._log.term(self._commit) == self._term
        self._pending_reads.append(
            _PendingRead(
                self._read_seq, request_id, origin, self._commit if own_term_committed else None
            )
        )
        # Confirm leadership with a round of heartbeats carrying the new read_ctx.
        self._read_bcast_pending = True
        self._check_reads()

    def _check_reads(self) -> None:
        pending = self._pending_reads
        if not pending:
            return
        acks = [self._read_seq]
        acks.extend(pr.read_acked for pr in self._progress.values())
        confirmed = quorum.committed_index(acks)
        while pending and pending[0].seq <= confirmed and pending[0].index is not None:
            read = pending.popleft()
            index = read.index
            assert index is not None
            if read.origin == self._id:
                self._read_states.append(ReadState(read.request_id, index))
            else:
                self._send(
                    ReadIndexResponse(self._term, self._id, read.origin, read.request_id, index)
                )

    def _on_read_request(self, msg: ReadIndexRequest) -> None:
        if self._role is Role.LEADER:
            self._register_read(msg.request_id, msg.src)
        else:
            self._send(ReadIndexResponse(self._term, self._id, msg.src, msg.request_id, 0))

    def _on_read_response(self, msg: ReadIndexResponse) -> None:
        if self._forwarded_reads.get(msg.request_id) != msg.src:
            return
        del self._forwarded_reads[msg.request_id]
        if msg.index > 0:
            self._read_states.append(ReadState(msg.request_id, msg.index))
        else:
            self._dropped_reads.append(msg.request_id)

    def _drop_leader_reads(self) -> None:
        for read in self._pending_reads:
            if read.origin == self._id:
                self._dropped_reads.append(read.request_id)
            else:
                self._send(ReadIndexResponse(self._term, self._id, read.origin, read.request_id, 0))
        self._pending_reads.clear()

    # --- role changes ----------------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        cfg = self.config
        self._election_elapsed = 0
        self._randomized_timeout = self._rng.randint(
            cfg.election_timeout_ticks_min, cfg.election_timeout_ticks_max - 1
        )

    def _set_leader(self, leader: NodeId) -> None:
        if leader != self._leader and self._forwarded_reads:
            # Reads forwarded to the old leader may never be answered: let the driver retry.
            self._dropped_reads.extend(self._forwarded_reads)
            self._forwarded_reads.clear()
        self._leader = leader

    def _become_follower(self, term: int, leader: NodeId) -> None:
        if term < self._term:
            raise AssertionError(f"term would decrease from {self._term} to {term}")
        if term > self._term:
            self._term = term
            self._vote = NO_NODE
        if self._role is Role.LEADER:
            self._drop_leader_reads()
            self._progress = {}
            self._transfer_target = NO_NODE
        self._role = Role.FOLLOWER
        self._set_leader(leader)
        self._votes = {}
        self._reset_election_timer()

    def _become_pre_candidate(self) -> None:
        # PreVote (thesis §9.6): ask whether we could win before disturbing anyone's term.
        self._role = Role.PRE_CANDIDATE
        self._set_leader(NO_NODE)
        self._votes = {self._id: True}
        self._reset_election_timer()
        if quorum.vote_result(self._voters, self._votes) is quorum.VoteResult.WON:
            self._become_candidate(transfer=False)
            return
        log = self._log
        for peer in self._peers:
            self._send(
                RequestVote(
                    self._term + 1, self._id, peer, log.last_index, log.last_term, pre_vote=True
                )
            )

    def _become_candidate(self, transfer: bool) -> None:
        # §5.2: increment the term, vote for self, ask everyone else.
        self._term += 1
        self._vote = self._id
        self._role = Role.CANDIDATE
        self._set_leader(NO_NODE)
        self._votes = {self._id: True}
        self._reset_election_timer()
        if quorum.vote_result(self._voters, self._votes) is quorum.VoteResult.WON:
            self._become_leader()
            return
        log = self._log
        for peer in self._peers:
            self._send(
                RequestVote(
                    self._term,
                    self._id,
                    peer,
                    log.last_index,
                    log.last_term,
                    transfer=transfer,
                )
            )

    def _become_leader(self) -> None:
        if self._role is not Role.CANDIDATE:
            raise AssertionError(f"only a candidate may become leader, not a {self._role}")
        self._role = Role.LEADER
        self._set_leader(self._id)
        self._votes = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._transfer_target = NO_NODE
        log = self._log
        inflight_max = self.config.inflight_appends_max
        self._progress = {peer: Progress(log.last_index + 1, inflight_max) for peer in self._peers}
        # A NOOP of our own term: committing it commits every earlier entry (§5.4.2, §8) and
        # lets ReadIndex trust our commit index.
        log.append([Entry(self._term, log.last_index + 1, b"", EntryKind.NOOP)])
        self._send_pending = True

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    # --- output ----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        # Owed appends are built now, so an acknowledgement that unblocks nothing does not
        # cost the driver an empty Ready.
        self._flush()
        log = self._log
        if (
            self._msgs
            or log.handed < log.last_index
            or self._read_states
            or self._dropped_reads
            or self._anomalies
            or self._snapshot_to_install is not None
            or (not self._halted and min(self._commit, log.persisted) > self._apply_handed)
        ):
            return True
        prev = self._prev_hard
        if prev.term != self._term or prev.vote != self._vote or prev.commit != self._commit:
            return True
        soft = self._prev_soft
        return soft.role is not self._role or soft.leader != self._leader

    def take_appends(self) -> list[AppendEntries]:
        """The AppendEntries owed so far (new proposals, commit index, heartbeats), taken out
        of the next Ready for a driver that sends them at once, even while it still persists
        the outstanding Ready (pipelining). Every other message stays for the Ready.

        Safe because an AppendEntries depends on nothing its sender has yet to persist (thesis
        §10.2.1): only a leader of term T sends one, and its term and vote were durable before
        its RequestVotes went out, hence before it could win; its entries may still be on
        their way to its disk, since it counts itself towards a commit quorum only for
        entries it persisted. What followers do with them (acknowledge only after their own
        fsync) is unchanged."""
        self._flush()
        msgs = self._msgs
        appends = [m for m in msgs if type(m) is AppendEntries]
        if appends:
            self._msgs = [m for m in msgs if type(m) is not AppendEntries]
        return appends

    def ready(self) -> Ready:
        """Everything to persist, send and apply since the last Ready (see the module doc).
        Must be followed by ``advance(ready)`` before the next call."""
        if self._outstanding is not None:
            raise AssertionError("ready() called again before advance() of the previous Ready")
        self._flush()
        log = self._log
        hard = HardState(self._term, self._vote, self._commit)
        hard_out = None if hard == self._prev_hard else hard
        self._prev_hard = hard
        soft = SoftState(self._role, self._leader)
        soft_out = None if soft == self._prev_soft else soft
        self._prev_soft = soft
        entries = log.take_unhanded()
        apply_to = min(self._commit, log.persisted)
        committed: tuple[Entry, ...] = ()
        if apply_to > self._apply_handed and not self._halted:
            committed = tuple(log.slice(self._apply_handed + 1, apply_to))
            self._apply_handed = apply_to
        ready = Ready(
            hard_state=hard_out,
            entries=entries,
            messages=tuple(self._msgs),
            committed=committed,
            read_states=tuple(self._read_states),
            dropped_reads=tuple(self._dropped_reads),
            soft_state=soft_out,
            anomalies=tuple(self._anomalies),
            snapshot=self._snapshot_to_install,
            snapshot_keeps_log=self._snapshot_keeps_log,
        )
        self._snapshot_to_install = None
        self._snapshot_keeps_log = False
        self._anomalies = []
        self._msgs = []
        self._read_states = []
        self._dropped_reads = []
        self._outstanding = ready
        self._check_invariants()
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted ``ready.entries``/``hard_state``, sent ``messages`` and
        applied ``committed``."""
        if ready is not self._outstanding:
            raise AssertionError("advance() must get the Ready returned by the last ready()")
        self._outstanding = None
        if ready.snapshot is not None and ready.snapshot.index > self._applied:
            self._applied = ready.snapshot.index  # the state machine was restored from it
        if ready.entries:
            self._log.mark_persisted(ready.entries[-1].index)
        if ready.committed:
            self._applied = ready.committed[-1].index
        if self._role is Role.LEADER:
            # Our own persisted entries now count towards the commit quorum.
            self._maybe_commit()

    def _check_invariants(self) -> None:
        log = self._log
        log.check()
        snap_index = self._snapshot.index if self._snapshot is not None else 0
        if log.base_index > snap_index:
            raise AssertionError(
                f"node {self._id}: log compacted to {log.base_index} beyond the snapshot "
                f"at {snap_index}"
            )
        if not 0 <= self._applied <= self._apply_handed <= self._commit <= log.last_index:
            raise AssertionError(
                f"node {self._id}: expected applied {self._applied} <= handed "
                f"{self._apply_handed} <= commit {self._commit} <= last {log.last_index}"
            )
        if self._role is Role.LEADER:
            if self._vote != self._id or self._leader != self._id:
                raise AssertionError(f"node {self._id}: leader without its own vote")
            for pr in self._progress.values():
                pr.check()
                if pr.next > log.last_index + 1:
                    raise AssertionError(f"node {self._id}: next past our log: {pr!r}")


def _recovered_hard_state(
    hard_state: HardState, entries: Sequence[Entry], snapshot: SnapshotMeta | None
) -> HardState:
    """The hard state to restart with when the log (or the snapshot) holds an entry newer than
    the durable term.

    A crash between the fsync of appended entries (or of a received snapshot) and the fsync of
    the hard state (storage may write them in that order so that a durable commit index never
    points past the durable log) leaves entries of term T with a durable term < T. Nothing
    that depended on the lost hard state was sent (the driver sends only after both are
    durable), so no vote cast in T was ever counted: restarting in term T with no vote is
    exactly as if we had learnt of T from the entry's leader and not voted yet (found by the
    harness, kv workload, seed 77).
    """
    newest = entries[-1].term if entries else (snapshot.term if snapshot is not None else 0)
    if newest > hard_state.term:
        return HardState(newest, NO_NODE, hard_state.commit)
    return hard_state


def _check_restart_state(
    hard_state: HardState,
    entries: Sequence[Entry],
    applied: int,
    snapshot: SnapshotMeta | None,
) -> None:
    """Storage handed us a state that no correct run can produce: refuse with the field."""
    if not isinstance(hard_state, HardState):
        raise ConfigError(f"hard_state must be a HardState, got {type(hard_state).__name__}")
    for name in ("term", "vote", "commit"):
        if not _plain(getattr(hard_state, name)):
            raise ConfigError(
                f"hard_state.{name} must be an int >= 0, got {getattr(hard_state, name)!r}"
            )
    base, last_term = 0, 0
    if snapshot is not None:
        if not isinstance(snapshot, SnapshotMeta):
            raise ConfigError(f"snapshot must be a SnapshotMeta, got {type(snapshot).__name__}")
        if not (_plain(snapshot.index) and _plain(snapshot.term) and snapshot.index >= 1
                and snapshot.term >= 1):
            raise ConfigError(f"snapshot index and term must be ints >= 1, got {snapshot!r}")
        base, last_term = snapshot.index, snapshot.term
    for position, entry in enumerate(entries):
        if not isinstance(entry, Entry) or entry.index != base + position + 1:
            raise ConfigError(
                f"entries[{position}] must be the Entry with index {base + position + 1}, "
                f"got {entry!r}"
            )
        # An entry may be newer than the durable term: see _recovered_hard_state.
        if not (_plain(entry.term) and last_term <= entry.term and entry.term >= 1):
            raise ConfigError(
                f"entries[{position}].term {entry.term!r} must be >= 1 and >= the previous "
                f"entry's term {last_term}"
            )
        last_term = entry.term
    last = base + len(entries)
    if hard_state.commit > last:
        raise ConfigError(
            f"hard_state.commit {hard_state.commit} is beyond the last entry {last}"
        )
    if not _plain(applied) or applied > max(hard_state.commit, base) or applied < base:
        raise ConfigError(
            f"applied {applied!r} must be in [snapshot index {base}, "
            f"commit {max(hard_state.commit, base)}]"
        )
