"""Lease reads in the simulator: the option reaches every node from the harness, the clock
nemesis can be held to realistic skew, and the zoo's lease-ignores-drift bug (a lease as long
as the election timeout) serves a stale read under clock skew on its recipe's seed, where the
correct lease (shorter by the drift bound) stays linearizable."""

from __future__ import annotations

import pytest

from harness import zoo
from harness.cli import _options, build_parser
from harness.nemesis import CLOCK_RATE_DRAWN_MAX, generate, squeeze_clock_rates
from harness.options import OptionsError, RunOptions
from harness.runner import run, schedule_for
from harness.sim.world import SimWorld

BUG = "lease-ignores-drift"
# The first seed of the bug's detection campaign that catches it (bench/zoo_detection.py).
BUG_SEED = 43


def test_the_harness_switches_lease_reads_on_for_every_simulated_node() -> None:
    args = build_parser().parse_args(["run", "--lease-reads", "--lease-drift-ticks", "4"])
    options = _options(args, 0)
    assert options.core == {"lease_reads": True, "lease_drift_ticks": 4}
    world = SimWorld(options, schedule_for(options))
    assert all(n.config.lease_reads and n.config.lease_drift_ticks == 4
               for n in world.nodes.values())


def test_lease_reads_without_check_quorum_are_refused_naming_the_flag() -> None:
    with pytest.raises(OptionsError, match=r"^--lease-reads: requires check_quorum"):
        RunOptions(core={"lease_reads": True, "check_quorum": False})


def test_a_simulated_leader_serves_reads_from_its_lease() -> None:
    options = RunOptions(seed=1, time_limit=3.0, core={"lease_reads": True})
    world = SimWorld(options, schedule_for(options))
    world.run()
    served = sum(n.core.lease_reads_served for n in world.nodes.values() if n.core is not None)
    assert served > 0


def test_clock_rate_max_keeps_every_clock_window_within_the_bound() -> None:
    wild = generate(3, ("clock",), 5, 20.0, 1.0)
    tame = generate(3, ("clock",), 5, 20.0, 1.0, clock_rate_max=1.2)
    rates = [rate for fault in tame.faults for _, rate in fault.params["rates"]]
    assert rates and all(1 / 1.2 - 1e-3 <= rate <= 1.2 for rate in rates)
    # Same windows, same order of fast and slow nodes: only the size of the skew changes.
    assert [(f.start, f.stop) for f in wild.faults] == [(f.start, f.stop) for f in tame.faults]
    for a, b in zip(wild.faults, tame.faults, strict=True):
        assert [r > 1 for _, r in a.params["rates"]] == [r > 1 for _, r in b.params["rates"]]
    assert max(r for f in wild.faults for _, r in f.params["rates"]) > 2


def test_squeezing_maps_the_largest_drawn_rate_to_the_bound() -> None:
    drawn = [[1, CLOCK_RATE_DRAWN_MAX], [2, 1.0], [3, 1 / CLOCK_RATE_DRAWN_MAX]]
    assert squeeze_clock_rates(drawn, 1.2) == [[1, 1.2], [2, 1.0], [3, 0.833]]


def test_clock_rate_max_is_a_factor_above_one_or_zero() -> None:
    with pytest.raises(OptionsError, match=r"^--clock-rate-max: must be 0"):
        RunOptions(clock_rate_max=0.5)
    options = RunOptions(clock_rate_max=1.2)
    assert "--clock-rate-max" in options.to_argv()
    assert "--clock-rate-max" not in RunOptions().to_argv()  # old command lines unchanged
    assert RunOptions.from_json(options.to_json(), "t") == options


def test_the_lease_recipe_keeps_clock_skew_within_what_its_drift_bound_covers() -> None:
    """The correct build may only be asked to survive clocks its configuration covers: a
    leader's tick at most (min - 1) / (min - drift) times a follower's."""
    detection = zoo.get(BUG).detection
    core = detection.core
    skew_ratio_max = detection.clock_rate_max ** 2
    covered = ((core["election_timeout_ticks_min"] - 1)
               / (core["election_timeout_ticks_min"] - core["lease_drift_ticks"]))
    assert 1 < skew_ratio_max < covered


def test_a_lease_that_ignores_drift_is_caught_and_the_correct_lease_is_valid_on_its_seed(
) -> None:
    values = {**zoo.get(BUG).detection.options(), "seed": BUG_SEED, "lincheck_timeout": 30.0}
    broken = run(RunOptions(**{**values, "bug": BUG}), None, lincheck_parallel=False)
    assert broken.verdict == "invalid", broken.line
    assert "linearizable" in broken.results["failed_checks"], broken.line
    correct = run(RunOptions(**values), None, lincheck_parallel=False)
    assert correct.verdict == "valid", correct.line


# Seed 10 of the recipe with a paused leader instead of clock skew: a stopped process's ticks
# used to be lost, so on resuming the old leader answered queued reads from a lease that, by
# its count, had not run down, after a successor took writes. The drivers now deliver the ticks
# a stalled node missed before anything else (``Driver.tick``; the Trio node counts them from
# its clock, the simulator at resume): this seed was invalid before that.
def test_a_paused_leader_counts_the_ticks_it_missed_and_serves_no_stale_lease_read() -> None:
    values = {**zoo.get(BUG).detection.options(), "seed": 10, "nemesis": ("partition", "pause"),
              "lincheck_timeout": 30.0}
    report = run(RunOptions(**values), None, lincheck_parallel=False)
    assert report.verdict == "valid", report.line
