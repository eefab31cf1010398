"""What a leader knows about one follower's log, and how fast it may send to it.

Two states (as in etcd-io/raft's flow control):

- PROBE: the leader does not know where the follower's log matches its own. It sends one
  AppendEntries at ``next`` and waits for the answer (or the next heartbeat) before sending
  again, so a follower far behind or divergent costs one message per round trip, not a flood.
- REPLICATE: ``match`` is known and the follower accepts appends. The leader streams entries
  optimistically (``next`` moves as soon as a message is sent) with at most
  ``inflight_appends_max`` unacknowledged messages.

Every change of state, and every probe, starts a new *stream*: the appends carry its id and
the follower's answers echo it, so an answer to an earlier stream (late, duplicated or
reordered by the network) is recognised and changes nothing. Without it a stale rejection
could throw a streaming follower back to PROBE, or look like a follower that lost its disk,
and each flip re-sent a whole window: a message storm (swarm seed 513, duplicated messages,
one-entry appends).

Invariant (checked by ``check``): ``0 <= match < next``.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    # The follower needs entries this leader has compacted away: a snapshot is on its way
    # (``pending_snapshot`` is its index). Nothing else is sent but heartbeats until the
    # follower acknowledges it, or the transfer fails or times out (then PROBE again).
    SNAPSHOT = "snapshot"


# The states as module constants, compared on every acknowledgement: on Python 3.11 an Enum's
# class attribute (``ProgressState.PROBE``) misses the attribute cache, since EnumType defines
# __getattr__ (about 60 ns a lookup against 10 for a global).
_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT


class Inflights:
    """The last index of every unacknowledged AppendEntries sent in replicate state, in order.

    Bounded by ``capacity_messages``: when full, the leader stops sending to that follower.
    """

    __slots__ = ("_ends", "capacity_messages")

    def __init__(self, capacity_messages: int) -> None:
        if capacity_messages < 1:
            raise ValueError(f"capacity_messages must be >= 1, got {capacity_messages}")
        self.capacity_messages = capacity_messages
        self._ends: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._ends)

    def full(self) -> bool:
        return len(self._ends) >= self.capacity_messages

    def add(self, last_index: int) -> None:
        ends = self._ends
        if ends and last_index <= ends[-1]:
            raise AssertionError(f"inflight end {last_index} not after {ends[-1]}")
        if len(ends) >= self.capacity_messages:
            raise AssertionError("inflight window overflow")
        ends.append(last_index)

    def free_up_to(self, index: int) -> None:
        """Forget every message whose entries are all acknowledged (end <= index)."""
        ends = self._ends
        while ends and ends[0] <= index:
            ends.popleft()

    def free_first(self) -> None:
        if self._ends:
            self._ends.popleft()

    def reset(self) -> None:
        self._ends.clear()


class StreamIds:
    """The stream ids of one leadership: unique across its followers and their states, so
    that a follower removed and added again in the same term never sees an old id reused."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


