"""Lease reads (thesis §6.4.1; etcd-io/raft's ReadOnlyLeaseBased): a leader that a quorum
acknowledged recently answers a read at its commit index at once, without the heartbeat round
ReadIndex waits for (reads.py). Off unless ``CoreConfig.lease_reads``.

Why it is safe. With CheckQuorum on, a follower that heard from its leader refuses to help
elect another for ``election_timeout_ticks_min`` of its own ticks (``_in_lease`` in
election.py). If a quorum acknowledged a round this leader SENT at tick s, every other leader
needs a vote from one of that quorum, which cannot come before that voter counted
``election_timeout_ticks_min`` ticks after it received the round, later than s. So until
s + lease (our ticks), where lease = ``election_timeout_ticks_min - lease_drift_ticks``, no newer
leader can exist, no write can have committed without us, and our commit index (once an entry
of our term committed it) covers every acknowledged write. Measuring from when the
acknowledgements ARRIVED instead would stretch the lease by a round trip plus any time the
round sat in a queue: wrong.

Invariants (``Lease.check``):
- a lease belongs to one term: rounds stamped in an earlier term never count, and there is
  none in a new term until a quorum acknowledged a round of it;
- a round's stamp is no later than the sending of any message that carries its sequence
  number: it is stamped when that number is created, before anything carries it. An
  acknowledged number created elsewhere (a ReadIndex round) maps to the newest stamped round
  at or below it, which was stamped earlier still: a shorter lease, never a longer one;
- stamped rounds ascend in sequence number and tick; rounds older than the lease are
  forgotten (they can grant none), and at most ``LEASE_ROUNDS_MAX`` are held;
- no lease for the rest of a term once a leadership transfer started in it: the successor's
  TimeoutNow makes voters grant at once (transfer votes skip the vote lease);
- a node that (re)started refuses (pre)votes for its first ``election_timeout_ticks_min``
  ticks: a restart forgets the leader it acknowledged, and with it the vote lease it owes.

What it assumes (README, "Lease reads"): the clock rates of any two nodes differ by less than
the drift bound covers; a tick is not lost (a process that stalled delivers the ticks it
missed before it serves a read); every node runs the same ``election_timeout_ticks_min`` with
CheckQuorum on.
"""

from __future__ import annotations

from collections import deque

from mypy_extensions import trait

from raftlib.core.state import CoreState
from raftlib.core.types import NO_NODE, NodeId, ReadIndexResponse, ReadState, Role

# Stamped rounds a leader remembers. Rounds older than the lease are dropped on every tick, so
# about lease / heartbeat_interval_ticks are held; this bound only keeps a misconfiguration
# from growing memory (dropping the oldest shortens no lease that a newer round grants).
LEASE_ROUNDS_MAX = 1024


class Lease:
    """A leader's clock (ticks it counted) and the heartbeat rounds it stamped this term."""

    __slots__ = ("now_ticks", "rounds", "served", "started_ticks", "term", "voided_term")

    def __init__(self) -> None:
        self.now_ticks = 0
        # Ticks since this core started (in any role), counted up to the point where they
        # stop mattering (``_lease_fresh_start``).
        self.started_ticks = 0
        self.term = 0
        # (sequence number, tick it was created at), ascending in both.
        self.rounds: deque[tuple[int, int]] = deque()
        # The term in which a leadership transfer voided the lease (0: none).
        self.voided_term = 0
        # Reads answered under a lease (for tests and statistics).
        self.served = 0

    def check(self) -> None:
        rounds = self.rounds
        if len(rounds) > LEASE_ROUNDS_MAX:
            raise AssertionError(f"{len(rounds)} lease rounds held, over {LEASE_ROUNDS_MAX}")
        for (seq_a, tick_a), (seq_b, tick_b) in zip(rounds, list(rounds)[1:], strict=False):
            if not (seq_a < seq_b and tick_a <= tick_b):
                raise AssertionError(f"lease rounds out of order: {list(rounds)}")
        if rounds and rounds[-1][1] > self.now_ticks:
            raise AssertionError(f"lease round stamped in the future: {rounds[-1]}")

    def tick(self, lease_ticks: int) -> None:
        self.now_ticks += 1
        rounds = self.rounds
        while rounds and self.now_ticks - rounds[0][1] >= lease_ticks:
            rounds.popleft()

    def stamp(self, term: int, seq: int) -> None:
        """Round ``seq`` is created now, before any message carries it."""
        if term != self.term:
            self.rounds.clear()
            self.term = term
        rounds = self.rounds
        if rounds and seq <= rounds[-1][0]:
            raise AssertionError(f"lease round {seq} stamped after round {rounds[-1][0]}")
        rounds.append((seq, self.now_ticks))
        if len(rounds) > LEASE_ROUNDS_MAX:
            rounds.popleft()

    def void(self, term: int) -> None:
        self.voided_term = term

    def ticks_left(self, term: int, acked_seq: int, lease_ticks: int) -> int:
        """Ticks the lease lasts given that a quorum acknowledged round ``acked_seq`` of
        ``term`` (0: no lease)."""
        if term != self.term or term == self.voided_term:
            return 0
        start = None
        for seq, tick in reversed(self.rounds):
            if seq <= acked_seq:
                start = tick
                break
        if start is None:
            return 0
        return max(0, start + lease_ticks - self.now_ticks)


