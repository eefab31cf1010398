"""Crash-heavy cas-register histories: is every one decided, and correctly, within the budget?

Usage: python3 bench/lincheck_crashy.py [--grid small|full] [--timeout SECONDS]
           [--crash-pcts 1,3,5] [--modes default,search] [--seed N]

Generates seeded cas-register histories with the generator of ``lincheck_vs_porcupine.py``
(each operation takes effect at one instant of a real register, writes and cas write fresh
values, crashed operations take effect or not at random): 20 and 50 processes, 5,000 and
20,000 operations (``--grid small``: 5,000 only), each ``--crash-pcts`` percent crashed
(``info``), each valid and with one injected stale read (then not linearizable). Each history
is checked in a fresh process (so that peak memory is its own) with ``--timeout`` seconds
(default 60), in each of ``--modes``:

* ``default``: ``lincheck.check`` as users run it (the zone algorithm decides a partition whose
  values are distinct, which these are);
* ``search``: the zone algorithm switched off, the search alone (what a history of repeated
  values would get).

Prints one JSON object: a row per history and mode (verdict, expected, seconds, what decided,
peak RSS, the reason of an unknown) and per mode whether every history was decided correctly
within the budget. Timings on a shared machine are noisy; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 60.0
# A child that outlives its check's timeout by this much is killed and counted unknown.
CHILD_GRACE_SECONDS = 60.0
SEED_DEFAULT = 20261207
PROCESSES = (20, 50)
CRASH_PCTS_DEFAULT = (1, 5)
MODES = ("default", "search")


def _one(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child: generate, check, report."""
    sys.path.insert(0, str(ROOT / "checker"))
    sys.path.insert(0, str(ROOT / "bench"))
    from lincheck import search
    from lincheck.formats import history_from_events
    from lincheck.models import get_model
    from lincheck_vs_porcupine import generate_cas_history

    events = generate_cas_history(spec["processes"], spec["ops"], spec["crash_pct"],
                                  spec["stale"], spec["seed"])
    history = history_from_events(events)
    search.ZONES_ENABLED = spec["mode"] != "search"
    started = time.perf_counter()
    result = search.check(history, get_model("cas-register"), timeout=spec["timeout"])
    seconds = time.perf_counter() - started
    return {"verdict": result.verdict, "seconds": round(seconds, 3),
            "decided_by": result.stats["decided_by"],
            "crashed": sum(1 for op in history.operations if op.status == "info"),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "reason": result.reason if result.verdict == "unknown" else ""}


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                              capture_output=True, text=True, check=False,
                              timeout=spec["timeout"] + CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        return {"verdict": "unknown", "reason": "killed: the child outlived its timeout"}
    if done.returncode != 0:
        return {"verdict": "crash", "reason": " ".join(done.stderr.split())[-500:]}
    row: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("small", "full"), default="full")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS)
    parser.add_argument("--crash-pcts", default=",".join(map(str, CRASH_PCTS_DEFAULT)))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one history, in a child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(json.loads(args.one))))
        return
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: each of {', '.join(MODES)}")
    sizes = (5_000,) if args.grid == "small" else (5_000, 20_000)
    pcts = [float(p) for p in args.crash_pcts.split(",") if p]
    out: dict[str, Any] = {"load_average_before": os.getloadavg(), "timeout_seconds":
                           args.timeout, "seed": args.seed, "rows": []}
    n = 0
    for processes in PROCESSES:
        for ops in sizes:
            for pct in pcts:
                for stale in (False, True):
                    n += 1
                    for mode in modes:
                        spec = {"processes": processes, "ops": ops, "crash_pct": pct,
                                "stale": stale, "seed": args.seed + n, "mode": mode,
                                "timeout": args.timeout}
                        row = {**spec, "expected": "illegal" if stale else "ok",
                               **_run_child(spec)}
                        row["right"] = row["verdict"] == row["expected"]
                        out["rows"].append(row)
                        print(json.dumps(row), file=sys.stderr)  # progress
    for mode in modes:
        rows = [r for r in out["rows"] if r["mode"] == mode]
        out[mode] = {"histories": len(rows), "right": sum(r["right"] for r in rows),
                     "wrong_or_undecided": [
                         f"{r['processes']}p-{r['ops']}-{r['crash_pct']}%-"
                         f"{'stale' if r['stale'] else 'valid'}: {r['verdict']}"
                         for r in rows if not r["right"]],
                     "seconds_max": max((r.get("seconds", args.timeout) for r in rows),
                                        default=0.0)}
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
