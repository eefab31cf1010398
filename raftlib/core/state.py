"""The state every part of ``RaftCore`` shares, declared once.

``RaftCore`` (``raft.py``) is assembled from parts that each hold one concern of the algorithm,
as etcd-io/raft keeps raft.go, read_only.go, tracker/ and rawnode.go apart:

- ``raft.py``      roles, terms, message dispatch (Figure 2, §5.1)
- ``election.py``  PreVote, votes, TimeoutNow (§5.2, §9.6, §3.10)
- ``follower.py``  a follower's side of replication and snapshots (§5.3, §5.4, §7)
- ``leader.py``    a leader's side: proposals, flow control, commit, transfers (§5.3, §3.10)
- ``reads.py``     linearizable reads through ReadIndex (thesis §6.4)
- ``reconfigure.py`` membership changes as log entries (thesis §4.3; rules in membership.py)
- ``ready.py``     the output batch and its contract with the driver
- ``validation.py``, ``restart.py``: what input and what durable state are plausible

This class only declares the fields (set by ``RaftCore.__init__``) and the few operations
every part uses, so each part type-checks on its own.

Each part is marked ``@trait`` (a no-op when interpreted): the optional native build
(``raftlib.native``) compiles the core with mypyc, which takes multiple inheritance only from
traits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import attrs
from mypy_extensions import trait

from raftlib.core.config import CoreConfig, Rng
from raftlib.core.log import RaftLog
from raftlib.core.progress import Progress, StreamIds
from raftlib.core.quorum import VoteResult
from raftlib.core.types import (
    Anomaly,
    ConfState,
    Entry,
    HardState,
    Message,
    NodeId,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)

# Anomaly descriptions held for the next Ready; past it they are only counted (a peer gone
# wrong must not grow our memory).
ANOMALIES_QUEUED_MAX = 64


@attrs.define
class PendingRead:
    seq: int
    request_id: int
    # Who asked: this node (a local reader) or a follower that forwarded the request.
    origin: NodeId
    # The commit index the read must wait for; None until this leader has committed an entry
    # of its own term (before that its commit index may be behind the true one).
    index: int | None


@trait
class CoreState:
    config: CoreConfig
    _election_timeout_min: int  # config.election_timeout_ticks_min, read on every tick
    _rng: Rng
    _id: NodeId
    # The voters of ``_conf`` (both sets of a joint one), kept by ``_use_conf``: who may
    # lead once a configuration took effect (quorums use ``_decision_conf``).
    _voter_ids: frozenset[NodeId]
    # The index of the last configuration entry this leader appended (at election: its last
    # index, so that no change is accepted before it commits an entry of its own term). A
    # new change waits until the previous one took effect (membership.py).
    _pending_conf_index: int
    # Decoded configurations of CONF entries, by (index, term).
    _conf_cache: dict[tuple[int, int], ConfState]
    # Persistent state (Figure 2) and the log.
    _term: int
    _vote: NodeId
    _commit: int
    _log: RaftLog
    # The latest durable snapshot (what a follower behind the log's start is sent), the
    # configuration in force, and a received snapshot accepted for the next Ready.
    _snapshot: SnapshotMeta | None
    _conf: ConfState
    _snapshot_to_install: SnapshotMeta | None
    _snapshot_keeps_log: bool
    _applied: int
    # Highest index given to the driver in Ready.committed (applied once advanced).
    _apply_handed: int
    # Volatile state.
    _role: Role
    _leader: NodeId
    _election_elapsed: int
    _heartbeat_elapsed: int
    _randomized_timeout: int
    _votes: dict[NodeId, bool]
    _progress: dict[NodeId, Progress]
    # Stream ids of this leadership's appends, shared by every follower's progress.
    _stream_ids: StreamIds
    _transfer_target: NodeId
    # Why the role last changed (SoftState.reason).
    _role_reason: str
    # Output being collected for the next Ready.
    _msgs: list[Message]
    # The leader owes followers an AppendEntries pass (new entries, new commit index,
    # unpaused progress): done once per Ready in _flush so proposals batch up.
    _send_pending: bool
    _read_bcast_pending: bool
    _read_seq: int
    _pending_reads: deque[PendingRead]
    _forwarded_reads: dict[int, NodeId]
    _read_states: list[ReadState]
    _dropped_reads: list[int]
    # What the driver was last handed, and the Ready it has not advanced yet.
    _prev_hard: HardState
    _prev_soft: SoftState
    _outstanding: Ready | None
    _invalid_messages: int
    _safety_anomalies: int
    _anomalies: list[Anomaly]
    # Set by a fatal anomaly: the node's committed state disagrees with the cluster's, so
    # it takes no more input (the driver stops it once it has the Ready saying why).
    _halted: bool

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _anomaly(self, text: str, *, fatal: bool = False) -> None:
        """Record what Raft says cannot happen; the driver logs it (``Ready.anomalies``)."""
        self._safety_anomalies += 1
        if len(self._anomalies) < ANOMALIES_QUEUED_MAX:
            self._anomalies.append(Anomaly(f"node {self._id}: {text}", fatal))
        if fatal:
            self._halted = True

    # Implemented by the parts (declared here so each part type-checks alone).

    def _become_follower(
        self, term: int, leader: NodeId, reason: str, keep_timer: bool = False,
    ) -> None:
        raise NotImplementedError

    def _set_leader(self, leader: NodeId) -> None:
        raise NotImplementedError

    def _reset_election_timer(self) -> None:
        raise NotImplementedError

    def _become_leader(self) -> None:
        raise NotImplementedError

    def _check_reads(self) -> None:
        raise NotImplementedError

    def _drop_leader_reads(self) -> None:
        raise NotImplementedError

    def _maybe_commit(self) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _owes_appends(self) -> bool:
        raise NotImplementedError

    def _check_invariants(self) -> None:
        raise NotImplementedError

    def _use_conf(self, conf: ConfState) -> None:
        raise NotImplementedError

    # Quorums of the configuration that decides: the latest in the log (reconfigure.py).

    def _decision_conf(self) -> ConfState:
        raise NotImplementedError

    def _committed_by_quorum(self, matches: dict[NodeId, int]) -> int:
        raise NotImplementedError

    def _read_confirmed(self) -> int:
        raise NotImplementedError

    def _vote_result(self, votes: dict[NodeId, bool]) -> VoteResult:
        raise NotImplementedError

    def _has_quorum(self, members: list[NodeId]) -> bool:
        raise NotImplementedError

    def _all_voters(self) -> frozenset[NodeId]:
        raise NotImplementedError

    def _all_members(self) -> frozenset[NodeId]:
        raise NotImplementedError

    def _take_effect(self, entries: Sequence[Entry]) -> None:
        raise NotImplementedError
