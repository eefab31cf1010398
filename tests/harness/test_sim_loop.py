"""The simulator's event loop runs events in (time, scheduling order), however it stores them:
events due now wait in a FIFO beside the heap, and a reserved place is taken later. Each
test runs one random program on ``EventLoop`` and on a reference that keeps every event in
one heap and makes a reservation a real event, and compares what ran when."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.sim.loop import STORM_WINDOW_EVENTS, EventLoop

Trace = list[tuple[int, int]]  # (time, event id), in the order the events ran


class ReferenceLoop:
    """The specification: one heap of (time, sequence); a reservation is a placeholder event
    scheduled at once, which runs whatever was put in its place before it ran."""

    def __init__(self) -> None:
        self.now_us = 0
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self._places: dict[int, list[Any]] = {}  # seq -> [ran?, fn, arg]

    def after(self, delay_us: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now_us + delay_us, self._seq, fn, arg))

    def at(self, time_us: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.after(time_us - self.now_us, fn, arg)

    def reserve(self) -> int:
        seq = self._seq + 1  # the placeholder's, scheduled now
        self._places[seq] = [False, None, None]
        self.after(0, self._place, seq)
        return seq

    def _place(self, seq: int) -> None:
        place = self._places[seq]
        place[0] = True
        if place[1] is not None:
            place[1](place[2])

    def reserved_open(self, time_us: int, seq: int) -> bool:
        return time_us == self.now_us and not self._places[seq][0]

    def at_reserved(self, seq: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        place = self._places[seq]
        assert not place[0] and place[1] is None
        place[1], place[2] = fn, arg

    def run_until(self, end_us: int) -> None:
        while self._heap and self._heap[0][0] <= end_us:
            self.now_us, _, fn, arg = heapq.heappop(self._heap)
            fn(arg)
        self.now_us = max(self.now_us, end_us)


def run_program(loop: Any, seed: int, events_max: int) -> Trace:
    """Events that schedule more events (due now, later, at a time) and reserve places that
    later events of the same instant may take; every choice comes from the event's id."""
    trace: Trace = []
    places: list[tuple[int, int]] = []  # (time, seq) reserved
    ids = iter(range(events_max))

    def event(event_id: int) -> None:
        trace.append((loop.now_us, event_id))
        rng = random.Random(f"{seed}:{event_id}")
        for _ in range(rng.randrange(4)):
            action = rng.randrange(5)
            child = next(ids, None)
            if child is None:
                return
            if action == 0:
                loop.after(0, event, child)
            elif action == 1:
                loop.after(rng.randrange(1, 4), event, child)
            elif action == 2:
                loop.at(loop.now_us + rng.randrange(3), event, child)
            elif action == 3:
                places.append((loop.now_us, loop.reserve()))
            else:
                open_places = [p for p in places if loop.reserved_open(*p)]
                if open_places:
                    _, seq = open_places[rng.randrange(len(open_places))]
                    places.remove((loop.now_us, seq))
                    loop.at_reserved(seq, event, child)
                else:
                    loop.after(0, event, child)

    rng = random.Random(seed)
    for _ in range(5):
        first = next(ids)
        loop.at(rng.randrange(4), event, first)
    loop.run_until(2)
    loop.run_until(1_000)
    return trace


@given(st.integers(0, 2**32))
def test_events_run_in_time_then_scheduling_order_as_one_heap_would(seed: int) -> None:
    expected = run_program(ReferenceLoop(), seed, 300)
    assert run_program(EventLoop(), seed, 300) == expected


@given(st.integers(0, 2**32))
def test_events_due_far_ahead_run_in_the_same_order_as_the_others(seed: int) -> None:
    """With the far heap's threshold at 2 us, the programs' events due 2 or 3 us ahead wait
    there (and those due sooner in the main heap): the order must not change."""
    expected = run_program(ReferenceLoop(), seed, 300)
    assert run_program(EventLoop(far_us=2), seed, 300) == expected


def test_the_programs_schedule_events_far_ahead() -> None:
    """The property above is only worth something if events do wait in the far heap, and
    several at a time."""

    class CountingLoop(EventLoop):
        far_max = 0

        def _bring_near(self) -> None:
            self.far_max = max(self.far_max, len(self._far))
            super()._bring_near()

    loop = CountingLoop(far_us=2)
    run_program(loop, 1, 300)
    assert loop.far_max > 5


def test_the_programs_use_every_kind_of_scheduling() -> None:
    """The property above is only worth something if the programs mix the cases: several
    events due at one instant, and reserved places taken."""
    same_instant = 0
    for seed in range(20):
        trace = run_program(ReferenceLoop(), seed, 300)
        times = [t for t, _ in trace]
        same_instant += len(times) - len(set(times))
    assert same_instant > 100


def test_a_reserved_place_runs_before_events_scheduled_after_it() -> None:
    loop = EventLoop()
    ran: list[str] = []
    loop.after(0, lambda _: ran.append("first"))
    place = loop.reserve()
    loop.after(0, lambda _: ran.append("third"))
    assert loop.reserved_open(0, place)
    loop.at_reserved(place, lambda _: ran.append("second"))
    loop.run_until(10)
    assert ran == ["first", "second", "third"]


def test_a_reserved_place_closes_once_the_events_after_it_ran() -> None:
    loop = EventLoop()
    place = loop.reserve()
    loop.after(0, lambda _: None)
    loop.run_until(0)
    assert not loop.reserved_open(0, place)
    with pytest.raises(AssertionError, match="already passed"):
        loop.at_reserved(place, lambda _: None)


def test_an_event_storm_is_stopped() -> None:
    loop = EventLoop(events_per_second_max=1000)

    def storm(_: Any) -> None:
        loop.after(1, storm)

    loop.after(0, storm)
    with pytest.raises(AssertionError, match="event storm"):
        loop.run_until(10 * STORM_WINDOW_EVENTS)
    assert loop.events_run == STORM_WINDOW_EVENTS
