"""How fast the harness's simulator runs: simulated seconds per wall second.

Runs the sim backend (no lincheck, no run directory) for 3, 5 and 7 nodes with 10 clients at
the default rate, once without faults and once with every nemesis, and prints one JSON object.
The target (issue 5) is at least 100x real time for 5 nodes and 10 clients.

    python3 bench/sim_speed.py [--time-limit 30] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from harness.options import NEMESIS_KINDS, RunOptions
from harness.runner import simulate


def measure(nodes: int, nemesis: tuple[str, ...], time_limit: float, seed: int) -> dict[str, float]:
    options = RunOptions(nodes=nodes, clients=10, nemesis=nemesis, time_limit=time_limit,
                         seed=seed)
    started = time.perf_counter()
    outcome = simulate(options)
    wall = time.perf_counter() - started
    simulated = outcome.stats["simulated_seconds"]
    return {
        "simulated_seconds": round(simulated, 3),
        "wall_seconds": round(wall, 3),
        "speedup": round(simulated / wall, 1),
        "events_per_wall_second": round(outcome.stats["events"] / wall),
        "operations": outcome.stats["operations"]["invoke"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, object] = {
        "python": platform.python_version(),
        "clients": 10,
        "rate_ops_per_second": RunOptions().rate,
        "time_limit_seconds": args.time_limit,
    }
    for nodes in (3, 5, 7):
        results[f"nodes_{nodes}"] = {
            "no_faults": measure(nodes, (), args.time_limit, args.seed),
            "all_faults": measure(nodes, NEMESIS_KINDS, args.time_limit, args.seed),
        }
    results["target_met_5_nodes"] = results["nodes_5"]["no_faults"]["speedup"] >= 100  # type: ignore[index]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
