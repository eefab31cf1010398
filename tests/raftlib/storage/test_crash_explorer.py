"""The crash-state explorer checks every crash point of each standard workload, finds no
violation in WalStorage, and reports how many states it checked (minimums asserted so a
broken enumeration cannot pass by checking nothing)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from raftlib.storage.crash_explorer import explore, random_workload, standard_workloads

RANDOM_SEEDS_QUICK = 6  # in the default suite
RANDOM_SEEDS_SLOW = 400  # with -m slow

# Measured with the model's bounds as set in raftlib.storage.fs; each minimum is about 80%.
STATES_MIN = {
    "appends and rollover": (24, 430),
    "truncating append": (37, 680),
    "truncation after a commit-only sync": (30, 550),
    "hard state changes": (25, 460),
    "early writes past the buffer limit": (20, 370),
    "restarts": (36, 670),
    "snapshot and compaction": (53, 2050),
    "snapshot install and reset": (55, 2150),
}


@pytest.fixture(autouse=True)
def quiet_recovery() -> Iterator[None]:
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("workload", standard_workloads(), ids=lambda w: w.name)
def test_no_crash_state_of_a_workload_breaks_recovery(workload, capsys) -> None:  # type: ignore[no-untyped-def]
    report = explore(workload)
    with capsys.disabled():
        print(f"\n  {report}")
    assert not report.violations, "\n".join(report.violations)
    points_min, states_min = STATES_MIN[workload.name]
    assert report.crash_points >= points_min
    assert report.states_checked >= states_min


def test_every_standard_workload_has_a_named_minimum() -> None:
    assert {w.name for w in standard_workloads()} == set(STATES_MIN)


@pytest.mark.parametrize("seed", range(RANDOM_SEEDS_QUICK))
def test_random_workloads_leave_no_crash_state_recovery_gets_wrong(seed: int) -> None:
    report = explore(random_workload(seed))
    assert not report.violations, "\n".join(report.violations)
    assert report.states_checked > 100


@pytest.mark.slow
def test_many_random_workloads_leave_no_crash_state_recovery_gets_wrong() -> None:
    for seed in range(RANDOM_SEEDS_SLOW):
        report = explore(random_workload(seed))
        assert not report.violations, f"seed={seed}: " + "\n".join(report.violations)
