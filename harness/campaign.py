"""Campaigns: many seeds of one run configuration, in parallel worker processes.

Each seed runs in its own process (simulations are CPU-bound and single-threaded) and writes
its own run directory ``OUT/seed-N``. The outcome is a table, and for every run that was not
valid the command that replays it and its report page. A valid run's page is drawn only when
asked (``REPORT_PAGES``): its directory keeps what ``raft-harness report DIR`` draws it from.

Where the seeds run is a ``SeedExecutor``: local worker processes by default, or the workers
of a Dask cluster (``harness.dask_campaign``, ``raft-harness campaign --scheduler``).
"""

from __future__ import annotations

import json
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


# Which runs' report pages (report.html) a campaign draws: those that were not valid, or all.
# Drawing a page (its plots) took most of a short simulated run's time: 23.5 of 32.6 s for 20
# swarm seeds, so a campaign that draws every page runs about a quarter as many seeds a minute,
# and its reader opens the failures' pages.
REPORT_PAGES: tuple[str, ...] = ("failed", "all")


@attrs.frozen
class SeedJob:
    """One seed's work: its options (``RunOptions.to_json``), its run directory, and whether
    its report page is drawn when the run is valid (a failure's always is)."""

    options: dict[str, Any]
    out_dir: str
    valid_page: bool = False

# Runs the jobs and yields each one's outcome as it finishes, in any order.
SeedExecutor = Callable[[list[SeedJob]], Iterable[SeedOutcome]]


def run_seed(job: SeedJob, write_to: Path | None = None) -> SeedOutcome:
    """Run one seed into its run directory, or into ``write_to`` while the outcome and the
    reproduction command still name the job's directory (a Dask worker writes elsewhere and
    ships the directory back)."""
    options = RunOptions.from_json(job.options, "campaign")
    out_dir = Path(job.out_dir)
    started = time.monotonic()
    command = command_line([*options.to_argv(), "--out", str(out_dir)])
    # One process per seed already uses every core we were given: lincheck stays serial.
    report = run(options, write_to or out_dir, lincheck_parallel=False, command=command,
                 valid_page=job.valid_page)
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


def outcome_of(run_dir: Path) -> SeedOutcome:
    """A finished campaign run's outcome again, from its ``results.json`` (the campaign index
    is drawn again from these when ``raft-harness report`` draws its runs' pages later).
    Raises ``OptionsError``, ``OSError`` or ``ValueError`` for a directory that holds none."""
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    options = RunOptions.from_json(results["options"], str(run_dir / "results.json"))
    stats = results["stats"]
    return SeedOutcome(
        seed=options.seed,
        verdict=results["verdict"],
        line="",
        failed_checks=tuple(results["failed_checks"]),
        operations=stats["operations"]["invoke"],
        faults=sum(stats["faults_started"].values()),
        wall_seconds=stats["wall_seconds"],
        out_dir=str(run_dir),
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
    report_pages: str = "failed",
) -> list[SeedOutcome]:
    """Run every seed of ``base``; with ``base.swarm`` each seed draws its own options
    (harness.swarm), keeping ``base``'s value of the dimensions in ``pinned``.
    ``report_pages`` (one of ``REPORT_PAGES``): whose report page is drawn."""
    assert report_pages in REPORT_PAGES, report_pages
    work = [
        SeedJob(options_for(base, seed, pinned).to_json(), str(out_dir / f"seed-{seed}"),
                valid_page=report_pages == "all")
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


