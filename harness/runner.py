"""One run end to end: simulate, check, write the run directory, summarise in one line.

The run directory holds:

- ``history.jsonl``  the client history and fault events (lincheck's JSON Lines format);
- ``nemesis.json``   the fault schedule (``raft-harness replay`` runs it again as is);
- ``results.json``   verdict, every check, seed, options, simulator parameters, statistics
  and the exact command that reproduces the run;
- ``nodes.log``      what each node did (roles, crashes, restarts, pauses) and each fault;
- ``lincheck.html``  lincheck's report, when the history is not linearizable;
- ``report.html``    the run for people: verdict, plots, schedule, command (harness.report).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
import lincheck

from harness import checks as checks_mod
from harness import workload_checks, zoo
from harness.checks import Check, Verdict
from harness.nemesis import Schedule, generate
from harness.options import RunOptions, command_line
from harness.outcomes import RunReport
from harness.progress import NO_PROGRESS, RunProgress
from harness.sim.params import SimParams
from harness.sim.world import SimOutcome, SimWorld

RESULTS_VERSION = 1
EXIT_BY_VERDICT = {"valid": 0, "invalid": 1, "unknown": 2}


def schedule_for(options: RunOptions) -> Schedule:
    return generate(options.seed, options.nemesis, options.nodes, options.time_limit,
                    options.nemesis_interval, clock_rate_max=options.clock_rate_max)


def simulate(options: RunOptions, schedule: Schedule | None = None,
             params: SimParams | None = None) -> SimOutcome:
    if schedule is None:
        schedule = schedule_for(options)
    # A zoo bug (if any) is patched in for the simulation only, and restored after it.
    with zoo.active(options.bug):
        return SimWorld(options, schedule, params).run()


def run(
    options: RunOptions,
    out_dir: Path | None,
    *,
    schedule: Schedule | None = None,
    params: SimParams | None = None,
    lincheck_parallel: bool | None = None,
    command: str | None = None,
    progress: RunProgress | None = None,
    valid_page: bool = True,
) -> RunReport:
    """Run ``options`` and check its history; with ``out_dir``, write its run directory and
    its report page (``valid_page`` False: only if the run was not valid; a campaign's
    choice, ``harness.campaign.REPORT_PAGES``)."""
    progress = progress or NO_PROGRESS
    if options.backend == "live":
        from harness.live.runner import run_live  # real processes: see harness.live

        report: RunReport = run_live(options, out_dir, schedule=schedule, command=command,
                                     progress=progress)
        if out_dir is not None and (valid_page or report.verdict != "valid"):
            progress.phase("writing report")
            _write_report(out_dir)
        return report
    started = time.monotonic()
    if schedule is None:
        schedule = schedule_for(options)
    try:
        progress.phase("simulating")
        outcome = simulate(options, schedule, params)
    except Exception as exc:
        # An invariant asserted inside the Raft core, its storage or the driver
        # broke, or the library refused to restart from what its storage held: a finding
        # about the system under test, reported as such. Anything else is a harness bug.
        if not (isinstance(exc, AssertionError) or _raised_in_raftlib(exc)):
            _stopped_report(out_dir, schedule, exc)
            raise
        return _crashed(options, schedule, out_dir, exc, command, time.monotonic() - started)
    simulated_wall = time.monotonic() - started
    progress.phase("checking")
    checker = outcome.workload.checker
    lin, history, result = workload_checks.judge_workload_history(
        outcome.history.events, checker,
        checks_mod.model_of(outcome) if checker == "lincheck" else None,
        options.lincheck_timeout, lincheck_parallel,
    )
    all_checks = [
        lin,
        checks_mod.check_safety(outcome),
        checks_mod.check_durability(outcome),
        checks_mod.check_refusals(outcome),
        checks_mod.check_liveness(outcome),
    ]
    verdict = checks_mod.verdict_of(all_checks)
    wall = time.monotonic() - started
    cmd = command or command_line([*options.to_argv(), *(["--out", str(out_dir)] if out_dir
                                                          else [])])
    results = _results(outcome, all_checks, verdict, cmd, simulated_wall, wall, out_dir)
    jsonl = outcome.history.jsonl()
    if out_dir is not None:
        _write_dir(out_dir, outcome, results, jsonl, history, result, lin)
        if valid_page or verdict != "valid":
            progress.phase("writing report")
            _write_report(out_dir)
    line = _one_line(outcome, all_checks, verdict, wall, out_dir)
    return RunReport(verdict, line, out_dir, results, jsonl)


def _write_report(out_dir: Path, stopped: str | None = None) -> None:
    from harness.report import write_report  # matplotlib loads only when a report is drawn

    write_report(out_dir, stopped=stopped)


def _stopped_report(out_dir: Path | None, schedule: Schedule, exc: Exception) -> None:
    """A harness bug stopped the run: leave the schedule and a report saying so, without
    letting a second failure here hide the first one."""
    if out_dir is None:
        return
    with contextlib.suppress(Exception):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "nemesis.json").write_text(schedule.dumps(), encoding="utf-8")
        _write_report(out_dir, f"{type(exc).__name__}: {exc}")


def _raised_in_raftlib(exc: BaseException) -> bool:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"{os.sep}raftlib{os.sep}" in frames[-1].filename


def _crashed(
    options: RunOptions, schedule: Schedule, out_dir: Path | None, exc: Exception,
    command: str | None, wall: float,
) -> RunReport:
    import traceback

    cmd = command or command_line([*options.to_argv(), *(["--out", str(out_dir)] if out_dir
                                                          else [])])
    where = traceback.extract_tb(exc.__traceback__)[-1]
    summary = (f"the simulation stopped: {type(exc).__name__}: {exc} "
               f"({where.filename}:{where.lineno})")
    check = Check("invariant", False, summary,
                  tuple(traceback.format_exception(exc)))
    results: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "verdict": "invalid",
        "seed": options.seed,
        "backend": options.backend,
        "options": options.to_json(),
        "checks": {"invariant": check.to_json()},
        "failed_checks": ["invariant"],
        "stats": {"wall_seconds": round(wall, 3), "operations": {"invoke": 0},
                  "faults_started": {}},
        "command": cmd,
        "replay": f"raft-harness replay {out_dir}" if out_dir is not None else None,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "nemesis.json").write_text(schedule.dumps(), encoding="utf-8")
        (out_dir / "results.json").write_text(
            json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        _write_report(out_dir)
    line = f"INVALID (invariant: {summary}): seed {options.seed}, {options.workload}"
    return RunReport("invalid", line, out_dir, results, "")


def _results(
    outcome: SimOutcome, all_checks: list[Check], verdict: Verdict, command: str,
    simulated_wall: float, wall: float, out_dir: Path | None,
) -> dict[str, Any]:
    options = outcome.options
    stats = dict(outcome.stats)
    sim_seconds = stats["simulated_seconds"]
    stats["wall_seconds"] = round(wall, 3)
    stats["simulation_wall_seconds"] = round(simulated_wall, 3)
    stats["speedup"] = round(sim_seconds / simulated_wall, 1) if simulated_wall > 0 else None
    stats["crashes"] = {str(k): v for k, v in stats["crashes"].items()}
    stats["ticks"] = {str(k): v for k, v in stats["ticks"].items()}
    failing = [c for c in all_checks if c.valid is False]
    return {
        "version": RESULTS_VERSION,
        "verdict": verdict,
        "seed": options.seed,
        "backend": options.backend,
        "object_under_test": "raftlib.kv.KvStateMachine (exactly-once sessions)",
        "options": options.to_json(),
        "sim_params": attrs.asdict(outcome.params),
        "checks": {c.name: c.to_json() for c in all_checks},
        "failed_checks": [c.name for c in failing],
        "stats": stats,
        "command": command,
        "replay": f"raft-harness replay {out_dir}" if out_dir is not None else None,
        "files": {
            "history": "history.jsonl",
            "nemesis": "nemesis.json",
            "node_log": "nodes.log",
            "lincheck_report": ("lincheck.html" if all_checks[0].name == "linearizable"
                                and all_checks[0].valid is False else None),
        },
    }


def _write_dir(
    out_dir: Path, outcome: SimOutcome, results: dict[str, Any], jsonl: str,
    history: lincheck.History | None, result: lincheck.Result | None, lin: Check,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "history.jsonl").write_text(jsonl, encoding="utf-8")
    (out_dir / "nemesis.json").write_text(outcome.schedule.dumps(), encoding="utf-8")
    (out_dir / "nodes.log").write_text("\n".join(outcome.node_log) + "\n", encoding="utf-8")
    if lin.valid is False and history is not None and result is not None:
        lincheck.write_html(history, result, out_dir / "lincheck.html",
                            model=checks_mod.model_of(outcome))
    (out_dir / "results.json").write_text(
        json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )


def _one_line(
    outcome: SimOutcome, all_checks: list[Check], verdict: Verdict, wall: float,
    out_dir: Path | None,
) -> str:
    options = outcome.options
    ops = outcome.stats["operations"]
    faults = ", ".join(f"{k}x{v}" for k, v in outcome.stats["faults_started"].items()) or "none"
    failing = "; ".join(f"{c.name}: {c.summary}" for c in all_checks if c.valid is not True)
    where = f" -> {out_dir}" if out_dir is not None else ""
    detail = f" ({failing})" if failing else ""
    return (
        f"{verdict.upper()}{detail}: seed {options.seed}, {options.workload}, "
        f"{options.nodes} nodes, {ops['invoke']} ops ({ops['ok']} ok, {ops['fail']} fail, "
        f"{ops['info']} info), faults {faults}; {outcome.stats['simulated_seconds']:.1f} s "
        f"simulated in {wall:.1f} s{where}"
    )
