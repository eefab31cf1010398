"""A follower's side of replication: AppendEntries (§5.3) checked against what it committed
(§5.4), rejections with fast-backtracking hints, and installing a leader's snapshot (§7)."""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import trait

from raftlib.core.state import CoreState
from raftlib.core.types import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    NodeId,
    Role,
    SnapshotMeta,
)

# Enum members compared on every message, as module constants: on Python 3.11 a class
# attribute of an Enum (``Role.LEADER``) misses the attribute cache, since EnumType
# defines __getattr__ (about 60 ns a lookup against 10 for a global).
_LEADER = Role.LEADER
_FOLLOWER = Role.FOLLOWER


@trait
class FollowerMixin(CoreState):
    def _follow(self, leader: NodeId) -> bool:
        """A message from ``leader`` as the leader of our term: follow it (and restart the
        election timer), unless that would mean two leaders in one term (§5.2: never obey
        that; it is reported). Returns whether to go on with the message."""
        if self._role is _LEADER:
            self._anomaly(f"two leaders in term {self._term}: this node and node {leader}")
            return False
        if self._role is not _FOLLOWER:
            # §5.2: a candidate that hears from the leader of its term returns to follower.
            self._become_follower(self._term, leader, f"node {leader} leads term {self._term}")
        elif self._leader != leader:
            if self._leader != NO_NODE:
                self._anomaly(
                    f"two leaders in term {self._term}: node {self._leader} and node {leader}"
                )
                return False
            self._set_leader(leader)
        self._election_elapsed = 0
        return True

    def _on_append(self, msg: AppendEntries) -> None:
        if self._role is _FOLLOWER and self._leader == msg.src:
            # What ``_follow`` does for the leader we already follow (almost every append).
            self._election_elapsed = 0
        elif not self._follow(msg.src):
            return
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
            if not entries:
                # A heartbeat at or below our commit index: it matches up to prev.
                self._reply_append(msg, prev)
                return
            skip = min(commit - prev, len(entries))
            for entry in entries[:skip]:
                ours = log.term(entry.index)
                if ours is not None and ours != entry.term:
                    self._diverged(entry.index, entry.term, msg.src)
                    return
            if skip == len(entries):
                # What was compared, not our commit index: a leader whose log is shorter than
                # our committed one has lost entries, and must send us its own to find out.
                self._reply_append(msg, prev + len(entries))
                return
            entries = entries[skip:]
            prev = commit
        elif log.term(prev) != msg.prev_log_term:
            self._reject_append(msg)
            return
        position = log.find_conflict(entries) if entries else 0
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
        self._reply_append(msg, last_new)

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
        if not self._follow(msg.src):
            return
        meta = msg.meta
        log = self._log
        if not self._snapshot_is_news(meta):
            # Nothing new in it (or one install at a time): say how far we are.
            self._reply_append_to(msg.src, self._commit, 0)
            return
        keeps = self._snapshot_keeps_suffix(meta)
        if keeps:
            # Our log holds its last entry: keep what follows (§5.1 / Figure 13 step 6).
            log.compact(meta.index)
        else:
            log.restore(meta.index, meta.term)
        self._snapshot = meta
        self._use_conf(meta.conf)
        self._commit = meta.index
        # The state machine is replaced wholesale: nothing at or below it is applied again.
        self._apply_handed = meta.index
        self._snapshot_to_install = meta
        self._snapshot_keeps_log = keeps
        self._reply_append_to(msg.src, meta.index, 0)

    def _snapshot_is_news(self, meta: SnapshotMeta) -> bool:
        """A snapshot is taken only when it holds committed entries we lack: one at or below
        our commit index would move the state machine (and commit) backwards."""
        return meta.index > self._commit and self._snapshot_to_install is None

    def _snapshot_keeps_suffix(self, meta: SnapshotMeta) -> bool:
        """Whether our log holds the snapshot's last entry (same index and term, durable):
        then the entries after it are the leader's too and stay (§7, Figure 13 step 6);
        otherwise the whole log goes."""
        log = self._log
        return log.term(meta.index) == meta.term and meta.index <= log.persisted

    def _reply_append_to(self, dst: NodeId, match_index: int, read_ctx: int) -> None:
        self._send(
            AppendEntriesResponse(self._term, self._id, dst, True, match_index, read_ctx=read_ctx)
        )

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
                stream=msg.stream,
            )
        )

    def _reply_append(self, msg: AppendEntries, match_index: int) -> None:
        self._msgs.append(  # (as _send does: one call less per append answered)
            # Positional (a Struct built from keywords costs a lookup per keyword): term, src,
            # dst, success, match_index, conflict_index, conflict_term, read_ctx, stream.
            AppendEntriesResponse(
                self._term, self._id, msg.src, True, match_index, 0, 0, msg.read_ctx,
                msg.stream,
            )
        )
