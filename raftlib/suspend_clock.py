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
Where CLOCK_BOOTTIME does not exist (not Linux), this is CLOCK_MONOTONIC.
"""

from __future__ import annotations

import time

import trio

# Linux only; elsewhere the monotonic clock (time.perf_counter's) is the best there is.
CLOCK_ID: int = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class SuspendAwareClock(trio.abc.Clock):
    """Seconds of CLOCK_BOOTTIME; pass ``clock=SuspendAwareClock()`` to ``trio.run``
    (``raftlib serve`` does)."""

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.clock_gettime(CLOCK_ID)

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.clock_gettime(CLOCK_ID)
