"""Jepsen's counter and set checkers on hand-made histories (each rule has a history that breaks
it), and lincheck's FIFO queue checked queue by queue."""

from __future__ import annotations

from typing import Any

import lincheck
import pytest
from lincheck import Event

from harness.checks import per_key
from harness.workload_checks import check_counter, check_set, operations


class Recorder:
    """Builds a history in the order of the calls (an event's position is its time)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, process: int, kind: str, f: str, value: Any = None,
                 key: Any = None) -> None:
        self.events.append(Event(len(self.events), process, kind, f, value, key))  # type: ignore[arg-type]

    def op(self, process: int, f: str, value: Any, outcome: str = "ok",
           output: Any = None, key: Any = None) -> None:
        self(process, "invoke", f, value, key)
        self(process, outcome, f, value if output is None else output, key)


# --- counter ---------------------------------------------------------------------------------


def test_counter_read_seeing_every_acknowledged_increment_is_valid() -> None:
    h = Recorder()
    h.op(0, "add", 2)
    h.op(1, "add", 3)
    h.op(2, "read", None, output=5)
    check = check_counter(h.events)
    assert check.valid is True and "last read 5" in check.summary


def test_counter_read_below_acknowledged_increments_is_a_lost_increment() -> None:
    h = Recorder()
    h.op(0, "add", 2)
    h.op(1, "add", 3)
    h.op(2, "read", None, output=3)
    check = check_counter(h.events)
    assert check.valid is False
    assert "below 5" in check.violations[0] and "lost 2" in check.violations[0]


def test_counter_read_above_every_attempted_increment_is_an_over_count() -> None:
    h = Recorder()
    h.op(0, "add", 2)
    h.op(2, "read", None, output=4)  # the add applied twice
    check = check_counter(h.events)
    assert check.valid is False and "over-counted by 2" in check.violations[0]


def test_counter_concurrent_add_may_or_may_not_be_seen() -> None:
    for seen in (1, 6):
        h = Recorder()
        h.op(0, "add", 1)
        h(1, "invoke", "add", 5)
        h.op(2, "read", None, output=seen)
        h(1, "ok", "add", 5)
        assert check_counter(h.events).valid is True, seen


def test_counter_unknown_add_counts_only_in_the_upper_bound_and_failed_add_not_at_all() -> None:
    h = Recorder()
    h.op(0, "add", 4, outcome="info")
    h.op(1, "add", 5, outcome="fail")
    h.op(2, "read", None, output=4)
    h.op(2, "read", None, output=0)
    assert check_counter(h.events).valid is True
    h.op(2, "read", None, output=9)  # the failed add's 5 cannot be there
    assert check_counter(h.events).valid is False


def test_counter_add_of_a_non_positive_amount_is_refused_as_bad_input() -> None:
    h = Recorder()
    h.op(0, "add", -1)
    with pytest.raises(ValueError, match="positive"):
        check_counter(h.events)


# --- set -------------------------------------------------------------------------------------


def test_set_final_read_holding_every_acknowledged_element_is_valid() -> None:
    h = Recorder()
    h.op(0, "add", 1)
    h.op(1, "add", 2, outcome="info")
    h.op(2, "read", None, output=[1, 2])
    check = check_set(h.events)
    assert check.valid is True and "1 of 1 unknown adds present" in check.summary


def test_set_acknowledged_element_missing_from_the_final_read_is_lost() -> None:
    h = Recorder()
    h.op(0, "add", 1)
    h.op(1, "add", 2)
    h.op(2, "read", None, output=[2])
    check = check_set(h.events)
    assert check.valid is False and "1 acknowledged element(s) lost (1)" in check.summary
    assert check.violations[0].startswith("lost: element 1 (added by p0 at line 1")


def test_set_element_nobody_added_or_whose_add_failed_is_unexpected() -> None:
    h = Recorder()
    h.op(0, "add", 1, outcome="fail")
    h.op(2, "read", None, output=[1, 7])
    check = check_set(h.events)
    assert check.valid is False and "2 unexpected element(s) (1, 7)" in check.summary
    assert "recorded fail" in check.violations[0] and "no client" in check.violations[1]


def test_set_add_acknowledged_during_the_final_read_may_be_absent() -> None:
    h = Recorder()
    h(0, "invoke", "add", 1)
    h.op(2, "read", None, output=[])
    h(0, "ok", "add", 1)
    assert check_set(h.events).valid is True


def test_set_without_a_completed_final_read_is_undecided() -> None:
    h = Recorder()
    h.op(0, "add", 1)
    h.op(2, "read", None, outcome="fail")
    assert check_set(h.events).valid is None


def test_operations_pair_invocations_with_completions_and_leave_open_ones_unknown() -> None:
    h = Recorder()
    h(0, "invoke", "add", 1)
    h(1, "invoke", "add", 2)
    h(0, "ok", "add", 1)
    ops = operations(h.events)
    assert [(op.value, op.outcome) for op in ops] == [(1, "ok"), (2, "info")]
    h(0, "ok", "add", 1)
    with pytest.raises(ValueError, match="line 4: a completion without an invocation"):
        operations(h.events)


# --- queue -----------------------------------------------------------------------------------


def test_fifo_queues_on_different_keys_are_checked_separately() -> None:
    h = Recorder()
    h.op(0, "enqueue", 1, key=0)
    h.op(0, "enqueue", 2, key=1)
    h.op(1, "dequeue", None, output=2, key=1)
    h.op(1, "dequeue", None, output=1, key=0)
    history = lincheck.history_from_events(h.events)
    fifo = lincheck.get_model("fifo-queue")
    assert lincheck.check(history, fifo).verdict == "illegal"  # as one queue, 2 jumped ahead
    assert lincheck.check(history, per_key(fifo)).verdict == "ok"
    h.op(1, "dequeue", None, output=1, key=0)  # an element dequeued twice from queue 0
    assert lincheck.check(lincheck.history_from_events(h.events), per_key(fifo)).verdict == \
        "illegal"
