"""How fast the harness's simulator runs: simulated seconds per wall second.

The headline (issue 17's target: at least 300x real time) is 5 nodes, 10 clients at the
default rate, no faults, ``--time-limit`` simulated seconds of workload (60 by default; the
recovery phase comes on top), run ``--runs`` times (3 by default) with the same seed; the
median of the runs is the figure. Speed is also given per CPU second of this process
(``process_time``), which a loaded machine disturbs less than wall time. ``--matrix`` adds
3 and 7 nodes, and every nemesis, once each. Prints one JSON object.

    python3 bench/sim_speed.py [--time-limit 60] [--runs 3] [--seed 1] [--matrix]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

from harness.options import NEMESIS_KINDS, RunOptions
from harness.runner import simulate

TARGET_SPEEDUP = 300  # simulated seconds per wall second, 5 nodes, 10 clients, no faults
CLIENTS = 10


def measure(nodes: int, nemesis: tuple[str, ...], time_limit: float, seed: int) -> dict[str, Any]:
    options = RunOptions(nodes=nodes, clients=CLIENTS, nemesis=nemesis, time_limit=time_limit,
                         seed=seed)
    started = time.perf_counter()
    cpu_started = time.process_time()
    outcome = simulate(options)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    simulated = outcome.stats["simulated_seconds"]
    return {
        "simulated_seconds": round(simulated, 3),
        "wall_seconds": round(wall, 3),
        "speedup": round(simulated / wall, 1),
        "speedup_per_cpu_second": round(simulated / cpu, 1),
        "events_per_wall_second": round(outcome.stats["events"] / wall),
        "operations": outcome.stats["operations"]["invoke"],
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    speeds = [run["speedup"] for run in runs]
    return {
        "runs": len(runs),
        "speedup_median": statistics.median(speeds),
        "speedup_min": min(speeds),
        "speedup_max": max(speeds),
        "speedup_per_cpu_second_median": statistics.median(
            run["speedup_per_cpu_second"] for run in runs
        ),
        "each": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="simulated seconds of workload per run (default 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the headline (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--matrix", action="store_true",
                        help="also 3 and 7 nodes, and every nemesis (one run each)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    # A first short run pays for imports and warm-up, so the measured ones do not.
    simulate(RunOptions(nodes=5, clients=CLIENTS, time_limit=1.0, seed=args.seed))
    headline = median_of([measure(5, (), args.time_limit, args.seed) for _ in range(args.runs)])
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "clients": CLIENTS,
        "rate_ops_per_second": RunOptions().rate,
        "time_limit_seconds": args.time_limit,
        "nodes_5_no_faults": headline,
        "target_speedup": TARGET_SPEEDUP,
        "target_met": headline["speedup_median"] >= TARGET_SPEEDUP,
    }
    if args.matrix:
        for nodes in (3, 5, 7):
            results[f"nodes_{nodes}"] = {
                "no_faults": measure(nodes, (), args.time_limit, args.seed),
                "all_faults": measure(nodes, NEMESIS_KINDS, args.time_limit, args.seed),
            }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
