"""The simulator's clock: a heap of timestamped callbacks on virtual time.

Time is an integer number of microseconds, so no float rounding can make two runs diverge.
Events due at the same time run in the order they were scheduled (a sequence number breaks
ties), which with seeded randomness makes a whole run a function of its seed. There are no
threads and no real clock anywhere in a simulation.

Most events are due "now" (a node's pump after an input, a crash a trigger asks for): those
wait in a FIFO queue beside the heap instead of in it. Every one of them is due at the current
time and they were scheduled in sequence order, so taking the smaller (time, sequence) of the
queue's head and the heap's top runs every event exactly where the heap alone would have: the
queue saves a heap push and pop per such event, nothing else.

Events due far ahead (``far_us`` or more when scheduled: a client's request timeouts, which
nearly always find their operation done) wait in a second heap, and move to the main one once
they are due no later than its top: every heap operation then costs a level or two less (the
timeouts were half of the main heap). The order is the same (time, sequence) order.

An event that may turn out to be needed at the current time can hold its place in that order
without being scheduled (``reserve``): scheduled later in the same instant, before the events
after it ran (``reserved_open``), it runs exactly where it would have (``at_reserved``); never
scheduled, it costs nothing. A node's pump uses this when the driver has nothing to do.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Any

US_PER_SECOND = 1_000_000
STORM_WINDOW_EVENTS = 1 << 16
# Events scheduled at least this far ahead (simulated microseconds) wait in the far heap.
FAR_US = 100_000
_NEVER = 1 << 62  # later than any event: the far heap's next time when it is empty

_heappush = heapq.heappush  # called for most events: one global lookup, not two

Callback = Callable[[Any], None]


def seconds_to_us(seconds: float) -> int:
    return round(seconds * US_PER_SECOND)


class EventLoop:
    __slots__ = ("_far", "_far_next", "_far_us", "_heap", "_mark_us", "_now", "_running", "_seq",
                 "events_per_second_max", "events_run", "now_us")

    def __init__(self, events_per_second_max: int = 0, far_us: int = FAR_US) -> None:
        if far_us < 1:
            raise ValueError(f"far_us must be at least 1 microsecond, got {far_us}")
        self.now_us = 0
        # (time, sequence, fn, arg): events due later than when they were scheduled.
        self._heap: list[tuple[int, int, Callback, Any]] = []
        # The same, for events scheduled ``far_us`` or more ahead (the module docstring), and
        # the time of its first (_NEVER when empty).
        self._far: list[tuple[int, int, Callback, Any]] = []
        self._far_us = far_us
        self._far_next = _NEVER
        # (sequence, fn, arg): events due at ``now_us`` (the module docstring).
        self._now: deque[tuple[int, Callback, Any]] = deque()
        self._seq = 0
        self._running = 0  # the sequence number of the event running (or that ran last)
        self.events_run = 0
        # A run whose events come faster than this (per simulated second, measured over
        # STORM_WINDOW_EVENTS events) is in a message storm or a livelock: a finding about the
        # system under test, stopped quickly instead of simulated for minutes. 0: no bound.
        self.events_per_second_max = events_per_second_max
        self._mark_us = 0

    def at(self, time_us: int, fn: Callback, arg: Any = None) -> None:
        """Run ``fn(arg)`` at ``time_us`` (never in the past)."""
        now = self.now_us
        if time_us < now:
            raise AssertionError(f"event scheduled in the past: {time_us} < {now}")
        seq = self._seq = self._seq + 1
        if time_us == now:
            self._now.append((seq, fn, arg))
        elif time_us - now >= self._far_us:
            self._push_far(time_us, seq, fn, arg)
        else:
            _heappush(self._heap, (time_us, seq, fn, arg))

    def after(self, delay_us: int, fn: Callback, arg: Any = None) -> None:
        seq = self._seq = self._seq + 1
        if not delay_us:
            self._now.append((seq, fn, arg))
        elif delay_us < self._far_us:
            _heappush(self._heap, (self.now_us + delay_us, seq, fn, arg))
        else:
            self._push_far(self.now_us + delay_us, seq, fn, arg)

    def _push_far(self, time_us: int, seq: int, fn: Callback, arg: Any) -> None:
        _heappush(self._far, (time_us, seq, fn, arg))
        if time_us < self._far_next:
            self._far_next = time_us

    def _bring_near(self) -> None:
        """Move the far events due no later than the main heap's top (or, when it is empty,
        those due at the far heap's first time) to the main heap."""
        far = self._far
        heap = self._heap
        limit = heap[0][0] if heap else far[0][0]
        while far and far[0][0] <= limit:
            _heappush(heap, heapq.heappop(far))
        self._far_next = far[0][0] if far else _NEVER

    def reserve(self) -> int:
        """A place in the order of the events due now, for an event that may be scheduled
        there later (``at_reserved``)."""
        self._seq += 1
        return self._seq

    def reserved_open(self, time_us: int, seq: int) -> bool:
        """Whether the place ``seq`` reserved at ``time_us`` is still ahead."""
        return time_us == self.now_us and seq > self._running

    def at_reserved(self, seq: int, fn: Callback, arg: Any = None) -> None:
        """Run ``fn(arg)`` now, at the place reserved as ``seq`` (still open)."""
        if seq <= self._running:
            raise AssertionError(f"reserved place {seq} already passed ({self._running} ran)")
        heapq.heappush(self._heap, (self.now_us, seq, fn, arg))

    def run_until(self, end_us: int, stop: Callable[[], bool] | None = None) -> None:
        """Run events due up to ``end_us`` (then the clock reads ``end_us``), or until
        ``stop()`` turns true, checked after each event."""
        if end_us < self.now_us:
            return  # nothing is due that early (events are never in the past)
        heap = self._heap
        due_now = self._now
        pop = heapq.heappop
        take_now = due_now.popleft
        rate_max = self.events_per_second_max
        window = STORM_WINDOW_EVENTS
        # The count of events run in this call at which the next storm check runs: whenever
        # the count of all events run so far is a multiple of the window.
        check_at = window - self.events_run % window
        run = 0
        now = self.now_us
        try:
            while True:
                if due_now:
                    # The heap's top runs first only if due now and scheduled earlier.
                    if heap and heap[0][0] == now and heap[0][1] < due_now[0][0]:
                        _, seq, fn, arg = pop(heap)
                    else:
                        seq, fn, arg = take_now()
                elif heap and heap[0][0] < self._far_next:
                    # (The far heap's events all come later: the main heap's top is next.)
                    if heap[0][0] > end_us:
                        break
                    now, seq, fn, arg = pop(heap)
                    self.now_us = now
                elif self._far:
                    self._bring_near()  # then the main heap's top is the next event
                    continue
                else:
                    break
                self._running = seq
                fn(arg)
                run += 1
                if run == check_at:
                    check_at += window
                    if rate_max:
                        self._check_rate(now)
                if stop is not None and stop():
                    return
        finally:
            self.events_run += run
        if end_us > now:
            self.now_us = end_us

    def _check_rate(self, time_us: int) -> None:
        elapsed_us = time_us - self._mark_us
        self._mark_us = time_us
        if elapsed_us * self.events_per_second_max < STORM_WINDOW_EVENTS * US_PER_SECOND:
            raise AssertionError(
                f"event storm: {STORM_WINDOW_EVENTS} simulated events within "
                f"{elapsed_us / US_PER_SECOND:.6f} s ending at {time_us / US_PER_SECOND:.6f} s, "
                f"over {self.events_per_second_max} per second (a message storm or a livelock)"
            )