@trait
class LeaseMixin(CoreState):
    _lease: Lease

    def _lease_ticks(self) -> int:
        """How long a lease lasts after the round that grants it was sent (validated > 0 by
        CoreConfig whenever lease_reads is on)."""
        cfg = self.config
        return cfg.election_timeout_ticks_min - cfg.lease_drift_ticks

    def _lease_started_tick(self) -> None:
        """Any node's tick (``RaftCore.tick``)."""
        lease = self._lease
        if lease.started_ticks < self.config.election_timeout_ticks_min:
            lease.started_ticks += 1

    def _lease_fresh_start(self) -> bool:
        """Whether this node must refuse (pre)votes because it (re)started less than an
        election timeout ago: in its previous life it may have acknowledged a leader's round
        that grants a lease still running, and it forgot which leader that was (the leader
        is volatile state). It behaves as if it had just heard from that leader. Only with
        lease reads on: otherwise nothing relies on the vote lease beyond liveness."""
        cfg = self.config
        return cfg.lease_reads and self._lease.started_ticks < cfg.election_timeout_ticks_min

    def _lease_tick(self) -> None:
        """A leader's tick (``_tick_leader``)."""
        if not self.config.lease_reads:
            return
        self._lease_watch_transfer()
        self._lease.tick(self._lease_ticks())

    def _lease_new_round(self) -> None:
        """Before a leader's heartbeat broadcast: a new read_ctx, stamped now, so that the
        followers' echoes of it renew the lease from this moment."""
        if not self.config.lease_reads:
            return
        self._read_seq += 1
        self._lease.stamp(self._term, self._read_seq)
        self._lease.check()

    def _lease_watch_transfer(self) -> None:
        if self._transfer_target != NO_NODE:
            self._lease.void(self._term)

    def lease_ticks_left(self) -> int:
        """Ticks this node's read lease still lasts (0: none; reads take a ReadIndex round)."""
        if not self.config.lease_reads or self._role is not Role.LEADER or self._halted:
            return 0
        self._lease_watch_transfer()
        return self._lease.ticks_left(self._term, self._read_confirmed(), self._lease_ticks())

    @property
    def lease_reads_served(self) -> int:
        """Reads this node answered under its lease, without a heartbeat round."""
        return self._lease.served

    def _lease_read(self, request_id: int, origin: NodeId) -> bool:
        """Answer a read at the commit index now if the lease holds and an entry of our term
        is committed (before that our commit index may lag the cluster's: thesis §6.4 step
        1). Returns False when the read must take the ReadIndex path instead."""
        if not self.config.lease_reads or self._log.term(self._commit) != self._term \
                or self.lease_ticks_left() <= 0:
            return False
        self._lease.served += 1
        if origin == self._id:
            self._read_states.append(ReadState(request_id, self._commit))
        else:
            self._send(ReadIndexResponse(self._term, self._id, origin, request_id, self._commit))
        return True
