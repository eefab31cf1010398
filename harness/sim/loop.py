"""The simulator's clock: a heap of timestamped callbacks on virtual time.

Time is an integer number of microseconds, so no float rounding can make two runs diverge.
Events due at the same time run in the order they were scheduled (a sequence number breaks
ties), which with seeded randomness makes a whole run a function of its seed. There are no
threads and no real clock anywhere in a simulation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

US_PER_SECOND = 1_000_000
STORM_WINDOW_EVENTS = 1 << 16

Callback = Callable[[Any], None]


def seconds_to_us(seconds: float) -> int:
    return round(seconds * US_PER_SECOND)


class EventLoop:
    __slots__ = ("_heap", "_mark_us", "_seq", "events_per_second_max", "events_run", "now_us")

    def __init__(self, events_per_second_max: int = 0) -> None:
        self.now_us = 0
        self._heap: list[tuple[int, int, Callback, Any]] = []
        self._seq = 0
        self.events_run = 0
        # A run whose events come faster than this (per simulated second, measured over
        # STORM_WINDOW_EVENTS events) is in a message storm or a livelock: a finding about the
        # system under test, stopped quickly instead of simulated for minutes. 0: no bound.
        self.events_per_second_max = events_per_second_max
        self._mark_us = 0

    def at(self, time_us: int, fn: Callback, arg: Any = None) -> None:
        """Run ``fn(arg)`` at ``time_us`` (never in the past)."""
        if time_us < self.now_us:
            raise AssertionError(f"event scheduled in the past: {time_us} < {self.now_us}")
        self._seq += 1
        heapq.heappush(self._heap, (time_us, self._seq, fn, arg))

    def after(self, delay_us: int, fn: Callback, arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now_us + delay_us, self._seq, fn, arg))

    def run_until(self, end_us: int, stop: Callable[[], bool] | None = None) -> None:
        """Run events due up to ``end_us`` (then the clock reads ``end_us``), or until
        ``stop()`` turns true, checked after each event."""
        heap = self._heap
        pop = heapq.heappop
        run = 0
        rate_max = self.events_per_second_max
        window = STORM_WINDOW_EVENTS
        while heap and heap[0][0] <= end_us:
            time_us, _, fn, arg = pop(heap)
            self.now_us = time_us
            fn(arg)
            run += 1
            if rate_max and (self.events_run + run) % window == 0:
                self._check_rate(time_us)
            if stop is not None and stop():
                self.events_run += run
                return
        self.events_run += run
        self.now_us = max(self.now_us, end_us)

    def _check_rate(self, time_us: int) -> None:
        elapsed_us = time_us - self._mark_us
        self._mark_us = time_us
        if elapsed_us * self.events_per_second_max < STORM_WINDOW_EVENTS * US_PER_SECOND:
            raise AssertionError(
                f"event storm: {STORM_WINDOW_EVENTS} simulated events within "
                f"{elapsed_us / US_PER_SECOND:.6f} s ending at {time_us / US_PER_SECOND:.6f} s, "
                f"over {self.events_per_second_max} per second (a message storm or a livelock)"
            )
