"""The ``raft-harness`` command line.

    raft-harness run      [run options] [--out DIR]
    raft-harness campaign --seeds A..B [--jobs J | --scheduler tcp://HOST:PORT] [run options]
                          [--out DIR] [--report-pages failed|all]
    raft-harness replay   DIR [--out DIR2]
    raft-harness report   DIR    (re)build DIR/report.html (a campaign DIR: every run's, and
                                 its index.html)

Run options: ``--backend sim --nodes N --clients C --workload register|kv|append|counter|set|queue
--nemesis partition,kill,pause,...|all|none --time-limit S --seed N --rate OPS
--request-timeout S --nemesis-interval S --recovery-time S --lincheck-timeout S`` (one flag per
``RunOptions`` field, derived from it), and one flag per Raft core setting (the simulated nodes',
or the live raftlib nodes' through ``raftlib serve``; derived from ``raftlib.core.CoreConfig``:
``--no-pre-vote``, ``--append-entries-max N``, ``--lease-reads`` ...).

``--target raftlib|etcd|redis-sentinel|resp`` (live only): the system under test
(``harness.targets``); raftlib by default. ``--etcd-serializable-reads``, ``--resp-command``
and ``--resp-cas`` configure the targets they name.

``--swarm`` (sim only): each seed draws its own cluster size, workload, clients, rate, fault
kinds and interval, core and snapshot settings (``harness.swarm``); an option given explicitly
next to it pins that setting. The drawn configuration is printed, saved in ``results.json``,
and the printed command spells every drawn value out.

Exit status: 0 every run valid, 1 some run invalid (or a replay whose history differs from the
original), 2 some run unknown (and none invalid), 3 bad options or input (one line on stderr),
4 an internal error of the harness (one line; ``HARNESS_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from harness import swarm
from harness.campaign import JOBS_MAX, REPORT_PAGES, SEEDS_MAX, run_campaign
from harness.nemesis import ScheduleError, schedule_from_json
from harness.options import OptionsError, RunOptions, command_line, options_fields
from harness.progress import CampaignProgress, print_outcomes, run_progress
from harness.runner import EXIT_BY_VERDICT, run
from raftlib.config_flags import add_core_flags, core_overrides

PROG = "raft-harness"
EXIT_USAGE = 3
EXIT_INTERNAL = 4


class UsageError(Exception):
    """Bad arguments or input: the message is the one stderr line; exit status 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """One flag per ``RunOptions`` field (its name, type, default and help declared there),
    and one per core setting (``CoreConfig``'s declaration). ``--seed`` is ``run``'s alone."""
    for field in options_fields():
        if field.name == "seed":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.name == "nemesis":
            parser.add_argument(flag, default="none", help=field.metadata["help"])
            continue
        if str(field.type) == "bool":
            parser.add_argument(flag, action="store_true", help=field.metadata["help"])
            continue
        kind = {"int": int, "float": float, "str": str}[str(field.type)]
        parser.add_argument(flag, type=kind, default=field.default, help=field.metadata["help"])
    add_core_flags(parser, note="; simulated or live raftlib nodes")
    _add_no_progress(parser)


def _add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress display (it is shown only when stderr is a terminal)")


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Jepsen-style fault campaigns against raftlib, "
                                            "checked by lincheck.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="one run")
    _add_run_options(p_run)
    p_run.add_argument("--seed", type=int, default=0, help="the run's seed")
    p_run.add_argument("--out", help="run directory (default runs/seed-N)")
    p_campaign = sub.add_parser("campaign", help="many seeds in parallel")
    _add_run_options(p_campaign)
    p_campaign.add_argument("--seeds", required=True, help="inclusive range A..B, e.g. 0..199")
    p_campaign.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                            help="worker processes")
    p_campaign.add_argument("--out", help="campaign directory (default runs/campaign-A-B)")
    p_campaign.add_argument("--report-pages", choices=REPORT_PAGES, default="failed",
                            help="whose report page to draw: the runs that were not valid "
                            "(default; 'raft-harness report DIR' draws the others' later) or "
                            "all (drawing a page takes most of a short run's time)")
    p_campaign.add_argument("--scheduler", help="run the seeds as tasks on this Dask "
                                                "scheduler's workers (tcp://HOST:PORT; needs "
                                                "the dask extra) instead of --jobs processes")
    sub.add_parser("bugs", help="list the bug zoo (for --bug), one line each")
    p_shrink = sub.add_parser("shrink", help="reduce a failing sim run to a smaller one that "
                                             "fails the same check")
    p_shrink.add_argument("dir", help="a failing sim run directory")
    p_shrink.add_argument("--out", help="where to write the smallest run (default DIR/shrunk)")
    p_shrink.add_argument("--check", help="the check that must keep failing (default: the "
                                          "first the run failed)")
    p_shrink.add_argument("--runs-max", type=int, default=300, help="runs to try at most")
    p_shrink.add_argument("--seconds-max", type=float, default=600.0,
                          help="wall seconds to spend at most")
    p_replay = sub.add_parser("replay", help="run a saved run again with its schedule")
    p_replay.add_argument("dir", help="a run directory (with results.json and nemesis.json)")
    p_replay.add_argument("--out", help="where to write the replay (default DIR/replay)")
    _add_no_progress(p_replay)
    p_report = sub.add_parser("report", help="(re)build report.html of a run directory")
    p_report.add_argument("dir", help="a run directory, or a campaign directory (every run)")
    return parser


