"""Shrinking a failing sim run: the smallest run found that still fails the same check.

A sim run is a pure function of its options and schedule, so any smaller variant can be run
again and judged exactly. Starting from a failing run directory, the shrinker tries, in
passes until none makes progress or the budget runs out:

1. fewer operations (``ops_limit``: the run is identical up to the cut, so a failure that
   happened early survives it), by bisection and then halving;
2. a shorter run (``time_limit``; fault windows are cut to fit);
3. fewer faults (removing chunks of windows, halves first, then single ones);
4. shorter fault windows (halving each), and faults moved earlier (the whole schedule shifted
   towards 0, so the failure may come after fewer operations);
5. fewer clients, and a lower rate.

A candidate is kept only if the check that failed first in the original (``target``) fails
again. The result is written as an ordinary run directory (``raft-harness replay`` works on
it) whose ``results.json`` has a ``shrink`` section: the original, the target check and every
step that was kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from harness.nemesis import WINDOW_SECONDS_MIN, Fault, Schedule, schedule_from_json
from harness.options import RunOptions, command_line
from harness.outcomes import RunReport
from harness.runner import run

# Where the target is taken from when the original failed several checks: the first of these.
# (lincheck, durability and refusals failures point at operations, which the ops cut keeps
# small.)
CHECK_ORDER = ("invariant", "linearizable", "durability", "refusals", "safety", "liveness")


class ShrinkError(ValueError):
    """A directory that cannot be shrunk (one line naming why)."""


@attrs.define
class Candidate:
    options: RunOptions
    schedule: Schedule
    operations: int  # operations invoked (the probe's included), as results.json counts them


@attrs.define
class ShrinkResult:
    original: Candidate
    best: Candidate
    target: str
    steps: list[str]
    runs: int
    wall_seconds: float
    report: RunReport


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShrinkError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ShrinkError(f"{path}: not valid JSON: {exc}") from None


def load_run(source: Path) -> tuple[RunOptions, Schedule, dict[str, Any]]:
    results = _read_json(source / "results.json")
    if not isinstance(results, dict) or "options" not in results:
        raise ShrinkError(f"{source / 'results.json'}: no 'options' (not a run directory)")
    options = RunOptions.from_json(results["options"], str(source / "results.json"))
    if options.backend != "sim":
        raise ShrinkError(f"{source}: only sim runs can be shrunk (this one is {options.backend})")
    schedule = schedule_from_json(_read_json(source / "nemesis.json"), str(source / "nemesis.json"))
    return options, schedule, results


def pick_target(failed: list[str]) -> str:
    for name in CHECK_ORDER:
        if name in failed:
            return name
    if not failed:
        raise ShrinkError("the run did not fail any check: nothing to shrink")
    return failed[0]


def _operations(report: RunReport) -> int:
    ops = report.results.get("stats", {}).get("operations", {})
    return int(ops.get("invoke", 0))


def _cut_schedule(schedule: Schedule, time_limit: float) -> Schedule:
    faults = tuple(
        attrs.evolve(f, stop=min(f.stop, time_limit))
        for f in schedule.faults
        if f.start < time_limit and min(f.stop, time_limit) - f.start >= WINDOW_SECONDS_MIN
    )
    return Schedule(nodes=schedule.nodes, time_limit=time_limit, faults=faults)


class Shrinker:
    def __init__(
        self,
        options: RunOptions,
        schedule: Schedule,
        target: str,
        *,
        runs_max: int = 300,
        seconds_max: float = 300.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.runs_max = runs_max
        self.seconds_max = seconds_max
        self._log = log or (lambda _: None)
        self._started = time.monotonic()
        self.runs = 0
        self.steps: list[str] = []
        self._seen: set[str] = set()
        self.best = Candidate(options, schedule, 0)

    def _budget_left(self) -> bool:
        return self.runs < self.runs_max and time.monotonic() - self._started < self.seconds_max

    def fails(self, options: RunOptions, schedule: Schedule) -> RunReport | None:
        """Run a candidate; the report if it fails the target check, else None."""
        key = json.dumps([options.to_json(), schedule.to_json()], sort_keys=True)
        if key in self._seen or not self._budget_left():
            return None
        self._seen.add(key)
        self.runs += 1
        report = run(options, None, schedule=schedule)
        failed = report.results.get("failed_checks", [])
        return report if self.target in failed else None

    def _try(self, options: RunOptions, schedule: Schedule, step: str) -> bool:
        report = self.fails(options, schedule)
        if report is None:
            return False
        operations = _operations(report)
        self.best = Candidate(options, schedule, operations)
        self.steps.append(f"{step} -> {operations} operations, {len(schedule.faults)} faults")
        self._log(f"shrink: kept {self.steps[-1]}")
        return True

    # --- the passes ----------------------------------------------------------------------------

    def shrink_ops(self) -> bool:
        best = self.best
        high = best.options.ops_limit or best.operations
        low = 0  # the largest limit known not to fail (0: none tried)
        progress = False
        while high - low > 1 and self._budget_left():
            mid = (low + high) // 2
            if self._try(attrs.evolve(best.options, ops_limit=mid), best.schedule,
                         f"ops_limit={mid}"):
                high = mid
                progress = True
                best = self.best
            else:
                low = mid
        return progress

    def shrink_time(self) -> bool:
        progress = False
        while self._budget_left():
            best = self.best
            limit = round(best.options.time_limit / 2, 3)
            if limit < 0.5:
                break
            opts = attrs.evolve(best.options, time_limit=limit)
            if not self._try(opts, _cut_schedule(best.schedule, limit), f"time_limit={limit:g}"):
                break
            progress = True
        return progress

    def shrink_faults(self) -> bool:
        progress = False
        chunk = max(1, len(self.best.schedule.faults) // 2)
        while chunk >= 1 and self._budget_left():
            faults = self.best.schedule.faults
            removed_any = False
            start = 0
            while start < len(faults) and self._budget_left():
                kept = faults[:start] + faults[start + chunk:]
                ids = [f.id for f in faults[start:start + chunk]]
                schedule = attrs.evolve(self.best.schedule, faults=kept)
                if self._try(self.best.options, schedule, f"drop faults {ids}"):
                    faults = kept
                    removed_any = progress = True
                else:
                    start += chunk
            if not removed_any:
                chunk //= 2
        return progress

    def shorten_windows(self) -> bool:
        progress = False
        for position in range(len(self.best.schedule.faults)):
            if not self._budget_left():
                break
            faults = list(self.best.schedule.faults)
            if position >= len(faults):
                break
            fault: Fault = faults[position]
            half = round((fault.stop - fault.start) / 2, 3)
            if half < WINDOW_SECONDS_MIN:
                continue
            faults[position] = attrs.evolve(fault, stop=round(fault.start + half, 3))
            schedule = attrs.evolve(self.best.schedule, faults=tuple(faults))
            if self._try(self.best.options, schedule, f"shorten fault #{fault.id} to {half:g} s"):
                progress = True
        return progress

    def shift_earlier(self) -> bool:
        progress = False
        while self._budget_left() and self.best.schedule.faults:
            schedule = self.best.schedule
            first = min(f.start for f in schedule.faults)
            shift = round(first / 2, 3)
            if shift < WINDOW_SECONDS_MIN:
                break
            moved = tuple(attrs.evolve(f, start=round(f.start - shift, 3),
                                       stop=round(f.stop - shift, 3)) for f in schedule.faults)
            if not self._try(self.best.options, attrs.evolve(schedule, faults=moved),
                             f"faults {shift:g} s earlier"):
                break
            progress = True
        return progress

    def shrink_rate(self) -> bool:
        progress = False
        while self._budget_left() and self.best.options.rate > 1:
            rate = round(self.best.options.rate / 2, 3)
            if not self._try(attrs.evolve(self.best.options, rate=rate), self.best.schedule,
                             f"rate={rate:g}"):
                break
            progress = True
        return progress

    def shrink_clients(self) -> bool:
        progress = False
        while self._budget_left() and self.best.options.clients > 1:
            clients = self.best.options.clients
            tried = False
            for fewer in sorted({clients // 2, clients - 1}):
                if fewer >= 1 and self._try(attrs.evolve(self.best.options, clients=fewer),
                                            self.best.schedule, f"clients={fewer}"):
                    progress = tried = True
                    break
            if not tried:
                break
        return progress

    def shrink(self) -> None:
        passes = (self.shrink_ops, self.shrink_time, self.shrink_faults, self.shorten_windows,
                  self.shift_earlier, self.shrink_clients, self.shrink_rate)
        while self._budget_left():
            progress = False
            for one in passes:
                progress = one() or progress
            if not progress:
                break


def shrink_dir(
    source: Path,
    out_dir: Path,
    *,
    target: str | None = None,
    runs_max: int = 300,
    seconds_max: float = 300.0,
    log: Callable[[str], None] | None = None,
) -> ShrinkResult:
    """Shrink the failing run in ``source``; write the smallest one found to ``out_dir``."""
    started = time.monotonic()
    options, schedule, results = load_run(source)
    original_failed = list(results.get("failed_checks", []))
    chosen = target or pick_target(original_failed)
    shrinker = Shrinker(options, schedule, chosen, runs_max=runs_max, seconds_max=seconds_max,
                        log=log)
    first = shrinker.fails(options, schedule)
    if first is None:
        raise ShrinkError(f"{source}: replaying the run does not fail {chosen!r} (failed: "
                          f"{', '.join(original_failed) or 'none'}); nothing to shrink")
    original = Candidate(options, schedule, _operations(first))
    shrinker.best = original
    shrinker.shrink()
    best = shrinker.best
    cmd = command_line(["replay", str(out_dir)])
    report = run(best.options, out_dir, schedule=best.schedule, command=cmd)
    shrink_info = {
        "original": str(source),
        "original_operations": original.operations,
        "original_faults": len(original.schedule.faults),
        "original_options": original.options.to_json(),
        "target_check": chosen,
        "operations": best.operations,
        "faults": len(best.schedule.faults),
        "steps": shrinker.steps,
        "runs": shrinker.runs,
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    path = out_dir / "results.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["shrink"] = shrink_info
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return ShrinkResult(original, best, chosen, shrinker.steps, shrinker.runs,
                        time.monotonic() - started, report)
