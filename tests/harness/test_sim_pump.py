"""A simulated node leaves out the pump after an input when ``Driver.has_work`` says the
driver has nothing to do: that is only sound if such a pump would indeed have done nothing.
Every time ``has_work`` answers False during these runs, the test pumps anyway and checks that
the pump returned no job and changed neither the core nor the driver."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from harness.options import RunOptions
from harness.runner import simulate
from raftlib.driver import Driver


def _fingerprint(driver: Driver) -> tuple[Any, ...]:
    return (
        pickle.dumps(driver.core),
        dict(driver.counters),
        driver.persisting,
        driver.snapshot_task,
        sorted(driver.proposals),
        sorted(driver.reads),
        driver._deferred_hard_state,
        driver._deferred_ticks,
        driver._pending,
    )


@pytest.mark.parametrize("nemesis", [(), ("kill", "pause", "partition", "disk")])
def test_a_pump_left_out_because_the_driver_had_no_work_would_have_done_nothing(
    nemesis: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {True: 0, False: 0}
    has_work = Driver.has_work

    def checked(self: Driver) -> bool:
        answer = has_work(self)
        answers[answer] += 1
        if not answer:
            before = _fingerprint(self)
            assert self.pump() is None, "has_work() said no work, but pump() made a job"
            assert _fingerprint(self) == before, "has_work() said no work, but pump() did some"
        return answer

    monkeypatch.setattr(Driver, "has_work", checked)
    outcome = simulate(RunOptions(nodes=3, clients=5, nemesis=nemesis, time_limit=4.0, seed=4,
                                  nemesis_interval=0.5))
    assert outcome.history.counts["ok"] > 10
    # Both answers were put to the test, the "no work" one many times.
    assert answers[True] > 30 and answers[False] > 200, answers
