"""The leader time a KV node stamps into the writes it proposes: session expiry's clock.

Session expiry (``raftlib.kv.sessions``) runs on a replicated clock, the largest leader time
among the applied commands, so every replica expires the same sessions. When a leader stamped
its wall clock, that replicated clock followed every step of any leader's wall clock: NTP
stepping a drifted clock two hours forward, or an operator's ``date -s``, expired every session
in the cluster at once, and with them the exactly-once promise of every client (their next
writes answer SESSIONEXPIRED, outcome unknown).

Here a leader's time is the replicated clock as this node had applied it when its term began,
advanced by its monotonic clock since. A wall-clock step never reaches it. The wall clock is
read only while the replicated clock is still zero (a new cluster that has applied no
command), so the cluster's time starts at the calendar's and stays near it: it stands still
while no node leads, and otherwise runs at the leaders' monotonic rate.

A new leader may not have applied everything its predecessors stamped when its term begins (a
node that was behind can win an election once its log is complete, before it applied it): its
stamps are then below the replicated clock, which only takes a maximum
(``SessionTable.advance_clock``) and waits for them instead of going back. So the leader moves
its anchor up to the replicated clock whenever that is ahead of its own time: the wait lasts
until it has applied those stamps, never as long as it was behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MS_PER_SECOND = 1000


class LeaderClock:
    """``now_ms()``: the time to stamp into a write proposed now. ``term`` gives this node's
    current term (a new term re-anchors the clock), ``replicated_ms`` the replicated clock as
    applied here; ``wall`` (seconds) seeds a new cluster's clock, ``monotonic`` (seconds)
    measures the time since the anchor."""

    __slots__ = ("_base_ms", "_monotonic", "_replicated_ms", "_started", "_term", "_term_of",
                 "_wall")

    def __init__(
        self,
        term: Callable[[], int],
        replicated_ms: Callable[[], int],
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._term_of = term
        self._replicated_ms = replicated_ms
        self._wall = wall
        self._monotonic = monotonic
        self._term = -1  # no term is negative: the first call anchors
        self._base_ms = 0
        self._started = 0.0

    def now_ms(self) -> int:
        term = self._term_of()
        if term != self._term:
            replicated = self._replicated_ms()
            self._term = term
            self._base_ms = replicated if replicated > 0 else int(self._wall() * MS_PER_SECOND)
            self._started = self._monotonic()
            return self._base_ms
        monotonic = self._monotonic()
        now = self._base_ms + int((monotonic - self._started) * MS_PER_SECOND)
        replicated = self._replicated_ms()
        if replicated > now:
            # Stamps of an earlier leader, applied since this term began: go on from them.
            self._base_ms = replicated
            self._started = monotonic
            return replicated
        return now
