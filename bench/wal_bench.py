"""WAL throughput: appends/s and fsyncs/s for batches of 1 and 64 entries of 100 bytes.

Run: python3 bench/wal_bench.py [--seconds 2] [--dir DIR] [--no-fsync]
Prints one JSON object. Each round is append(batch) + set_hard_state(commit moves) + sync(),
the way the node driver persists one Ready.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raftlib.core.types import Entry, HardState
from raftlib.storage import WalStorage

ENTRY_BYTES = 100


def run(directory: str, batch: int, seconds: float, fsync: bool) -> dict[str, float]:
    with WalStorage(directory, fsync=fsync) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=1, vote=1))
        wal.sync()
        data = b"x" * ENTRY_BYTES
        index = 1
        rounds = 0
        latencies: list[float] = []
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            wal.append([Entry(term=1, index=i, data=data) for i in range(index, index + batch)])
            wal.set_hard_state(HardState(term=1, vote=1, commit=index))
            wal.sync()
            latencies.append(time.perf_counter() - t0)
            index += batch
            rounds += 1
        elapsed = time.perf_counter() - start
        stats = wal.statistics()
    latencies.sort()
    return {
        "batch_entries": batch,
        "entries_per_second": round((index - 1) / elapsed, 1),
        "batches_per_second": round(rounds / elapsed, 1),
        "fsyncs_per_second": round(stats.fsyncs / elapsed, 1),
        "fsyncs_per_batch": round(stats.fsyncs / max(rounds, 1), 3),
        "batch_latency_p50_ms": round(latencies[len(latencies) // 2] * 1e3, 3),
        "batch_latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 3),
        "mib_written_per_second": round(stats.bytes_written / elapsed / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per configuration")
    parser.add_argument("--dir", help="parent directory for the WAL (default: a temp dir)")
    parser.add_argument("--no-fsync", action="store_true", help="unsafe baseline")
    args = parser.parse_args()
    results = []
    for batch in (1, 64):
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            results.append(run(directory, batch, args.seconds, not args.no_fsync))
    print(json.dumps({"bench": "wal", "fsync": not args.no_fsync, "results": results}))


if __name__ == "__main__":
    main()
