"""``raftlib serve`` times everything by a clock that counts the time the machine was suspended
(``raftlib.suspend_clock``), so a leader that slept finds its lease run out on waking."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from raftlib import cli
from raftlib.suspend_clock import CLOCK_ID, SuspendAwareClock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CLOCK_BOOTTIME is Linux's")
def test_the_serve_clock_is_the_one_that_counts_suspended_time_on_linux() -> None:
    # CLOCK_MONOTONIC (Trio's default, through perf_counter) stops while the machine sleeps.
    assert CLOCK_ID == time.CLOCK_BOOTTIME


@pytest.mark.skipif(CLOCK_ID is None, reason="no CLOCK_BOOTTIME here")
def test_the_clock_object_shows_a_suspension_as_one_jump_of_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The machine sleeps an hour: the clock's next reading and every deadline see it (what
    the node then does with a jump is tests/raftlib/test_node_loop_rules.py's stalls)."""
    readings = {CLOCK_ID: 100.0}
    monkeypatch.setattr(time, "clock_gettime", lambda clock_id: readings[clock_id])
    clock = SuspendAwareClock()
    before = clock.current_time()
    deadline = before + 5.0
    assert clock.deadline_to_sleep_time(deadline) == pytest.approx(5.0)
    readings[CLOCK_ID] += 3600.0  # suspended for an hour
    assert clock.current_time() - before == pytest.approx(3600.0)
    assert clock.deadline_to_sleep_time(deadline) == pytest.approx(-3595.0)  # overdue at once


def test_raftlib_serve_runs_trio_on_the_suspend_aware_clock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    seen: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(trio, "run", run)
    assert cli.main(["serve", "--id", "1", "--peers", "1=127.0.0.1:7001",
                     "--data", str(tmp_path / "d"), "--insecure"]) == 0
    assert isinstance(seen.get("clock"), SuspendAwareClock)
