"""How fast the harness's simulator runs: simulated seconds per wall second.

The headline (issue 17's target: at least 300x real time) is 5 nodes, 10 clients at the
default rate, no faults, ``--time-limit`` simulated seconds of workload (60 by default; the
recovery phase comes on top), run ``--runs`` times (3 by default) with the same seed; the
median of the runs is the figure. Speed is also given per CPU second of this process
(``process_time``), which a loaded machine disturbs less than wall time. ``--matrix`` adds
3 and 7 nodes, and every nemesis, once each. Prints one JSON object.

``--compare-native`` measures the optional native build (``raftlib.native``: the core and the
driver compiled with mypyc) beside the interpreted code: it compiles a build (or takes
``--native-build DIR``), then runs the headline in fresh processes, interpreted and native in
turn, ``--runs`` times each, and reports both medians and their ratio. It skips, saying why,
where mypy or a C compiler is missing.

    python3 bench/sim_speed.py [--time-limit 60] [--runs 3] [--seed 1] [--matrix]
    python3 bench/sim_speed.py --compare-native [--runs 5] [--native-build DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.options import NEMESIS_KINDS, RunOptions
from harness.runner import simulate
from raftlib import native

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


def compare_native(args: argparse.Namespace) -> dict[str, Any]:
    """The headline interpreted and native, in fresh processes taking turns."""
    with tempfile.TemporaryDirectory(prefix="sim-speed-native-") as scratch:
        build = Path(args.native_build) if args.native_build else Path(scratch) / "build"
        if not args.native_build:
            try:
                native.build(build)
            except (native.NativeBuildError, OSError) as exc:
                return {"skipped": f"no native build: {exc}"}
        command = [sys.executable, __file__, "--runs", "1", "--time-limit",
                   str(args.time_limit), "--seed", str(args.seed)]
        env_plain = {k: v for k, v in os.environ.items() if k != native.ENVIRONMENT_VARIABLE}
        env_native = {**env_plain, native.ENVIRONMENT_VARIABLE: str(build)}
        runs: dict[str, list[dict[str, Any]]] = {"interpreted": [], "native": []}
        for _ in range(args.runs):
            for name, env in (("interpreted", env_plain), ("native", env_native)):
                out = subprocess.run(command, env=env, capture_output=True, text=True,
                                     check=False, timeout=3600)
                if out.returncode != 0:
                    # One line: the error the run ended with (a refused build names itself).
                    lines = out.stderr.strip().splitlines() or [f"exit {out.returncode}"]
                    return {"error": f"the {name} run failed: {lines[-1]}"}
                result = json.loads(out.stdout)
                assert result["native"] == (name == "native"), result
                runs[name].append(result["nodes_5_no_faults"]["each"][0])
    interpreted = median_of(runs["interpreted"])
    compiled = median_of(runs["native"])
    return {
        "interpreted": interpreted,
        "native": compiled,
        "native_over_interpreted": round(
            compiled["speedup_median"] / interpreted["speedup_median"], 2),
        "target_met_native": compiled["speedup_median"] >= TARGET_SPEEDUP,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="simulated seconds of workload per run (default 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the headline (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--matrix", action="store_true",
                        help="also 3 and 7 nodes, and every nemesis (one run each)")
    parser.add_argument("--compare-native", action="store_true",
                        help="interpreted against the native build (raftlib.native), taking "
                        "turns in fresh processes")
    parser.add_argument("--native-build", default=None, metavar="DIR",
                        help="with --compare-native: use this build instead of compiling one")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if args.compare_native:
        compared = compare_native(args)
        print(json.dumps({
            "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "clients": CLIENTS,
            "time_limit_seconds": args.time_limit,
            "target_speedup": TARGET_SPEEDUP,
            **compared,
        }, indent=1))
        if "error" in compared:
            sys.exit(1)
        return
    # A first short run pays for imports and warm-up, so the measured ones do not.
    simulate(RunOptions(nodes=5, clients=CLIENTS, time_limit=1.0, seed=args.seed))
    headline = median_of([measure(5, (), args.time_limit, args.seed) for _ in range(args.runs)])
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "native": native.active(),
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
