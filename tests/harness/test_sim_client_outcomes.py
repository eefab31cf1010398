"""The simulator's clients record ``fail`` only for writes that never reached the committed log,
and the ``refusals`` check that proves it catches a client that calls a timed-out write failed."""

from __future__ import annotations

import pytest

from harness.options import RunOptions
from harness.runner import run
from harness.sim.client import SimClient

# Seeds whose runs have writes that time out and are then committed (found by the mutation
# below): the honest client must still be valid on them.
SEEDS = (2, 6, 7)


def _faulty(seed: int) -> RunOptions:
    return RunOptions(nodes=3, clients=5, time_limit=20.0, seed=seed, workload="kv",
                      nemesis=("partition", "kill", "pause"))


@pytest.mark.parametrize("seed", SEEDS)
def test_no_write_recorded_fail_is_in_the_committed_log(seed: int) -> None:
    report = run(_faulty(seed), None)
    refusals = report.results["checks"]["refusals"]
    assert refusals["valid"] is True, f"reproduce with seed={seed}: {refusals}"
    assert report.verdict == "valid", f"reproduce with seed={seed}: {report.line}"


def test_refused_writes_are_recorded_so_the_check_is_not_vacuous() -> None:
    refused = [run(_faulty(seed), None).results["checks"]["refusals"]["summary"]
               for seed in SEEDS]
    assert any(not summary.startswith("none of 0 ") for summary in refused), refused


def test_refusals_check_catches_a_client_that_calls_a_timed_out_write_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = SimClient._unknown

    def forgetful(self: SimClient) -> None:
        # The bug issue 12 found in the live client: an attempt cut short by a timeout is
        # treated as if it had been refused.
        before = self._maybe_applied
        honest(self)
        self._maybe_applied = before

    monkeypatch.setattr(SimClient, "_unknown", forgetful)
    caught = [seed for seed in SEEDS
              if run(_faulty(seed), None).results["checks"]["refusals"]["valid"] is False]
    assert caught, "no seed caught a client that records timed-out writes as failed"
