"""Campaigns: many seeds of one run configuration, in parallel worker processes.

Each seed runs in its own process (simulations are CPU-bound and single-threaded) and writes
its own run directory ``OUT/seed-N``. The outcome is a table, and for every run that was not
valid the command that replays it.

Where the seeds run is a ``SeedExecutor``: local worker processes by default, or the workers
of a Dask cluster (``harness.dask_campaign``, ``raft-harness campaign --scheduler``).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from harness import swarm
from harness.options import RunOptions, command_line
from harness.outcomes import SeedOutcome
from harness.runner import run

SEEDS_MAX = 1_000_000
JOBS_MAX = 256


# One seed's work: its options (RunOptions.to_json) and its run directory.
SeedJob = tuple[dict[str, Any], str]
# Runs the jobs and yields each one's outcome as it finishes, in any order.
SeedExecutor = Callable[[list[SeedJob]], Iterable[SeedOutcome]]


def run_seed(job: SeedJob, write_to: Path | None = None) -> SeedOutcome:
    """Run one seed into its run directory, or into ``write_to`` while the outcome and the
    reproduction command still name the job's directory (a Dask worker writes elsewhere and
    ships the directory back)."""
    options_json, out = job
    options = RunOptions.from_json(options_json, "campaign")
    out_dir = Path(out)
    started = time.monotonic()
    command = command_line([*options.to_argv(), "--out", str(out_dir)])
    # One process per seed already uses every core we were given: lincheck stays serial.
    report = run(options, write_to or out_dir, lincheck_parallel=False, command=command)
    results = report.results
    return SeedOutcome(
        seed=options.seed,
        verdict=report.verdict,
        line=report.line,
        failed_checks=tuple(results["failed_checks"]),
        operations=results["stats"]["operations"]["invoke"],
        faults=sum(results["stats"]["faults_started"].values()),
        wall_seconds=round(time.monotonic() - started, 2),
        out_dir=str(out_dir),
        command=results["command"],
        features=tuple(swarm.features(options).items()) if options.swarm else (),
        drawn=swarm.describe(options) if options.swarm else "",
    )


def options_for(base: RunOptions, seed: int, pinned: Collection[str] = ()) -> RunOptions:
    """The options of one seed of a campaign of ``base``."""
    return swarm.draw(seed, base, pinned) if base.swarm else attrs.evolve(base, seed=seed)


def local_executor(jobs: int) -> SeedExecutor:
    """Seeds in this process (``jobs`` 1) or in ``jobs`` worker processes."""

    def execute(work: list[SeedJob]) -> Iterator[SeedOutcome]:
        if jobs <= 1:
            yield from map(run_seed, work)
            return
        # fork: workers start at once with the harness already imported.
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            yield from pool.map(run_seed, work)

    return execute


def run_campaign(
    base: RunOptions,
    seeds: range,
    jobs: int,
    out_dir: Path,
    progress: Callable[[SeedOutcome], None] | None = None,
    executor: SeedExecutor | None = None,
    *,
    pinned: Collection[str] = (),
) -> list[SeedOutcome]:
    """Run every seed of ``base``; with ``base.swarm`` each seed draws its own options
    (harness.swarm), keeping ``base``'s value of the dimensions in ``pinned``."""
    work = [
        (options_for(base, seed, pinned).to_json(), str(out_dir / f"seed-{seed}"))
        for seed in seeds
    ]
    outcomes: list[SeedOutcome] = []
    for outcome in (executor or local_executor(jobs))(work):
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    assert sorted(o.seed for o in outcomes) == list(seeds), "every seed has one outcome"
    outcomes.sort(key=lambda o: o.seed)
    return outcomes


