"""Membership changes inside the core: proposing them, and the moment they take effect.

The rules are in ``membership.py``. Here:

- ``propose_conf_change`` (leader): one change at a time, never before this leader committed
  an entry of its own term; the entry holds the whole resulting configuration.
- ``_take_effect``: called with the committed entries as they are handed out to be applied;
  a CONF entry among them becomes the configuration in force (so a node's configuration
  always matches its applied prefix, and a snapshot taken at the applied index carries the
  right one).
- ``_decision_conf``: quorums (elections, commits, CheckQuorum, ReadIndex) follow the latest
  configuration in the log instead, committed or not (the thesis's rule); who may campaign is
  any voter of the applied configuration or of one the log brings.
- ``_use_conf``: derive the voter and peer sets from a configuration; a leader adds and drops
  follower progress, and steps down when it is no longer a voter (thesis §4.2.2).
- A joint configuration that took effect on the leader is left by the leader itself.

Invariants: learners are never in ``_voter_ids``; on a leader, ``_progress`` has exactly the
members of the applied configuration and of those the log brings, other than itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import trait

from raftlib.core import membership, quorum
from raftlib.core.membership import Change
from raftlib.core.progress import Progress
from raftlib.core.state import CoreState
from raftlib.core.types import NO_NODE, ConfState, Entry, EntryKind, NodeId, Role
from raftlib.errors import ChangeInProgress, NotLeader, ProposalDropped

# Decoded configurations of CONF entries kept (by index and term); cleared when full.
CONF_CACHE_ENTRIES_MAX = 64


@trait
class ReconfigureMixin(CoreState):
    @property
    def is_voter(self) -> bool:
        """Whether this node's vote counts in the configuration in force or one its log
        brings (it may campaign)."""
        return self._id in self._all_voters()

    # --- which configuration decides --------------------------------------------------------
    # A configuration takes effect (``_conf``, the API's and the snapshot's) only when applied,
    # but elections, commits, CheckQuorum and ReadIndex follow the LATEST configuration in the
    # log, committed or not (thesis §4.1, as LogCabin and hashicorp/raft do). Counting only the
    # applied one is unsafe here: a node restarted from an older snapshot (the commit index is
    # made durable lazily), or a new leader that has not applied an inherited change, would
    # commit with the old voters alone entries the new configuration must hold -- two majorities
    # that do not intersect (swarm seed 462). Counting every configuration of the log is safe
    # but can deadlock: after a leader committed its own removal and stepped down, the others
    # still needed its vote for their applied configuration, which it refused them (seed 141).
    # The leader proposes a change only once the previous one was applied (``change_pending``),
    # so two configurations that follow each other always have overlapping majorities.

    def _log_confs(self) -> list[ConfState]:
        """The configurations of the CONF entries of our log beyond the applied prefix, in log
        order (usually none)."""
        handed = self._apply_handed
        confs = (self._log_conf(index) for index in self._log.conf_indexes if index > handed)
        return [conf for conf in confs if conf is not None]

    def _log_conf(self, index: int) -> ConfState | None:
        """The configuration of the CONF entry at ``index`` (decoded once per index and term);
        None for a corrupt one, which is refused loudly when it would take effect."""
        entry = self._log.entry(index)
        key = (index, entry.term)
        cache = self._conf_cache
        conf = cache.get(key)
        if conf is None:
            try:
                conf = membership.decode_conf(entry.data)
            except ValueError:
                return None
            if len(cache) >= CONF_CACHE_ENTRIES_MAX:
                cache.clear()
            cache[key] = conf
        return conf

    def _decision_conf(self) -> ConfState:
        """The configuration whose quorums decide: the latest in the log (the one applied when
        the log brings none beyond it)."""
        handed = self._apply_handed
        for index in reversed(self._log.conf_indexes):
            if index <= handed:
                break
            conf = self._log_conf(index)
            if conf is not None:
                return conf
        return self._conf

    # A configuration with no voter (a joining node's, before any) decides nothing.

    def _committed_by_quorum(self, matches: dict[NodeId, int]) -> int:
        conf = self._decision_conf()
        if not conf.voters:
            return 0
        return quorum.joint_committed_index(conf.voters, conf.voters_outgoing, matches)

    def _read_confirmed(self) -> int:
        """The highest read_ctx (heartbeat round) a quorum has echoed: ReadIndex and the
        lease both count from it."""
        acks = {peer: pr.read_acked for peer, pr in self._progress.items()}
        acks[self._id] = self._read_seq
        return self._committed_by_quorum(acks)

    def _vote_result(self, votes: dict[NodeId, bool]) -> quorum.VoteResult:
        conf = self._decision_conf()
        if not conf.voters:
            return quorum.VoteResult.LOST
        return quorum.joint_vote_result(conf.voters, conf.voters_outgoing, votes)

    def _has_quorum(self, members: list[NodeId]) -> bool:
        conf = self._decision_conf()
        return bool(conf.voters) and quorum.joint_has_quorum(
            conf.voters, conf.voters_outgoing, members)

    def _all_voters(self) -> frozenset[NodeId]:
        """Voters of the applied configuration and of every one the log brings: each may
        campaign. A node whose latest configuration leaves it out may still be needed: while
        that configuration is not committed the cluster may depend on its vote (or its log),
        and a leader need not be a member of the configuration it manages (thesis §4.2.2)."""
        pending = self._log_confs()
        if not pending:
            return self._voter_ids
        return self._voter_ids.union(*(membership.voters_of(c) for c in pending))

    def _all_members(self) -> frozenset[NodeId]:
        return frozenset().union(*(membership.members_of(c)
                                   for c in (self._conf, *self._log_confs())))

    @property
    def change_pending(self) -> bool:
        """Whether a configuration change this leader appended has not taken effect yet."""
        return self._pending_conf_index > self._apply_handed

    def propose_conf_change(self, changes: Sequence[Change]) -> int:
        """Append the configuration ``changes`` lead to (leader only); returns its index. It
        takes effect once committed (``Ready.committed`` hands it out). Raises NotLeader,
        ChangeInProgress (the previous change, or this leader's first commit, is not done:
        retry), ProposalDropped (leadership transfer under way) or MembershipError."""
        if self._role is not Role.LEADER or self._halted:
            raise NotLeader(self._leader)
        if self._transfer_target != NO_NODE:
            raise ProposalDropped(
                f"leadership transfer to node {self._transfer_target} in progress"
            )
        if self.change_pending:
            raise ChangeInProgress(
                f"the configuration entry at index {self._pending_conf_index} has not taken "
                f"effect yet (applied {self._apply_handed})"
            )
        return self._append_conf(membership.apply_changes(self._conf, tuple(changes)))

    def _append_conf(self, conf: ConfState) -> int:
        log = self._log
        index = log.last_index + 1
        log.append([Entry(self._term, index, membership.encode_conf(conf), EntryKind.CONF)])
        self._pending_conf_index = index
        self._send_pending = True
        # Its members count from now on (their quorum is needed): replicate to them.
        self._track_members()
        return index

    def _track_members(self) -> None:
        """A leader follows every member of every configuration that counts (progress added
        for new ones, dropped for members of none)."""
        if self._role is not Role.LEADER:
            return
        progress = self._progress
        members = self._all_members() - {self._id}
        for gone in [peer for peer in progress if peer not in members]:
            del progress[gone]
        first_new = self._log.last_index + 1
        for peer in sorted(members):
            if peer not in progress:
                progress[peer] = Progress(first_new, self.config.inflight_appends_max,
                                          self._stream_ids)
                self._send_pending = True

    def _take_effect(self, entries: Sequence[Entry]) -> None:
        """``entries`` are committed and handed out to be applied: configurations among them
        take effect now, in log order."""
        conf_kind = EntryKind.CONF
        for entry in entries:
            if entry.kind is conf_kind:
                try:
                    conf = membership.decode_conf(entry.data)
                except ValueError as exc:
                    # Committed, so the cluster agreed on it: no correct leader writes this.
                    self._anomaly(f"committed entry {entry.index} is no configuration: {exc}",
                                  fatal=True)
                    return
                self._use_conf(conf)
        self._maybe_leave_joint()

    def _maybe_leave_joint(self) -> None:
        """A leader whose joint configuration took effect appends the entry leaving it (the
        "auto leave" of etcd's ConfChangeV2): the change finishes without an operator."""
        if (
            self._conf.voters_outgoing
            and self._role is Role.LEADER
            and not self.change_pending
            and self._transfer_target == NO_NODE
        ):
            self._append_conf(membership.leave_joint(self._conf))

    def _use_conf(self, conf: ConfState) -> None:
        self._conf = conf
        self._voter_ids = membership.voters_of(conf)
        me = self._id
        if self._role is Role.LEADER:
            self._track_members()
            if self._transfer_target not in self._voter_ids:
                self._transfer_target = NO_NODE
            if me not in self._voter_ids:
                # Removed (thesis §4.2.2): the change is committed, so the cluster goes on
                # without us; stop leading and never campaign again (not a voter).
                self._become_follower(self._term, NO_NODE, "removed from the configuration")
            else:
                # A different quorum may already hold more (or confirm pending reads).
                self._maybe_commit()
                self._check_reads()
        elif self._role is not Role.FOLLOWER and me not in self._voter_ids:
            self._become_follower(self._term, NO_NODE, "not a voter of the new configuration")
