"""The live runs' process check: a node crashing on its own, or not stopping cleanly on
SIGTERM, is a finding; a node the run stopped while it was still starting is not."""

from __future__ import annotations

import signal

from harness.live.checks import check_processes

TERM = -signal.SIGTERM


def test_every_node_stopping_cleanly_on_sigterm_passes() -> None:
    check = check_processes([], [], {1: 0, 2: 0, 3: 0})
    assert check.valid and "all 3 stopped cleanly" in check.summary


def test_a_node_ended_by_sigterm_after_it_served_is_a_finding() -> None:
    check = check_processes([], [], {1: 0, 2: TERM, 3: 0})
    assert not check.valid
    assert check.violations == ("node 2 stopped with status -15 after SIGTERM",)


def test_a_node_ended_by_sigterm_while_still_starting_is_no_finding_and_is_named() -> None:
    """A node restarted just before the run stopped may not have installed its handler yet:
    SIGTERM's default action ends it with -15 (seen on a loaded machine: a removed node,
    restarted 1.1 s before the stop, still importing)."""
    check = check_processes([], [], {1: 0, 2: TERM, 3: 0}, starting=[2])
    assert check.valid
    assert "node(s) 2 still starting" in check.summary and "other 2 stopped" in check.summary


def test_a_starting_node_that_failed_otherwise_is_still_a_finding() -> None:
    for status in (1, -signal.SIGKILL, -signal.SIGSEGV):
        check = check_processes([], [], {1: 0, 2: status}, starting=[2])
        assert not check.valid, status
    check = check_processes([], [2], {1: 0, 2: TERM}, starting=[2])
    assert check.violations == ("node 2 did not stop on SIGTERM (killed)",)


def test_crashes_on_their_own_are_findings_whatever_else_happened() -> None:
    check = check_processes([(3, 1, "the workload ran")], [], {1: 0, 2: 0, 3: None},
                            starting=[3])
    assert check.violations == ("node 3 exited on its own with status 1 while the workload ran",)
