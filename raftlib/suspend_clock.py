"""A Trio clock that keeps counting while the machine is suspended.

Trio's own clock is ``time.perf_counter``: Linux's CLOCK_MONOTONIC, which stops while the
machine sleeps (a laptop's lid, a VM saved and restored). A node whose clock stood still
while its peers' ran believes no time passed: a leader answers reads from a lease its
followers stopped honouring long ago (they elected another leader meanwhile), and every
timer is late by the whole suspension. CLOCK_BOOTTIME is the same clock plus the time spent
suspended, so on waking the node sees the time that passed as one jump, which it already
handles as it handles a stalled process: it counts the ticks it missed before it answers
anything (``raftlib.node``), and its lease has run out.

A machine frozen without the kernel knowing (a hypervisor pausing a VM that is not told) is
outside what any guest clock can see; lease reads stay off by default for that reason.
Where CLOCK_BOOTTIME does not exist (not Linux), this reads ``time.perf_counter``, Trio's own
clock (on macOS that one counts sleep too; on Windows it does not).
"""

from __future__ import annotations

import random
import time

import trio

# Linux's; None elsewhere.
CLOCK_ID: int | None = getattr(time, "CLOCK_BOOTTIME", None)
# Like Trio's own clock, readings start at an arbitrary offset: code that mixes them with
# another clock's fails at once, not only after a suspension (seconds).
_OFFSET_SECONDS_MIN = 10_000.0
_OFFSET_SECONDS_MAX = 200_000.0


class SuspendAwareClock(trio.abc.Clock):
    """Seconds of CLOCK_BOOTTIME (plus an arbitrary offset); pass ``clock=SuspendAwareClock()``
    to ``trio.run`` (``raftlib serve`` does)."""

    def __init__(self) -> None:
        self._offset = random.SystemRandom().uniform(_OFFSET_SECONDS_MIN, _OFFSET_SECONDS_MAX)

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._offset + _reading()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.current_time()


def _reading() -> float:
    # (time.clock_gettime looked up at each call: tests stand in for it.)
    return time.clock_gettime(CLOCK_ID) if CLOCK_ID is not None else time.perf_counter()