def _options(args: argparse.Namespace, seed: int) -> RunOptions:
    values = {field.name: getattr(args, field.name) for field in options_fields()
              if field.name != "seed"}
    options = RunOptions(**values, seed=seed, core=core_overrides(args))
    return swarm.draw(seed, options, args.pinned) if options.swarm else options


def _pinned(argv: Sequence[str]) -> frozenset[str]:
    """The swarm dimensions given explicitly on the command line (``argv`` after the
    subcommand): next to ``--swarm`` they pin their setting instead of drawing it."""
    probe = _Parser(prog=PROG, add_help=False)
    _add_run_options(probe)
    # No defaults: only what the command line itself sets appears in the namespace.
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given, _ = probe.parse_known_args(list(argv))
    return frozenset(vars(given)) & frozenset(swarm.DIMENSIONS)


def parse_seeds(text: str) -> range:
    parts = text.split("..")
    try:
        if len(parts) == 1:
            lo = hi = int(parts[0])
        elif len(parts) == 2:
            lo, hi = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise UsageError(f"{PROG}: --seeds: expected A..B (integers), got {text!r}") from None
    if lo < 0 or hi < lo:
        raise UsageError(f"{PROG}: --seeds: need 0 <= A <= B, got {text!r}")
    if hi - lo + 1 > SEEDS_MAX:
        raise UsageError(f"{PROG}: --seeds: at most {SEEDS_MAX} seeds, got {hi - lo + 1}")
    return range(lo, hi + 1)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        if args.command in ("run", "campaign"):
            args.pinned = _pinned(argv[argv.index(args.command) + 1:])
        if args.command == "run":
            return _run(args)
        if args.command == "campaign":
            return _campaign(args)
        if args.command == "bugs":
            from harness.zoo import listing

            print(listing())
            return 0
        if args.command == "shrink":
            return _shrink(args)
        if args.command == "report":
            return _report(args)
        return _replay(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (OptionsError, ScheduleError) as exc:
        _error(f"{PROG}: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # A live run says what it cleaned up and where its verdict is (RunInterrupted).
        _error(f"{PROG}: {exc}" if str(exc) else f"{PROG}: interrupted")
        return 130
    except Exception as exc:  # a harness bug: one line, not a traceback (and not exit 1)
        if os.environ.get("HARNESS_DEBUG"):
            traceback.print_exc()
        _error(f"{PROG}: internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL


def _shrink(args: argparse.Namespace) -> int:
    from harness.shrink import ShrinkError, shrink_dir

    if args.runs_max < 1 or not args.seconds_max > 0:
        raise UsageError(f"{PROG}: shrink: --runs-max and --seconds-max must be positive")
    source = Path(args.dir)
    out = Path(args.out) if args.out else source / "shrunk"
    try:
        result = shrink_dir(source, out, target=args.check, runs_max=args.runs_max,
                            seconds_max=args.seconds_max,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    except ShrinkError as exc:
        raise UsageError(f"{PROG}: shrink: {exc}") from None
    print(f"shrink: {result.original.operations} -> {result.best.operations} operations, "
          f"{len(result.original.schedule.faults)} -> {len(result.best.schedule.faults)} faults, "
          f"{result.original.options.clients} -> {result.best.options.clients} clients, "
          f"{result.original.options.time_limit:g} -> {result.best.options.time_limit:g} s; "
          f"still fails {result.target} ({result.runs} runs, {result.wall_seconds:.1f} s)")
    print(result.report.line)
    return EXIT_BY_VERDICT[result.report.verdict]


def _error(message: str) -> None:
    print(message.replace("\n", " "), file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    options = _options(args, args.seed)
    out = Path(args.out) if args.out else Path("runs") / f"seed-{options.seed}"
    if options.swarm:
        print(swarm.describe(options), flush=True)
    with run_progress(f"seed {options.seed}", disabled=args.no_progress) as progress:
        report = run(options, out, progress=progress)
    print(report.line)
    return EXIT_BY_VERDICT[report.verdict]


def _campaign(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    if not 1 <= args.jobs <= JOBS_MAX:
        raise UsageError(f"{PROG}: --jobs: must be in [1, {JOBS_MAX}], got {args.jobs}")
    base = _options(args, seeds.start)
    out = Path(args.out) if args.out else Path("runs") / f"campaign-{seeds.start}-{seeds[-1]}"

    from harness.dask_campaign import DaskCampaignError, dask_executor  # distributed: lazily

    try:
        executor = None if args.scheduler is None else dask_executor(args.scheduler)
        with CampaignProgress(len(seeds), disabled=args.no_progress) as progress:
            outcomes = run_campaign(base, seeds, args.jobs, out, progress.seed_done, executor,
                                    pinned=args.pinned, report_pages=args.report_pages)
    except DaskCampaignError as exc:
        raise UsageError(f"{PROG}: {exc}") from None
    from harness.report import write_campaign_index

    write_campaign_index(out, outcomes)
    print_outcomes(outcomes)
    verdicts = {o.verdict for o in outcomes}
    if "invalid" in verdicts:
        return 1
    return 2 if "unknown" in verdicts else 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{PROG}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{PROG}: {path}: not valid JSON: {exc}") from None


def _replay(args: argparse.Namespace) -> int:
    source = Path(args.dir)
    results = _read_json(source / "results.json")
    if not isinstance(results, dict) or "options" not in results:
        raise UsageError(f"{PROG}: {source / 'results.json'}: no 'options' (not a run directory)")
    options = RunOptions.from_json(results["options"], str(source / "results.json"))
    schedule = schedule_from_json(_read_json(source / "nemesis.json"),
                                  str(source / "nemesis.json"))
    if schedule.nodes != options.nodes or schedule.time_limit != options.time_limit:
        raise UsageError(f"{PROG}: {source / 'nemesis.json'}: schedule is for "
                         f"{schedule.nodes} nodes and {schedule.time_limit} s, the options say "
                         f"{options.nodes} nodes and {options.time_limit} s")
    out = Path(args.out) if args.out else source / "replay"
    with run_progress(f"replay {source}", disabled=args.no_progress) as progress:
        report = run(options, out, schedule=schedule, progress=progress,
                     command=command_line(["replay", str(source), "--out", str(out)]))
    print(report.line)
    original = source / "history.jsonl"
    if options.backend == "live":
        # Real processes and clocks: the same schedule, but never the same history.
        print("replay: a live run replays the fault schedule on real processes; its history "
              "is new, not compared")
    elif original.exists():
        same = original.read_bytes() == report.history_jsonl.encode("utf-8")
        if not same:
            print(f"replay: the history DIFFERS from {original}: the run did not reproduce")
            return 1
        print(f"replay: the history is byte-identical to {original}")
    return EXIT_BY_VERDICT[report.verdict]


def _report(args: argparse.Namespace) -> int:
    from harness.report import write_report
    from harness.report.campaign_page import INDEX_NAME as CAMPAIGN_INDEX

    target = Path(args.dir)
    if not target.is_dir():
        raise UsageError(f"{PROG}: report: {target} is not a directory")
    runs = [target] if _is_run_dir(target) else sorted(
        (d for d in target.iterdir() if d.is_dir() and _is_run_dir(d)), key=_seed_order)
    if not runs:
        raise UsageError(f"{PROG}: report: {target} holds no run (no results.json, "
                         "history.jsonl or nemesis.json, here or in its subdirectories)")
    for run_dir in runs:
        print(write_report(run_dir))
    if runs != [target] and (target / CAMPAIGN_INDEX).is_file():
        # A campaign's index links the pages that exist: draw it again, now that all do.
        from harness.campaign import outcome_of
        from harness.report import write_campaign_index

        try:
            outcomes = [outcome_of(run_dir) for run_dir in runs]
        except (OSError, ValueError, KeyError, TypeError, OptionsError) as exc:
            raise UsageError(f"{PROG}: report: {target}/{CAMPAIGN_INDEX} not redrawn: a run's "
                             f"results.json does not read: {exc}") from None
        print(write_campaign_index(target, outcomes))
    return 0


def _is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("results.json", "history.jsonl",
                                                     "nemesis.json"))


def _seed_order(path: Path) -> tuple[int, str]:
    number = path.name.rpartition("-")[2]
    return (int(number), path.name) if number.isdigit() else (-1, path.name)
