"""The ``raft-harness`` command line.

    raft-harness run      [run options] [--out DIR]
    raft-harness campaign --seeds A..B [--jobs J] [run options] [--out DIR]
    raft-harness replay   DIR [--out DIR2]

Run options: ``--backend sim --nodes N --clients C --workload register|kv|append
--nemesis partition,kill,pause,...|all|none --time-limit S --seed N --rate OPS
--request-timeout S --nemesis-interval S --recovery-time S --lincheck-timeout S``.

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

from harness.campaign import JOBS_MAX, SEEDS_MAX, SeedOutcome, run_campaign, summary, table
from harness.nemesis import ScheduleError, schedule_from_json
from harness.options import (
    BACKENDS,
    NEMESIS_KINDS,
    WORKLOADS,
    OptionsError,
    RunOptions,
    command_line,
    parse_nemesis,
)
from harness.runner import EXIT_BY_VERDICT, run

PROG = "raft-harness"
EXIT_USAGE = 3
EXIT_INTERNAL = 4


class UsageError(Exception):
    """Bad arguments or input: the message is the one stderr line; exit status 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    d = RunOptions()
    parser.add_argument("--backend", default=d.backend,
                        help=f"where the cluster runs (available: {', '.join(BACKENDS)})")
    parser.add_argument("--nodes", type=int, default=d.nodes, help="cluster size")
    parser.add_argument("--clients", type=int, default=d.clients,
                        help="concurrent client processes")
    parser.add_argument("--workload", default=d.workload, help=f"one of {', '.join(WORKLOADS)}")
    parser.add_argument("--nemesis", default="none",
                        help=f"comma-separated fault kinds ({', '.join(NEMESIS_KINDS)}), "
                             "'all' or 'none'")
    parser.add_argument("--time-limit", type=float, default=d.time_limit,
                        help="seconds of workload and faults (simulated)")
    parser.add_argument("--rate", type=float, default=d.rate,
                        help="target operations per second, all clients together")
    parser.add_argument("--request-timeout", type=float, default=d.request_timeout,
                        help="seconds before a client gives up on a request")
    parser.add_argument("--nemesis-interval", type=float, default=d.nemesis_interval,
                        help="mean seconds between faults and of each fault")
    parser.add_argument("--recovery-time", type=float, default=d.recovery_time,
                        help="seconds the healed cluster has to serve again")
    parser.add_argument("--lincheck-timeout", type=float, default=d.lincheck_timeout,
                        help="wall seconds for the linearizability search")


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
    p_replay = sub.add_parser("replay", help="run a saved run again with its schedule")
    p_replay.add_argument("dir", help="a run directory (with results.json and nemesis.json)")
    p_replay.add_argument("--out", help="where to write the replay (default DIR/replay)")
    return parser


def _options(args: argparse.Namespace, seed: int) -> RunOptions:
    return RunOptions(
        backend=args.backend, nodes=args.nodes, clients=args.clients, workload=args.workload,
        nemesis=parse_nemesis(args.nemesis), time_limit=args.time_limit, seed=seed,
        rate=args.rate, request_timeout=args.request_timeout,
        nemesis_interval=args.nemesis_interval, recovery_time=args.recovery_time,
        lincheck_timeout=args.lincheck_timeout,
    )


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
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return _run(args)
        if args.command == "campaign":
            return _campaign(args)
        return _replay(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (OptionsError, ScheduleError) as exc:
        _error(f"{PROG}: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error(f"{PROG}: interrupted")
        return 130
    except Exception as exc:  # a harness bug: one line, not a traceback (and not exit 1)
        if os.environ.get("HARNESS_DEBUG"):
            traceback.print_exc()
        _error(f"{PROG}: internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL


def _error(message: str) -> None:
    print(message.replace("\n", " "), file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    options = _options(args, args.seed)
    out = Path(args.out) if args.out else Path("runs") / f"seed-{options.seed}"
    report = run(options, out)
    print(report.line)
    return EXIT_BY_VERDICT[report.verdict]


def _campaign(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    if not 1 <= args.jobs <= JOBS_MAX:
        raise UsageError(f"{PROG}: --jobs: must be in [1, {JOBS_MAX}], got {args.jobs}")
    base = _options(args, seeds.start)
    out = Path(args.out) if args.out else Path("runs") / f"campaign-{seeds.start}-{seeds[-1]}"

    def progress(outcome: SeedOutcome) -> None:
        print(f"seed {outcome.seed}: {outcome.verdict} ({outcome.wall_seconds:.1f} s)",
              file=sys.stderr, flush=True)

    outcomes = run_campaign(base, seeds, args.jobs, out, progress)
    print(table(outcomes))
    print(summary(outcomes))
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
    report = run(options, out, schedule=schedule,
                 command=command_line(["replay", str(source), "--out", str(out)]))
    print(report.line)
    original = source / "history.jsonl"
    if original.exists():
        same = original.read_bytes() == report.history_jsonl.encode("utf-8")
        if not same:
            print(f"replay: the history DIFFERS from {original}: the run did not reproduce")
            return 1
        print(f"replay: the history is byte-identical to {original}")
    return EXIT_BY_VERDICT[report.verdict]
