"""The leader time a KV node stamps into the writes it proposes: session expiry's clock.

Session expiry (``raftlib.kv.sessions``) runs on a replicated clock, the largest leader time
among the applied commands, so every replica expires the same sessions. When a leader stamped
its wall clock, that replicated clock followed every step of any leader's wall clock: NTP
stepping a drifted clock two hours forward, or an operator's ``date -s``, expired every session
in the cluster at once, and with them the exactly-once promise of every client (their next
writes answer SESSIONEXPIRED, outcome unknown).

Here a leader's time is the replicated clock as this node has applied it when it first stamps
a write in its term, advanced by its monotonic clock since. A wall-clock step never reaches
it. The wall clock is read once in a cluster's life: when the replicated clock is still zero
and no command can exist that this node has not applied (its log holds none, or it leads and
applied every entry before its term): a new cluster, where no session exists yet, so no
reading of the wall clock can expire one. A node whose log holds commands it has not applied
yet (a restarted node elected before applying its log) cannot tell that case from a cluster
whose stamps it has not applied, so it refuses to stamp (``LeaderClockNotReady``: the service
answers TRYAGAIN) until it has.

A new leader may also be elected before it applied its predecessors' last stamps (a node that
was behind wins once its log is complete): its stamps are then below the replicated clock,
which only takes a maximum (``SessionTable.advance_clock``) and would wait for them. So the
leader moves its anchor up to the replicated clock whenever that is ahead of its own time.

Expiry therefore comes late, never early: the time between the last stamp applied and a new
leader's first write (an idle cluster changing leader, a cluster that was down) is not counted.
``sessions_max`` bounds the table meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

MS_PER_SECOND = 1000


class LeaderClockNotReady(Exception):
    """This node has applied no stamp and its log holds commands it has not applied: it
    cannot tell a new cluster from one whose stamps it has not applied yet."""


class LeaderClock:
    """``now_ms()``: the time to stamp into a write proposed now. ``term`` gives this node's
    current term (a new term re-anchors the clock), ``replicated_ms`` the replicated clock as
    applied here, ``caught_up`` whether no command can exist that this node has not applied
    (``Node.applied_every_command``); ``wall`` (seconds) seeds a new cluster's clock,
    ``monotonic`` (seconds) measures the time since the anchor."""

    __slots__ = ("_base_ms", "_caught_up", "_monotonic", "_replicated_ms", "_started", "_term",
                 "_term_of", "_wall")

    def __init__(
        self,
        term: Callable[[], int],
        replicated_ms: Callable[[], int],
        caught_up: Callable[[], bool],
        *,
        wall: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._term_of = term
        self._replicated_ms = replicated_ms
        self._caught_up = caught_up
        self._wall = wall
        self._monotonic = monotonic
        self._term = -1  # no term is negative: the first call anchors
        self._base_ms = 0
        self._started = 0.0

    def now_ms(self) -> int:
        """Raises ``LeaderClockNotReady`` (see the class) instead of guessing."""
        term = self._term_of()
        if term != self._term:
            replicated = self._replicated_ms()
            if replicated == 0:
                if not self._caught_up():
                    raise LeaderClockNotReady(
                        "this leader has not applied the entries before its term yet")
                replicated = int(self._wall() * MS_PER_SECOND)  # a new cluster
            self._term = term
            self._base_ms = replicated
            self._started = self._monotonic()
            return replicated
        monotonic = self._monotonic()
        now = self._base_ms + int((monotonic - self._started) * MS_PER_SECOND)
        replicated = self._replicated_ms()
        if replicated > now:
            # Stamps of an earlier leader, applied since this term began: go on from them.
            self._base_ms = replicated
            self._started = monotonic
            return replicated
        return now
