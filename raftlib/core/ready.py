"""The output side: what the core hands the driver (``Ready``) and what it learns back
(``advance``). The contract is written on ``raftlib.core.types.Ready`` and in ``raft.py``."""

from __future__ import annotations

from mypy_extensions import trait

from raftlib.core.state import CoreState
from raftlib.core.types import (
    AppendEntries,
    Entry,
    HardState,
    Ready,
    Role,
    SoftState,
)

# Enum members compared on every message, as module constants: on Python 3.11 a class
# attribute of an Enum (``Role.LEADER``) misses the attribute cache, since EnumType
# defines __getattr__ (about 60 ns a lookup against 10 for a global).
_LEADER = Role.LEADER


@trait
class ReadyMixin(CoreState):
    def has_ready(self) -> bool:
        """Whether ``ready()`` would return anything. A pure query: it changes no state (in
        particular no follower's flow control), so asking twice, or asking and not taking,
        is harmless. Owed appends count only when ``_flush`` would really send one, so an
        acknowledgement that unblocks nothing does not cost the driver an empty Ready."""
        if self._outstanding is not None:
            return False
        # Called after every input, and mostly answers False: the plain attribute tests come
        # first, the walk over the followers (``_owes_appends``) last.
        if (
            self._msgs
            or self._read_states
            or self._dropped_reads
            or self._anomalies
            or self._snapshot_to_install is not None
        ):
            return True
        log = self._log
        if log.handed < log.last_index:
            return True
        handed = self._apply_handed
        commit = self._commit
        if commit > handed and log.persisted > handed and not self._halted:
            return True  # min(commit, persisted) entries may be applied
        prev = self._prev_hard
        if prev.commit != commit or prev.term != self._term or prev.vote != self._vote:
            return True
        soft = self._prev_soft
        if soft.role is not self._role or soft.leader != self._leader:
            return True
        # (_owes_appends answers False at once without a pass pending: not asked then.)
        return (self._send_pending or self._read_bcast_pending) and self._owes_appends()

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
        if not msgs:
            return []
        appends = [m for m in msgs if type(m) is AppendEntries]
        if appends:
            self._msgs = [m for m in msgs if type(m) is not AppendEntries]
        return appends

    def ready(self) -> Ready:
        """Everything to persist, send and apply since the last Ready (see the module doc).
        Must be followed by ``advance(ready)`` before the next call."""
        if self._outstanding is not None:
            raise AssertionError("ready() called again before advance() of the previous Ready")
        log = self._log
        # The appends this leader owes now (its new commit index among them) are built
        # before a configuration takes effect: a leader that the change removes still tells
        # its followers that the change committed before it steps down. (What ``_flush`` does
        # on any other node, written out: most Readies are a follower's.)
        if self._role is _LEADER:
            self._flush()
        else:
            self._send_pending = self._read_bcast_pending = False
        handed = self._apply_handed
        committed: tuple[Entry, ...] = ()
        if self._commit > handed and log.persisted > handed and not self._halted:
            apply_to = min(self._commit, log.persisted)
            committed = tuple(log.slice(handed + 1, apply_to))
            self._apply_handed = apply_to
            # Configurations among them take effect now (reconfigure.py), before the rest of
            # this Ready is assembled: what that changes (a removed leader stepping down, new
            # followers to send to) goes out with it.
            self._take_effect(committed)
            self._flush()  # (without this block the first flush left nothing to send)
        prev_hard = self._prev_hard
        hard_out = None
        term, vote, commit = self._term, self._vote, self._commit
        if prev_hard.commit != commit or prev_hard.term != term or prev_hard.vote != vote:
            hard_out = self._prev_hard = HardState(term, vote, commit)
        soft_out = None
        prev_soft = self._prev_soft
        role, leader = self._role, self._leader
        if prev_soft.role is not role or prev_soft.leader != leader:
            soft_out = self._prev_soft = SoftState(role, leader, self._role_reason)
        # Most Readies carry a message or two and nothing else: an empty list is handed as
        # () and kept (nothing else holds it), not copied and replaced.
        msgs = self._msgs
        if msgs:
            self._msgs = []
        read_states = self._read_states
        if read_states:
            self._read_states = []
        dropped_reads = self._dropped_reads
        if dropped_reads:
            self._dropped_reads = []
        anomalies = self._anomalies
        if anomalies:
            self._anomalies = []
        # (Positional: a Struct built from keywords costs a lookup per field. In field order:
        # hard_state, entries, messages, committed, read_states, dropped_reads, soft_state,
        # anomalies, snapshot, snapshot_keeps_log.)
        ready = Ready(
            hard_out,
            log.take_unhanded() if log.handed < log.last_index else (),
            tuple(msgs) if msgs else (),
            committed,
            tuple(read_states) if read_states else (),
            tuple(dropped_reads) if dropped_reads else (),
            soft_out,
            tuple(anomalies) if anomalies else (),
            self._snapshot_to_install,
            self._snapshot_keeps_log,
        )
        self._snapshot_to_install = None
        self._snapshot_keeps_log = False
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
        if self._role is _LEADER and (ready.entries or ready.committed):
            # Our own persisted entries now count towards the commit quorum (and entries that
            # took effect may have changed the quorum). A Ready with neither changed nothing
            # _maybe_commit looks at since its last call: acknowledgements that could advance
            # commit call it themselves (leader.py), so asking again would find the same.
            self._maybe_commit()

    def _check_invariants(self) -> None:
        log = self._log
        log.check()
        base = log.base_index
        snap_index = self._snapshot.index if self._snapshot is not None else 0
        if base > snap_index:
            raise AssertionError(
                f"node {self._id}: log compacted to {log.base_index} beyond the snapshot "
                f"at {snap_index}"
            )
        if not 0 <= self._applied <= self._apply_handed <= self._commit <= log.last_index:
            raise AssertionError(
                f"node {self._id}: expected applied {self._applied} <= handed "
                f"{self._apply_handed} <= commit {self._commit} <= last {log.last_index}"
            )
        if self._role is _LEADER:
            if self._vote != self._id or self._leader != self._id:
                raise AssertionError(f"node {self._id}: leader without its own vote")
            next_max = log.last_index + 1
            for pr in self._progress.values():
                pr.check()
                if pr.next > next_max:
                    raise AssertionError(f"node {self._id}: next past our log: {pr!r}")
