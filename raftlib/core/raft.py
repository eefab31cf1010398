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
from collections.abc import Callable, Sequence
from typing import Any

from raftlib.core.config import CoreConfig, Rng
from raftlib.core.election import ElectionMixin
from raftlib.core.follower import FollowerMixin
from raftlib.core.leader import LeaderMixin
from raftlib.core.lease import Lease
from raftlib.core.log import RaftLog
from raftlib.core.progress import Progress, StreamIds
from raftlib.core.reads import ReadsMixin
from raftlib.core.ready import ReadyMixin
from raftlib.core.reconfigure import ReconfigureMixin
from raftlib.core.restart import check_restart_state, recovered_hard_state
from raftlib.core.state import PendingRead
from raftlib.core.status import CoreStatus, ProgressStatus
from raftlib.core.types import (
    NO_NODE,
    Anomaly,
    AppendEntries,
    AppendEntriesResponse,
    ConfState,
    Entry,
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
from raftlib.core.validation import checker
from raftlib.errors import ConfigError

# Enum members compared on every message, as module constants: on Python 3.11 a class
# attribute of an Enum (``Role.LEADER``) misses the attribute cache, since EnumType
# defines __getattr__ (about 60 ns a lookup against 10 for a global).
_LEADER = Role.LEADER
_FOLLOWER = Role.FOLLOWER

__all__ = ["CoreStatus", "ProgressStatus", "RaftCore"]

# The messages the core takes (snapshot chunks and their acknowledgements stay with the
# drivers, which stream the bytes; raftlib.snapshots), each with its ``is_plausible`` test.
_CORE_MESSAGES: dict[type, Callable[[Any, NodeId], bool]] = {
    kind: checker(kind)
    for kind in (
        AppendEntries,
        AppendEntriesResponse,
        RequestVote,
        RequestVoteResponse,
        ReadIndexRequest,
        ReadIndexResponse,
        TimeoutNow,
        InstallSnapshot,
    )
}


class RaftCore(
    ElectionMixin, LeaderMixin, FollowerMixin, ReadsMixin, ReconfigureMixin, ReadyMixin
):
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
        check_restart_state(hard_state, entries, applied, snapshot)
        durable_hard_state = hard_state
        hard_state = recovered_hard_state(hard_state, entries, snapshot)
        self.config = config
        # Read on every tick (``config`` is frozen: this never goes stale).
        self._election_timeout_min = config.election_timeout_ticks_min
        self._rng = rng
        self._id = config.node_id

        self._term = hard_state.term
        self._vote = hard_state.vote
        # A snapshot holds only committed entries: commit is at least its index.
        self._commit = max(hard_state.commit, base)
        self._log = RaftLog(entries, base, snapshot.term if snapshot is not None else 0)
        # The latest durable snapshot: what a follower behind the log's start is sent.
        self._snapshot = snapshot
        # The configuration in force: the snapshot's, else the one the cluster started with
        # (none for a node joining an existing cluster: it learns it from the leader). CONF
        # entries after it take effect as they are handed out to be applied.
        conf = snapshot.conf if snapshot is not None else ConfState(tuple(sorted(config.voters)))
        self._pending_conf_index = 0
        # A snapshot received from the leader and accepted, for the next Ready.
        self._snapshot_to_install: SnapshotMeta | None = None
        self._snapshot_keeps_log = False
        self._applied = applied
        # Highest index given to the driver in Ready.committed (applied once advanced).
        self._apply_handed = applied

        self._role = _FOLLOWER
        self._leader = NO_NODE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._stream_ids = StreamIds()
        self._transfer_target = NO_NODE
        self._role_reason = "started"
        self._conf_cache: dict[tuple[int, int], ConfState] = {}
        self._use_conf(conf)

        self._msgs: list[Message] = []
        # The leader owes followers an AppendEntries pass (new entries, new commit index,
        # unpaused progress): done once per Ready in _flush so proposals batch up.
        self._send_pending = False
        self._read_bcast_pending = False
        self._read_seq = 0
        self._pending_reads: deque[PendingRead] = deque()
        self._forwarded_reads: dict[int, NodeId] = {}
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[int] = []
        self._lease = Lease()

        # What storage holds: a term raised on recovery is persisted by the first Ready.
        self._prev_hard = durable_hard_state
        self._prev_soft = SoftState(_FOLLOWER, NO_NODE)
        self._outstanding: Ready | None = None
        self._invalid_messages = 0
        self._safety_anomalies = 0
        self._anomalies: list[Anomaly] = []
        # Set by a fatal anomaly: the node's committed state disagrees with the cluster's, so
        # it takes no more input (the driver stops it once it has the Ready saying why).
        self._halted = False

        self._reset_election_timer()
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
            conf=self._conf,
        )

    # --- inputs: time ----------------------------------------------------------------------

    def tick(self) -> None:
        if self._halted:
            return
        lease = self._lease
        if lease.started_ticks < self._election_timeout_min:
            self._lease_started_tick()
        if self._role is _LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            # A non-voter never campaigns; it keeps counting, so the lease it gave the last
            # leader it heard from runs out and stays out (it must not refuse the votes a new
            # leader needs: see _on_request_vote).
            if self._election_elapsed >= self._randomized_timeout:
                if self.is_voter:
                    self._election_elapsed = 0
                    self._campaign("election timeout")
                elif self._leader != NO_NODE:
                    # Silence for a whole timeout: stop naming a leader that may be gone (a
                    # removed node is told nothing more, and clients follow its hints).
                    self._set_leader(NO_NODE)

    # --- inputs: elections -----------------------------------------------------------------

    def campaign(self) -> None:
        """Start an election now (what an election timeout does). A leader ignores it, and
        so does a node that is no voter (a learner, a removed node, one still joining)."""
        self._campaign("campaign requested")

    def _campaign(self, reason: str) -> None:
        if self._role is _LEADER or not self.is_voter:
            return
        if self.config.pre_vote:
            self._become_pre_candidate(reason)
        else:
            self._become_candidate(transfer=False, reason=reason)

    # --- inputs: messages ------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """Process one message. Anything a correct peer could not have sent (wrong ``dst``,
        unknown ``src``, impossible values) is counted and ignored, never raised."""
        if self._halted:
            return
        plausible = _CORE_MESSAGES.get(type(msg))
        if plausible is None or not plausible(msg, self._id):
            self._invalid_messages += 1
            return
        term = msg.term
        ours = self._term
        if term > ours:
            if type(msg) is RequestVote:
                if self._in_lease(msg):
                    # Thesis §9.6: we heard from a leader within the minimum election
                    # timeout, so this candidate is disruptive: keep our term.
                    if msg.pre_vote:
                        self._send(RequestVoteResponse(self._term, self._id, msg.src, False, True))
                    return
                if not msg.pre_vote:
                    # A follower's election timer keeps running: only a vote it grants (in
                    # _on_request_vote) or its leader's word resets it (Figure 2, Followers).
                    # Reset by every newer vote request, a node with the most up-to-date log
                    # could be kept from ever campaigning by candidates that cannot win (their
                    # logs are behind): without PreVote and with a narrow timeout range, two
                    # such candidates took turns every timeout and no leader was elected
                    # (swarm seed 17005).
                    self._become_follower(
                        term, NO_NODE, f"vote request of term {term} from node {msg.src}",
                        keep_timer=self._role is _FOLLOWER,
                    )
            elif type(msg) is RequestVoteResponse and msg.pre_vote and msg.granted:
                # A pre-vote grant carries the term we would campaign in; ours stays.
                pass
            else:
                leader = msg.src if type(msg) is AppendEntries else NO_NODE
                self._become_follower(term, leader, f"higher term {term} from node {msg.src}")
        elif term < ours:
            self._on_stale(msg)
            return
        # The two types of every replication round go to their handlers directly (one call
        # and a walk down _handle's tests less per message); the rest through _handle.
        if type(msg) is AppendEntries:
            self._on_append(msg)
        elif type(msg) is AppendEntriesResponse:
            self._on_append_response(msg)
        else:
            self._handle(msg)

    def _handle(self, msg: Message) -> None:
        """The handler of ``msg``'s type, for a message of our term."""
        if isinstance(msg, AppendEntries):
            self._on_append(msg)
        elif isinstance(msg, AppendEntriesResponse):
            self._on_append_response(msg)
        elif isinstance(msg, RequestVote):
            self._on_request_vote(msg)
        elif isinstance(msg, RequestVoteResponse):
            self._on_vote_response(msg)
        elif isinstance(msg, ReadIndexRequest):
            self._on_read_request(msg)
        elif isinstance(msg, ReadIndexResponse):
            self._on_read_response(msg)
        elif isinstance(msg, TimeoutNow):
            self._on_timeout_now(msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(msg)

    def _on_stale(self, msg: Message) -> None:
        """A message from an older term (§5.1: reject it, telling the sender our term)."""
        if isinstance(msg, AppendEntries):
            # An old leader learns our newer term and steps down.
            self._send(AppendEntriesResponse(self._term, self._id, msg.src, False))
        elif isinstance(msg, RequestVote):
            self._send(RequestVoteResponse(self._term, self._id, msg.src, False, msg.pre_vote))
        elif isinstance(msg, ReadIndexRequest):
            self._send(ReadIndexResponse(self._term, self._id, msg.src, msg.request_id, 0))
        # Stale responses and TimeoutNow carry nothing we may act on.

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

    def _become_follower(
        self, term: int, leader: NodeId, reason: str, keep_timer: bool = False,
    ) -> None:
        if term < self._term:
            raise AssertionError(f"term would decrease from {self._term} to {term}")
        if term > self._term:
            self._term = term
            self._vote = NO_NODE
        if self._role is _LEADER:
            self._drop_leader_reads()
            self._progress = {}
            self._transfer_target = NO_NODE
        self._role = _FOLLOWER
        self._role_reason = reason
        self._set_leader(leader)
        self._votes = {}
        if not keep_timer:
            self._reset_election_timer()

    # --- output ----------------------------------------------------------------------------
