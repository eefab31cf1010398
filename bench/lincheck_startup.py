"""Benchmark of one ``lincheck check`` process on a small history: the per-file cost.

Usage: python3 bench/lincheck_startup.py [--runs N] [--python PY] [--script PATH]

Times, in the same run, ``python -c pass`` (the interpreter's own start), ``python -m lincheck
check SMALL --model register`` and the ``lincheck`` console script next to ``python`` (or
``--script``), each ``--runs`` times (default 30), interleaved so that a burst of machine load
hits all three alike. Prints one JSON object: per command the median, minimum and maximum
wall milliseconds, the median CPU milliseconds (user + system, steadier on a loaded machine),
and the exit status seen. The figure to hold is ``lincheck_check``'s median
against the 60 ms budget; ``python -X importtime`` shows where the time goes.
"""

from __future__ import annotations

import argparse
import compileall
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STARTUP_BUDGET_MS = 60.0
RUNS_DEFAULT = 30
# One run must not hang the bench: far above any plausible start-up.
RUN_TIMEOUT_SECONDS = 30.0
SMALL = ('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
         '{"process": 1, "type": "invoke", "f": "read", "value": null}\n'
         '{"process": 0, "type": "ok", "f": "write", "value": 1}\n'
         '{"process": 1, "type": "ok", "f": "read", "value": 1}\n')


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(argv: list[str]) -> tuple[float, float, int]:
    """Wall and CPU milliseconds of one run, and its exit status. CPU time (user + system of
    the child) barely moves with the machine's load; wall time is what a user waits."""
    cpu = _cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=RUN_TIMEOUT_SECONDS, check=False)
    wall = (time.perf_counter() - started) * 1000.0
    return wall, (_cpu_seconds() - cpu) * 1000.0, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--script", default=str(Path(sys.executable).with_name("lincheck")))
    args = parser.parse_args()
    # Bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE set, every process
    # would compile lincheck's modules again.
    compileall.compile_dir(str(ROOT / "checker" / "lincheck"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.jsonl"
        small.write_text(SMALL, encoding="utf-8")
        check = ["check", str(small), "--model", "register"]
        commands: dict[str, list[str]] = {
            "python_bare": [args.python, "-c", "pass"],
            "python_m_lincheck_check": [args.python, "-m", "lincheck", *check],
        }
        if Path(args.script).is_file():
            commands["lincheck_check"] = [args.script, *check]
        samples: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        statuses: dict[str, set[int]] = {name: set() for name in commands}
        for argv in commands.values():  # warm the page cache and the .pyc files
            _time(argv)
        for _ in range(args.runs):
            for name, argv in commands.items():
                ms, cpu_ms, status = _time(argv)
                samples[name].append(ms)
                cpu[name].append(cpu_ms)
                statuses[name].add(status)
    out: dict[str, Any] = {"runs": args.runs, "budget_ms": STARTUP_BUDGET_MS}
    for name, values in samples.items():
        out[name] = {"median_ms": round(statistics.median(values), 1),
                     "min_ms": round(min(values), 1), "max_ms": round(max(values), 1),
                     "cpu_median_ms": round(statistics.median(cpu[name]), 1),
                     "exit_statuses": sorted(statuses[name])}
    # The interpreter's own start is not lincheck's to cut: what lincheck adds on top of it.
    out["lincheck_over_bare_python_ms"] = round(
        out["python_m_lincheck_check"]["median_ms"] - out["python_bare"]["median_ms"], 1)
    out["lincheck_over_bare_python_cpu_ms"] = round(
        out["python_m_lincheck_check"]["cpu_median_ms"] - out["python_bare"]["cpu_median_ms"], 1)
    main_cmd = "lincheck_check" if "lincheck_check" in samples else "python_m_lincheck_check"
    out["within_budget"] = out[main_cmd]["median_ms"] <= STARTUP_BUDGET_MS
    if "lincheck_check" not in samples:
        out["lincheck_check_skipped"] = f"no console script at {args.script}"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
