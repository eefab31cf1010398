"""A leader's side: proposals, per-follower flow control, commit by quorum (§5.3, §5.4.2),
snapshots for followers behind the log's start, CheckQuorum and leadership transfer."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

from mypy_extensions import trait

from raftlib.core.lease import LeaseMixin
from raftlib.core.progress import Progress, ProgressState, StreamIds
from raftlib.core.types import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    NodeId,
    Role,
    SnapshotMeta,
    TimeoutNow,
)
from raftlib.errors import ConfigError, NotLeader, ProposalDropped, ProposalQueueFull

# Enum members compared on every message, as module constants: on Python 3.11 a class
# attribute of an Enum (``Role.LEADER``) misses the attribute cache, since EnumType
# defines __getattr__ (about 60 ns a lookup against 10 for a global).
_LEADER = Role.LEADER
_CANDIDATE = Role.CANDIDATE
_SNAPSHOT = ProgressState.SNAPSHOT
_PROBE = ProgressState.PROBE

# A snapshot transfer that shows no progress (``snapshot_progress``) for this many election
# timeouts is presumed lost: the follower is probed again, which restarts it.
SNAPSHOT_STALL_ELECTION_TIMEOUTS = 5


@trait
class LeaderMixin(LeaseMixin):
    def _tick_leader(self) -> None:
        cfg = self.config
        if cfg.lease_reads:  # (what ``_lease_tick`` tests first: a call less per tick)
            self._lease_tick()
        stall = SNAPSHOT_STALL_ELECTION_TIMEOUTS * cfg.election_timeout_ticks_max
        for pr in self._progress.values():
            if pr.state is _SNAPSHOT:
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
                if not self._has_quorum(active):
                    self._become_follower(self._term, NO_NODE, "lost quorum (check quorum)")
                    return
                for pr in self._progress.values():
                    pr.recent_active = False
        if self._heartbeat_elapsed >= cfg.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._lease_new_round()
            self._broadcast_heartbeat()

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to ``to`` (thesis §3.10): once its log is caught up it gets a
        TimeoutNow and campaigns at once. Proposals are refused meanwhile; the transfer is
        abandoned after an election timeout."""
        if self._role is not _LEADER:
            raise NotLeader(self._leader)
        if to == self._id:
            return
        if to not in self._all_voters():
            raise ConfigError(f"transfer_leadership: {to!r} is not a voter of this cluster")
        self._transfer_target = to
        self._election_elapsed = 0
        if self._progress[to].match == self._log.last_index:
            self._send(TimeoutNow(self._term, self._id, to))
        else:
            self._send_pending = True

    def propose(self, data: bytes) -> int:
        """Append one command (leader only). Returns its log index; it is committed once it
        shows up in ``Ready.committed``."""
        return self.propose_batch((data,))

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        """Append several commands at once; returns the index of the first. Raises NotLeader
        (with the known leader), ProposalDropped (leadership transfer under way) or
        ProposalQueueFull (more than uncommitted_entries_max entries would await commit)."""
        if self._role is not _LEADER or self._halted:
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

    def _on_append_response(self, msg: AppendEntriesResponse) -> None:
        if self._role is not _LEADER:
            return
        pr = self._progress.get(msg.src)
        if pr is None:
            return  # not a member (any more): nothing to track
        pr.recent_active = True
        if msg.read_ctx > pr.read_acked and msg.read_ctx <= self._read_seq:
            pr.read_acked = msg.read_ctx
            self._check_reads()
        if not pr.is_current(msg.stream):
            # An answer to an earlier stream: what it says about the follower's log is old
            # news (a later answer says more) or misleading (a rejection that would throw the
            # current stream back, or reset match, for an append long superseded).
            return
        if msg.success:
            if msg.match_index > self._log.last_index:
                # A follower cannot match entries we never had.
                self._anomaly(
                    f"node {msg.src} claims to match index {msg.match_index}, beyond this "
                    f"leader's last index {self._log.last_index}"
                )
                return
            if pr.acknowledged(msg.match_index) and pr.match > self._commit:
                self._maybe_commit()  # (a match at or below commit cannot advance it)
            if self._transfer_target == msg.src and pr.match == self._log.last_index:
                self._send(TimeoutNow(self._term, self._id, msg.src))
            # Only what this follower is now owed needs a send pass (entries, or a commit
            # index it has not seen); otherwise every has_ready walked all followers for
            # nothing until the next Ready (8% of the simulator's instructions).
            if pr.owed(self._log.last_index, self._commit):
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
        matches = {peer: pr.match for peer, pr in self._progress.items()}
        matches[self._id] = self._log.persisted
        candidate = self._committed_by_quorum(matches)
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
                    pr.stream,
                )
            )
            pr.sent(batch[-1].index, len(batch))
            pr.commit_sent = self._commit
            sent = True
            if pr.state is _PROBE:
                break
        if sent:
            return
        if heartbeat or (pr.commit_stale(self._commit) and not pr.is_paused()):
            prev = pr.next - 1
            prev_term = log.term(prev)
            if pr.state is _SNAPSHOT:
                # Keep its election timer quiet while the snapshot travels; from a point we
                # still know the term of (its answer is ignored in this state).
                prev, prev_term = log.base_index, log.base_term
            elif prev_term is None:
                self._send_snapshot(peer, pr)
                return
            elif pr.state is _PROBE:
                pr.probe_sent = True  # an empty append is a probe too: its answer counts
            self._msgs.append(
                AppendEntries(
                    term, self._id, peer, prev, prev_term, (), self._commit, self._read_seq,
                    pr.stream,
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
        send_appends = self._send_appends
        for peer, pr in self._progress.items():
            send_appends(peer, pr, True)  # (heartbeat: positional, as below)

    def _owes_appends(self) -> bool:
        """Whether ``_flush`` would send anything now: a pure query, so ``has_ready`` can ask
        without moving any follower's flow control (it mirrors ``_send_appends``' tests)."""
        if self._role is not _LEADER or not (self._send_pending or self._read_bcast_pending):
            return False
        if self._read_bcast_pending:
            return bool(self._progress)  # a heartbeat to every follower
        last = self._log.last_index
        commit = self._commit
        return any(not pr.is_paused() and pr.owed(last, commit) for pr in self._progress.values())

    def _flush(self) -> None:
        """Send the appends owed since the last Ready: one pass over the followers however
        many proposals and acknowledgements arrived meanwhile (batching)."""
        if self._role is not _LEADER:
            self._send_pending = self._read_bcast_pending = False
            return
        if not (self._send_pending or self._read_bcast_pending):
            return
        read_bcast = self._read_bcast_pending
        self._send_pending = self._read_bcast_pending = False
        send_appends = self._send_appends
        for peer, pr in self._progress.items():
            send_appends(peer, pr, read_bcast)  # (heartbeat: a keyword costs a lookup per call)

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
        if pr is not None and pr.state is _SNAPSHOT:
            pr.snapshot_elapsed = 0

    def snapshot_failed(self, peer: NodeId) -> None:
        """The transfer to ``peer`` broke off: probe it again (which retries the snapshot)."""
        pr = self._progress.get(peer)
        if pr is not None and pr.state is _SNAPSHOT:
            pr.become_probe()
            self._send_pending = True

    def _become_leader(self) -> None:
        if self._role is not _CANDIDATE:
            raise AssertionError(f"only a candidate may become leader, not a {self._role}")
        self._role = _LEADER
        self._role_reason = f"won the election of term {self._term}"
        self._set_leader(self._id)
        self._votes = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._transfer_target = NO_NODE
        log = self._log
        inflight_max = self.config.inflight_appends_max
        self._stream_ids = StreamIds()
        self._progress = {peer: Progress(log.last_index + 1, inflight_max, self._stream_ids)
                          for peer in sorted(self._all_members() - {self._id})}
        # A NOOP of our own term: committing it commits every earlier entry (§5.4.2, §8) and
        # lets ReadIndex trust our commit index.
        log.append([Entry(self._term, log.last_index + 1, b"", EntryKind.NOOP)])
        # No configuration change until our NOOP took effect: an entry of our term must commit
        # first (the single-server change bug), and any change an earlier leader left in the
        # log takes effect before we stack another on it (membership.py).
        self._pending_conf_index = log.last_index
        self._send_pending = True
