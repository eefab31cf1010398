"""One PySyncObj node for ``bench/raft_throughput.py --phases pysyncobj``: the baseline raftlib
is compared with at equal load (3 nodes on loopback, ``--command-bytes`` commands, N proposers).

    python3 bench/pysyncobj_node.py --id 1 --peers 1=127.0.0.1:7001,2=...,3=... \
        --proposers 1,64 --seconds 5 --warmup-seconds 1 --command-bytes 100

Every node runs this; the one that leads once the cluster is ready runs the load and prints one
JSON line (``{"results": [...]}``), the others print ``{"follower": ID}`` and idle until their
stdin reaches end of file (the bench closes it, or dies). PySyncObj keeps its log in memory
(no journal file, so no fsync): the unsafe, fastest configuration, tuned for latency with a
short ``autoTickPeriod`` (``--tick-seconds``: PySyncObj takes queued commands on its tick) and a
short ``appendEntriesPeriod`` (``--append-period-seconds``: a leader sends new entries with its
next heartbeat unless an apply prompts it earlier, so by default one command waits 100 ms).

A proposer is a chain: the callback of one command (run on PySyncObj's thread when it is
applied) issues the next, so N proposers keep N commands outstanding, like N tasks looping on
``await node.propose(cmd)`` in the raftlib phase. Latency is issue-to-callback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

try:
    from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]
except ImportError:  # the bench reports the phase as skipped
    print(json.dumps({"skipped": "pysyncobj is not installed (pip install -e '.[bench]')"}),
          flush=True)
    sys.exit(0)

READY_SECONDS_MAX = 30.0
# PySyncObj's own queue of commands waiting for its tick; the bench never has more outstanding
# than its proposer count, far below this.
COMMANDS_QUEUE_SIZE = 100_000


class Counter(SyncObj):  # type: ignore[misc]  # pysyncobj ships no type hints
    """The same state machine as raftlib's phase: count commands, return the count."""

    def __init__(self, self_address: str, others: list[str], conf: Any) -> None:
        super().__init__(self_address, others, conf=conf)
        self._applied = 0

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, command: bytes) -> int:
        self._applied += 1
        return self._applied


def _phase(obj: Counter, proposers: int, warmup: float, seconds: float,
           command_bytes: int) -> dict[str, Any]:
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    window = [float("inf"), float("inf")]
    running = [True]

    def issue(worker: int, sequence: int) -> None:
        command = f"{worker:04d}:{sequence}".encode().ljust(command_bytes, b".")
        started = time.perf_counter()

        def done(result: Any, error: Any) -> None:
            finished = time.perf_counter()
            with lock:
                if error:
                    errors[str(error)] = errors.get(str(error), 0) + 1
                elif window[0] <= finished <= window[1]:
                    latencies.append(finished - started)
            if running[0]:
                issue(worker, sequence + 1)

        obj.apply(command, callback=done)

    cpu_before = 0.0
    for worker in range(proposers):
        issue(worker, 1)
    time.sleep(warmup)
    cpu_before = time.process_time()
    window[0] = time.perf_counter()
    time.sleep(seconds)
    window[1] = time.perf_counter()
    cpu_after = time.process_time()
    running[0] = False
    time.sleep(0.2)  # let outstanding callbacks finish
    with lock:
        done_latencies = sorted(latencies)
    elapsed = window[1] - window[0]
    count = len(done_latencies)

    def pct(fraction: float) -> float | None:
        if not done_latencies:
            return None
        return round(done_latencies[min(count - 1, int(fraction * count))] * 1e3, 3)

    rate = count / elapsed
    return {
        "proposers": proposers,
        "commands": count,
        "commands_per_second": round(rate, 1),
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "leader_cpu_us_per_command": round((cpu_after - cpu_before) * 1e6 / max(count, 1), 1),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peers", required=True, help="1=HOST:PORT,2=...")
    parser.add_argument("--proposers", default="1,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--command-bytes", type=int, default=100)
    parser.add_argument("--tick-seconds", type=float, default=0.0005)
    parser.add_argument("--append-period-seconds", type=float, default=0.0005)
    args = parser.parse_args()
    peers = dict(item.split("=", 1) for item in args.peers.split(","))
    me = peers.pop(str(args.id))
    conf = SyncObjConf(autoTickPeriod=args.tick_seconds, commandsQueueSize=COMMANDS_QUEUE_SIZE,
                       appendEntriesPeriod=args.append_period_seconds,
                       logCompactionMinEntries=10**9, logCompactionMinTime=10**9,
                       dynamicMembershipChange=False)
    obj = Counter(me, sorted(peers.values()), conf)
    deadline = time.monotonic() + READY_SECONDS_MAX
    leader = None
    while time.monotonic() < deadline:
        status = obj.getStatus()
        leader = status.get("leader")
        if obj.isReady() and leader is not None and status.get("has_quorum"):
            break
        time.sleep(0.05)
    else:
        print(json.dumps({"error": f"node {args.id}: no ready leader in {READY_SECONDS_MAX}s"}),
              flush=True)
        os._exit(1)
    if str(leader) != str(status["self"]):
        print(json.dumps({"follower": args.id}), flush=True)
        sys.stdin.read()  # until the bench closes it
        os._exit(0)
    results = [
        _phase(obj, int(n), args.warmup_seconds, args.seconds, args.command_bytes)
        for n in args.proposers.split(",")
    ]
    print(json.dumps({"leader": args.id, "results": results}), flush=True)
    sys.stdin.read()
    os._exit(0)  # PySyncObj's threads do not stop on their own


if __name__ == "__main__":
    main()