class Progress:
    """Leader-side replication state of one follower."""

    __slots__ = (
        "_stream_ids",
        "commit_sent",
        "inflights",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "read_acked",
        "recent_active",
        "snapshot_elapsed",
        "state",
        "stream",
    )

    def __init__(self, next_index: int, inflight_appends_max: int,
                 stream_ids: StreamIds) -> None:
        self._stream_ids = stream_ids
        self.stream = stream_ids.next()
        self.match = 0
        self.next = next_index
        self.state = _PROBE
        # In PROBE: an append is outstanding; wait for its answer or the next heartbeat.
        self.probe_sent = False
        # Heard from since the last CheckQuorum round (thesis §9.6).
        self.recent_active = False
        # Highest read_ctx this follower echoed during this leadership (ReadIndex, §6.4).
        self.read_acked = 0
        # The commit index last sent, so a new one goes out even when no entries do.
        self.commit_sent = 0
        self.pending_snapshot = 0
        # Ticks since the snapshot transfer last made progress (SNAPSHOT state).
        self.snapshot_elapsed = 0
        self.inflights = Inflights(inflight_appends_max)
        self.check()

    def check(self) -> None:
        if not 0 <= self.match < self.next:
            raise AssertionError(f"progress invariant 0 <= match < next broken: {self!r}")

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"inflight={len(self.inflights)}, probe_sent={self.probe_sent})"
        )

    def is_current(self, stream: int) -> bool:
        """Whether an answer naming ``stream`` answers this follower's current stream (0: an
        answer to no append, such as a snapshot's, always counts)."""
        return stream == self.stream or stream == 0

    def become_probe(self) -> None:
        self.stream = self._stream_ids.next()
        self.state = _PROBE
        self.probe_sent = False
        self.inflights.reset()
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.stream = self._stream_ids.next()
        self.state = _SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.snapshot_elapsed = 0
        self.probe_sent = False
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.stream = self._stream_ids.next()
        self.state = _REPLICATE
        self.probe_sent = False
        self.inflights.reset()
        self.next = self.match + 1

    def commit_stale(self, commit: int) -> bool:
        """Whether the follower has not been told a commit index it could use (one up to
        the entries sent to it)."""
        # (min(commit, next - 1) > commit_sent, without the call: asked per follower and
        # acknowledgement, and the first test mostly answers.)
        return commit > self.commit_sent and self.next - 1 > self.commit_sent

    def owed(self, last_index: int, commit: int) -> bool:
        """Whether the leader owes this follower an append: entries it has not been sent, or a
        commit index it has not seen (flow control aside: see ``is_paused``)."""
        return self.next <= last_index or self.commit_stale(commit)

    def is_paused(self) -> bool:
        if self.state is _SNAPSHOT:
            return True
        if self.state is _PROBE:
            return self.probe_sent
        return self.inflights.full()

    def sent(self, last_index: int, entries_count: int) -> None:
        """Record an AppendEntries carrying entries up to ``last_index``."""
        if self.state is _REPLICATE:
            if entries_count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        else:
            self.probe_sent = True

    def acknowledged(self, match_index: int) -> bool:
        """The follower's log matches ours up to ``match_index``. Returns whether match grew."""
        self.probe_sent = False
        grew = match_index > self.match
        if grew:
            self.match = match_index
            if self.next <= match_index:
                self.next = match_index + 1
        if self.state is _SNAPSHOT:
            # The follower installed the snapshot (or already had entries past it).
            if self.match >= self.pending_snapshot:
                self.become_replicate()
        elif self.state is _PROBE:
            # The probe point itself was confirmed: stream from here on.
            if match_index >= self.next - 1:
                self.become_replicate()
        elif grew:
            self.inflights.free_up_to(match_index)
        return grew

    def rejected(self, rejected_index: int, next_hint: int) -> bool:
        """The follower refused an append whose prev_log_index was ``rejected_index``; the
        leader computed ``next_hint`` from the follower's conflict hints. Returns whether the
        rejection was current (a stale or duplicate one changes nothing)."""
        if self.state is _SNAPSHOT:
            return False  # heartbeats while the snapshot travels: their refusal says nothing
        latest = rejected_index == self.next - 1
        if self.state is _REPLICATE:
            if not latest:
                # A refusal of an append with entries: the network may have delivered this
                # stream's appends out of order, the earlier ones still on their way and their
                # acceptances still to count (the appends after it are refused too, so this
                # one may be the latest sent and yet have overtaken one before it). Falling
                # back to probing here made those acceptances stale and re-sent a whole window
                # each time, for a few entries a window: with one-entry appends and jitter, a
                # livelock the simulator stopped as an event storm (swarm seed 1804). Only an
                # empty append at ``next - 1`` (a heartbeat, or a commit index the follower has
                # not seen), sent after every append before it, says the follower lacks
                # something that is not on its way. (At or below match, a refusal is older
                # than what the follower acknowledged since: stale either way.)
                return False
            self.become_probe()
        elif not latest or not self.probe_sent:
            # In PROBE only the answer to the latest probe counts, and only while one is out:
            # right after falling back to PROBE, a rejection of an append sent before (a
            # duplicate, or one overtaken by the messages that followed) names the same
            # index by chance. Counted, it reset match and restarted the catch-up each time:
            # a livelock of one-entry appends (swarm seed 513, duplicated messages).
            return False
        if rejected_index <= self.match:
            # The follower refuses an index it acknowledged: its disk lost entries (wiped,
            # restored from a backup, unsynced writes gone), or this rejection is from before
            # it caught up. Either way forget what it acknowledged and probe from its hints:
            # a lower match only delays commits, while keeping it would leave the follower
            # stuck below it forever.
            self.match = 0
        self.next = max(self.match + 1, min(next_hint, rejected_index))
        self.probe_sent = False
        return True
