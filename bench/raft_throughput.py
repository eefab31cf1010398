"""Raft throughput and commit latency: a 3-node cluster of separate processes on loopback TCP.

Run: python3 bench/raft_throughput.py [--seconds 5] [--warmup-seconds 1] [--proposers 1,64]
                                      [--runs 3] [--no-fsync] [--command-bytes 100]
                                      [--storage-inline] [--transport plain,tls]
                                      [--phases raft,resp,pysyncobj] [--resp-clients 50]
                                      [--resp-requests 20000]

Prints one JSON object. Setup of each run: nodes 2 and 3 are child processes
(``bench/raft_bench_node.py``: WalStorage in their own temp data dir, TcpTransport, a counting
state machine: what ``raftlib serve`` runs); node 1 runs in this process, with the same storage
and transport, and is made leader (it campaigns at once; the children's election timeouts are
longer). Then, for each proposer count N in turn, N tasks loop on ``await node.propose(cmd)``
with distinct ``--command-bytes`` commands: the first ``--warmup-seconds`` are excluded, the
next ``--seconds`` are measured.

- commands_per_second: proposals that completed (committed on a quorum, fsynced on a
  quorum, applied on the leader, result returned) inside the window, per second.
- latency p50/p99/mean/max: propose() call to result, of the commands completed in the window.
- leader_/follower_fsyncs_per_second, *_entries_per_sync: from WalStorage.statistics() deltas
  over the window (a "sync" is one group commit; it may flush more than one file).
- entries_per_append: entries per non-empty AppendEntries the leader sent (node statistics).
- *_cpu_percent: CPU time of each process over the window (100 = one core busy), and
  *_cpu_us_per_command: the same per command (steadier than rates on a shared machine; the
  leader's includes the proposer tasks).
- leader_frames_per_command, leader_readies_per_command: TCP frames the leader wrote and read,
  and Ready batches it processed, per command (what batching saves).
- load_average_1min: the machine's load when the phase ended (other work competes for the 2
  cores and the disk; compare runs with that in mind).

``--transport plain,tls`` (the default runs both) repeats the proposer phases over each peer
transport in the same invocation, each run on a fresh cluster, modes alternating within a run
so drift on the shared machine hits both alike: ``plain`` is TcpTransport without security
(``raftlib serve --insecure``), ``tls`` is mutual TLS 1.3 (``MutualTls``, certificates made
once per invocation by ``raftlib.certs.ensure_certs`` in a temp dir). ``results`` and
``targets_met`` stay those of the first mode listed (plain by default, as before this option);
``transports`` holds every mode's, and ``tls_cost`` is, per proposer count, the ratio
tls commands_per_second / plain commands_per_second (1.0 = free; 0.8 = TLS costs 20%).

``--phases resp`` (in the default ``raft,resp``) runs ``bench/resp_load.py`` once per run: a
3-node cluster of ``python -m raftlib.cli serve --client-port P --insecure`` processes, its
leader's RESP port loaded by ``redis-benchmark -c 50 -n 20000 -t set,get --csv`` when that is
on PATH, and always by the builtin Trio generator (50 connections, SET then GET, each for
``--warmup-seconds`` + ``--seconds``). ``resp`` reports ``tool`` (redis-benchmark if it ran
cleanly, else builtin) with its ``set``/``get`` requests_per_second, p50_ms, p99_ms, plus both
tools' figures in ``builtin`` and ``redis_benchmark``; medians over runs.

``--phases pysyncobj`` (in the default) runs PySyncObj at the same load in the same run,
right after each raft phase: 3 processes of ``bench/pysyncobj_node.py`` on loopback, the same
``--proposers``, ``--command-bytes``, ``--warmup-seconds`` and ``--seconds``, its log in memory
(PySyncObj has no fsync), tuned for latency (0.5 ms tick and heartbeat). ``pysyncobj`` holds
its figures (median of runs; ``{"skipped": reason}`` without the package: ``pip install
-e '.[bench]'``), and ``versus_pysyncobj`` the ratios, per proposer count, of raftlib's
commands_per_second (in this invocation's fsync mode: with fsync unless ``--no-fsync``) to
PySyncObj's, and of raftlib's p50 latency to PySyncObj's. Issue 17's targets: 64 proposers
with fsync >= 1.0x PySyncObj; 1 proposer p50 without fsync (``--no-fsync``) <= 1.5x.

``--no-fsync`` is the unsafe baseline (WalStorage(fsync=False) on every node);
``--storage-inline`` runs every node with NodeConfig(storage_thread=False): syncs on the Trio
loop instead of the node's sync thread.

Every figure is the median over ``--runs`` runs, each with a fresh cluster; ``runs`` in the
output keeps the per-run values. Children are always killed on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import attrs
import resp_load
import trio

from raftlib.certs import NodeFiles, ensure_certs
from raftlib.core.types import Role
from raftlib.node import Node, NodeConfig, open_node
from raftlib.storage.wal import WalStorage
from raftlib.supervisor import POLL_SECONDS, Supervisor, free_ports
from raftlib.transport.tcp import TcpTransport
from raftlib.transport.tls import MutualTls

NODE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raft_bench_node.py")
NODE_IDS = (1, 2, 3)
LEADER_ID = 1
TICK_SECONDS = 0.025
# Followers wait 40-80 ticks (1-2 s) before campaigning; node 1 campaigns at once.
FOLLOWER_ELECTION_TICKS_MIN = 40
STARTUP_TIMEOUT_SECONDS = 20.0
LEADER_TIMEOUT_SECONDS = 15.0
REPORT_TIMEOUT_SECONDS = 5.0
ATTEMPTS_MAX = 3
CHILD_STOP_TIMEOUT_SECONDS = 3.0
TARGET_COMMANDS_PER_SECOND = 10_000
TARGET_P99_MS = 50.0
TARGET_SINGLE_P50_MS = 2.0
TRANSPORT_MODES = ("plain", "tls")
PHASES = ("raft", "resp", "pysyncobj")
PYSYNCOBJ_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pysyncobj_node.py")
# PySyncObj elects a leader in about a second; its load then takes the phases' own time.
PYSYNCOBJ_START_SECONDS_MAX = 30.0


class BenchError(Exception):
    pass


class _Counter:
    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> int:
        self.applied += 1
        return self.applied


def _cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of /proc/PID/stat (1-based); the split starts at 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Child:
    """A follower process (kept by the supervisor) and a line reader on its stdout."""

    def __init__(self, node_id: int, supervisor: Supervisor) -> None:
        self.node_id = node_id
        self._supervisor = supervisor
        proc = supervisor.process(node_id)
        assert proc.stdout is not None
        self.pid = proc.pid
        # A stream of our own over the pipe, so reading it never blocks the event loop.
        self._stdout = trio.lowlevel.FdStream(os.dup(proc.stdout.fileno()))
        self._buffer = bytearray()

    async def read_line(self, timeout_seconds: float) -> dict[str, Any]:
        with trio.move_on_after(timeout_seconds):
            while b"\n" not in self._buffer:
                data = await self._stdout.receive_some(65536)
                if not data:
                    raise BenchError(f"node {self.node_id} exited: {self.log_tail()}")
                self._buffer += data
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            report: dict[str, Any] = json.loads(line)
            return report
        raise BenchError(f"node {self.node_id} did not answer in {timeout_seconds}s")

    async def report(self) -> dict[str, Any]:
        self._supervisor.process(self.node_id).send_signal(signal.SIGUSR1)
        report = await self.read_line(REPORT_TIMEOUT_SECONDS)
        report["cpu_seconds"] = _cpu_seconds_of(self.pid)
        return report

    def log_tail(self) -> str:
        return self._supervisor.log_tail(self.node_id)

    async def aclose(self) -> None:
        await self._stdout.aclose()


def _child_command(
    peers_arg: str, data_dir: Callable[[int], Path], fsync: bool, storage_inline: bool,
    tls_dir: str | None,
) -> Callable[[int], list[str]]:
    def command(node_id: int) -> list[str]:
        argv = [
            sys.executable, NODE_SCRIPT,
            "--id", str(node_id),
            "--peers", peers_arg,
            "--data", str(data_dir(node_id)),
            "--tick-ms", str(TICK_SECONDS * 1000),
            "--election-ticks-min", str(FOLLOWER_ELECTION_TICKS_MIN),
        ]
        if not fsync:
            argv.append("--no-fsync")
        if storage_inline:
            argv.append("--storage-inline")
        if tls_dir is not None:
            argv += ["--tls-dir", tls_dir]
        return argv
    return command


async def _stop_children(supervisor: Supervisor, children: Sequence[_Child]) -> None:
    for child in children:
        await child.aclose()
    supervisor.begin_stop_all(CHILD_STOP_TIMEOUT_SECONDS)
    with trio.move_on_after(CHILD_STOP_TIMEOUT_SECONDS) as scope:
        scope.shield = True
        while supervisor.stopping():
            await trio.sleep(POLL_SECONDS)
    supervisor.end_stop_all()


async def _wait_leader(node: Node) -> None:
    """Make node 1 lead and wait until both followers hold its whole log."""
    with trio.move_on_after(LEADER_TIMEOUT_SECONDS):
        while True:
            status = node.status()
            if status.role is Role.LEADER:
                followers = status.followers
                if len(followers) == len(NODE_IDS) - 1 and all(
                    f.match_index == status.last_index for f in followers.values()
                ):
                    return
            elif status.role is Role.FOLLOWER and status.leader in (0, LEADER_ID):
                await node.campaign()
            await trio.sleep(0.1)
    raise BenchError(f"node {LEADER_ID} did not become leader with caught-up followers")


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    position = min(len(sorted_values) - 1, int(len(sorted_values) * fraction))
    return sorted_values[position]


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return float(after.get(key, 0)) - float(before.get(key, 0))


async def _phase(
    node: Node,
    storage: WalStorage,
    children: Sequence[_Child],
    proposers: int,
    warmup_seconds: float,
    seconds: float,
    command_bytes: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    completed = 0
    errors: dict[str, int] = {}
    window_start = window_end = float("inf")

    async def propose_loop(worker: int) -> None:
        nonlocal completed
        sequence = 0
        prefix = f"{worker:04d}:".encode()
        clock = time.perf_counter
        while True:
            sequence += 1
            command = (prefix + str(sequence).encode()).ljust(command_bytes, b".")
            started = clock()
            try:
                await node.propose(command)
            except Exception as exc:  # counted and reported: a healthy run has none
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                await trio.sleep(0.01)
                continue
            finished = clock()
            if window_start <= finished <= window_end:
                completed += 1
                latencies.append(finished - started)

    def snapshot_self() -> dict[str, Any]:
        return {
            "time": time.monotonic(),
            "storage": attrs.asdict(storage.statistics()),
            "node": node.statistics(),
            "cpu_seconds": _cpu_seconds_self(),
        }

    async with trio.open_nursery() as nursery:
        for worker in range(proposers):
            nursery.start_soon(propose_loop, worker)
        await trio.sleep(warmup_seconds)
        leader_before = snapshot_self()
        followers_before = [await child.report() for child in children]
        window_start = time.perf_counter()
        await trio.sleep(seconds)
        window_end = time.perf_counter()
        leader_after = snapshot_self()
        nursery.cancel_scope.cancel()
    followers_after = [await child.report() for child in children]
    status = node.status()
    if status.role is not Role.LEADER:
        raise BenchError(f"node {LEADER_ID} lost leadership during the measurement")

    elapsed = window_end - window_start
    latencies.sort()
    ms = 1e3
    lead_storage_after, lead_storage_before = leader_after["storage"], leader_before["storage"]
    lead_syncs = _delta(lead_storage_after, lead_storage_before, "syncs")
    lead_entries = _delta(lead_storage_after, lead_storage_before, "entries_written")
    append_msgs = _delta(leader_after["node"], leader_before["node"], "append_messages_sent")
    append_entries = _delta(leader_after["node"], leader_before["node"], "append_entries_sent")
    follower_fsyncs: list[float] = []
    follower_entries_per_sync: list[float] = []
    follower_cpu: list[float] = []
    for before, after in zip(followers_before, followers_after, strict=True):
        span = after["time"] - before["time"]
        syncs = _delta(after["storage"], before["storage"], "syncs")
        follower_fsyncs.append(_delta(after["storage"], before["storage"], "fsyncs") / span)
        follower_entries_per_sync.append(
            _delta(after["storage"], before["storage"], "entries_written") / max(syncs, 1)
        )
        follower_cpu.append(100 * (after["cpu_seconds"] - before["cpu_seconds"]) / span)
    lead_span = leader_after["time"] - leader_before["time"]
    leader_cpu = 100 * (leader_after["cpu_seconds"] - leader_before["cpu_seconds"]) / lead_span
    return {
        "proposers": proposers,
        "commands": completed,
        "commands_per_second": round(completed / elapsed, 1),
        "latency_p50_ms": round(_percentile(latencies, 0.50) * ms, 3),
        "latency_p99_ms": round(_percentile(latencies, 0.99) * ms, 3),
        "latency_mean_ms": round(statistics.fmean(latencies) * ms, 3) if latencies else None,
        "latency_max_ms": round(latencies[-1] * ms, 3) if latencies else None,
        "leader_fsyncs_per_second": round(
            _delta(lead_storage_after, lead_storage_before, "fsyncs") / lead_span, 1
        ),
        "leader_syncs_per_second": round(lead_syncs / lead_span, 1),
        "leader_entries_per_sync": round(lead_entries / max(lead_syncs, 1), 2),
        "entries_per_append": round(append_entries / max(append_msgs, 1), 2),
        "follower_fsyncs_per_second": round(statistics.fmean(follower_fsyncs), 1),
        "follower_entries_per_sync": round(statistics.fmean(follower_entries_per_sync), 2),
        "leader_cpu_percent": round(leader_cpu, 1),
        "follower_cpu_percent": round(statistics.fmean(follower_cpu), 1),
        # CPU per command (leader process includes the proposer tasks): less noisy than rates.
        "leader_cpu_us_per_command": round(leader_cpu * 1e4 / max(completed / elapsed, 1), 1),
        "follower_cpu_us_per_command": round(
            statistics.fmean(follower_cpu) * 1e4 / max(completed / elapsed, 1), 1
        ),
        "leader_frames_per_command": round(
            (
                _delta(leader_after["node"], leader_before["node"], "transport_frames_written")
                + _delta(leader_after["node"], leader_before["node"], "transport_frames_received")
            )
            / max(completed, 1),
            2,
        ),
        "leader_readies_per_command": round(
            _delta(leader_after["node"], leader_before["node"], "readies") / max(completed, 1), 2
        ),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "errors": errors,
    }


async def _run_once(
    args: argparse.Namespace, proposer_counts: Sequence[int], tls_dir: str | None
) -> list[dict[str, Any]]:
    """One fresh cluster, every proposer phase; mutual TLS between peers when ``tls_dir``."""
    fsync = not args.no_fsync
    with tempfile.TemporaryDirectory(prefix="raft-bench-", dir=args.dir) as tmp:
        ports = free_ports(len(NODE_IDS))
        addresses = {nid: ("127.0.0.1", port) for nid, port in zip(NODE_IDS, ports, strict=True)}
        peers_arg = ",".join(f"{nid}={host}:{port}" for nid, (host, port) in addresses.items())
        # The followers' stdin is a pipe never written to: its end of file tells them the
        # bench is gone, even if it is killed.
        supervisor = Supervisor(Path(tmp), [n for n in NODE_IDS if n != LEADER_ID],
                                _child_command(peers_arg, lambda n: Path(tmp) / f"node-{n}",
                                               fsync, args.storage_inline, tls_dir),
                                pipe_stdout=True, pipe_stdin=True)
        children: list[_Child] = []
        try:
            for nid in supervisor.members:
                supervisor.start(nid)
                children.append(_Child(nid, supervisor))
            for child in children:
                await child.read_line(STARTUP_TIMEOUT_SECONDS)  # {"ready": id}
            config = NodeConfig(
                node_id=LEADER_ID,
                peers={nid: f"{host}:{port}" for nid, (host, port) in addresses.items()},
                tick_seconds=TICK_SECONDS,
                storage_thread=not args.storage_inline,
            )
            storage = WalStorage(os.path.join(tmp, f"node{LEADER_ID}"), fsync=fsync)
            results = []
            if tls_dir is None:
                transport = TcpTransport(addresses)
            else:
                files = NodeFiles.in_directory(Path(tls_dir), LEADER_ID)
                transport = TcpTransport(addresses, security=MutualTls(LEADER_ID, files))
            async with open_node(
                config,
                storage=storage,
                transport=transport,
                state_machine=_Counter(),
            ) as node:
                await _wait_leader(node)
                for proposers in proposer_counts:
                    results.append(
                        await _phase(
                            node,
                            storage,
                            children,
                            proposers,
                            args.warmup_seconds,
                            args.seconds,
                            args.command_bytes,
                        )
                    )
                    # Let the cluster drain before the next phase.
                    await node.wait_applied(node.status().last_index)
            return results
        finally:
            await _stop_children(supervisor, children)
            supervisor.kill_all()


async def _pysyncobj_once(
    args: argparse.Namespace, proposer_counts: Sequence[int]
) -> dict[str, Any]:
    """One fresh 3-node PySyncObj cluster (``bench/pysyncobj_node.py``) at the raft phase's
    load: its leader's JSON report, or ``{"skipped": reason}`` without pysyncobj."""
    ports = free_ports(len(NODE_IDS))
    peers = ",".join(f"{nid}=127.0.0.1:{port}" for nid, port in zip(NODE_IDS, ports, strict=True))
    counts = ",".join(str(n) for n in proposer_counts)
    budget = PYSYNCOBJ_START_SECONDS_MAX + len(proposer_counts) * (
        args.warmup_seconds + args.seconds + 1.0)
    procs: list[trio.Process] = []
    found: dict[str, Any] = {}
    try:
        for nid in NODE_IDS:
            procs.append(await trio.lowlevel.open_process(
                [sys.executable, PYSYNCOBJ_SCRIPT, "--id", str(nid), "--peers", peers,
                 "--proposers", counts, "--seconds", str(args.seconds),
                 "--warmup-seconds", str(args.warmup_seconds),
                 "--command-bytes", str(args.command_bytes)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))

        async def read_report(proc: trio.Process) -> None:
            assert proc.stdout is not None
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    report = json.loads(line)
                    if "results" in report or "skipped" in report or "error" in report:
                        found.update(report)

        with trio.move_on_after(budget):
            async with trio.open_nursery() as nursery:
                for proc in procs:
                    nursery.start_soon(read_report, proc)

                async def until_found() -> None:
                    while not found:
                        await trio.sleep(POLL_SECONDS)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_found)
    finally:
        for proc in procs:
            if proc.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await proc.stdin.aclose()
            with trio.move_on_after(CHILD_STOP_TIMEOUT_SECONDS):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if "error" in found:
        raise BenchError(f"pysyncobj: {found['error']}")
    if not found:
        raise BenchError(f"pysyncobj: no report within {budget:.0f} s")
    return found


def _versus_pysyncobj(
    raft: list[dict[str, Any]], syncobj: list[dict[str, Any]]
) -> dict[str, Any]:
    """raftlib / PySyncObj per proposer count: throughput and p50 latency ratios."""
    theirs = {r["proposers"]: r for r in syncobj}
    out: dict[str, Any] = {}
    for ours in raft:
        other = theirs.get(ours["proposers"])
        if other is None:
            continue
        rate, base = ours.get("commands_per_second"), other.get("commands_per_second")
        p50, base_p50 = ours.get("latency_p50_ms"), other.get("latency_p50_ms")
        out[str(ours["proposers"])] = {
            "commands_per_second_ratio": round(rate / base, 3) if rate and base else None,
            "latency_p50_ratio": round(p50 / base_p50, 3) if p50 and base_p50 else None,
        }
    return out


def _bench_error(exc: BaseException) -> BenchError | None:
    """The BenchError inside ``exc`` (Trio wraps task errors in exception groups), if any."""
    if isinstance(exc, BenchError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _bench_error(inner)
            if found is not None:
                return found
    return None


def _median_phase(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"proposers": runs[0]["proposers"]}
    for key, value in runs[0].items():
        if key in ("proposers", "errors"):
            continue
        values = [run[key] for run in runs if run[key] is not None]
        if isinstance(value, int | float) and values:
            merged[key] = round(statistics.median(values), 3)
    errors: dict[str, int] = {}
    for run in runs:
        for name, count in run["errors"].items():
            errors[name] = errors.get(name, 0) + count
    merged["errors"] = errors
    merged["runs"] = [{k: v for k, v in run.items() if k != "proposers"} for run in runs]
    return merged


async def _with_retries(what: str, attempt_once: Any) -> Any:
    """``await attempt_once()``, again after a BenchError, up to ATTEMPTS_MAX times."""
    for attempt in range(1, ATTEMPTS_MAX + 1):
        try:
            return await attempt_once()
        except (BenchError, resp_load.RespBenchError, BaseExceptionGroup) as exc:
            error = _bench_error(exc)
            if error is None:
                raise
            print(f"raft_throughput: {what} attempt {attempt} failed: {error}", file=sys.stderr)
            if attempt == ATTEMPTS_MAX:
                raise BenchError(f"{what}: {error}") from None
    raise AssertionError("unreachable")


def _targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_count = {r["proposers"]: r for r in results}
    targets: dict[str, Any] = {}
    if 64 in by_count:
        many = by_count[64]
        targets["64_proposers_commands_per_second_ge_10000"] = (
            many["commands_per_second"] >= TARGET_COMMANDS_PER_SECOND
        )
        targets["64_proposers_p99_lt_50ms"] = many["latency_p99_ms"] < TARGET_P99_MS
    if 1 in by_count:
        targets["1_proposer_p50_lt_2ms"] = by_count[1]["latency_p50_ms"] < TARGET_SINGLE_P50_MS
    return targets


def _median_tree(runs: list[Any], key_path: str = "") -> Any:
    """Median of every numeric leaf across same-shaped reports (``errors`` counts are summed
    instead); other leaves from the first report."""
    first = runs[0]
    if isinstance(first, dict) and key_path.endswith("errors"):
        totals: dict[str, Any] = {}
        for run in runs:
            for name, count in run.items():
                totals[name] = totals.get(name, 0) + count
        return totals
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in runs)]
        return {k: _median_tree([r[k] for r in runs], f"{key_path}/{k}") for k in keys}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    values = [r for r in runs if isinstance(r, int | float) and r == r]  # drop None and NaN
    return round(statistics.median(values), 3) if values else None


def _transport_label(mode: str) -> str:
    return "tcp loopback" if mode == "plain" else "tcp loopback, mutual TLS 1.3"


async def _main_async(args: argparse.Namespace, proposer_counts: list[int]) -> dict[str, Any]:
    modes: list[str] = args.transport
    per_mode: dict[str, list[list[dict[str, Any]]]] = {mode: [] for mode in modes}
    resp_runs: list[dict[str, Any]] = []
    syncobj_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="raft-bench-certs-", dir=args.dir) as certs:
        if "raft" in args.phases and "tls" in modes:
            ensure_certs(Path(certs), nodes=len(NODE_IDS))
        for run in range(args.runs):
            if "raft" in args.phases:
                for mode in modes:
                    tls_dir = certs if mode == "tls" else None

                    async def raft_once(tls_dir: str | None = tls_dir) -> list[dict[str, Any]]:
                        return await _run_once(args, proposer_counts, tls_dir)

                    per_mode[mode].append(
                        await _with_retries(f"run {run + 1} raft/{mode}", raft_once)
                    )
            if "pysyncobj" in args.phases:

                async def syncobj_once() -> dict[str, Any]:
                    return await _pysyncobj_once(args, proposer_counts)

                syncobj_runs.append(
                    await _with_retries(f"run {run + 1} pysyncobj", syncobj_once))
            if "resp" in args.phases:

                async def resp_once() -> dict[str, Any]:
                    return await resp_load.run_resp_phase(
                        seconds=args.seconds,
                        warmup_seconds=args.warmup_seconds,
                        clients=args.resp_clients,
                        requests=args.resp_requests,
                        parent_dir=args.dir,
                    )

                resp_runs.append(await _with_retries(f"run {run + 1} resp", resp_once))
    report: dict[str, Any] = {
        "bench": "raft_throughput",
        "nodes": len(NODE_IDS),
        "processes": "node 1 (leader) in the bench process; nodes 2, 3 child processes",
        "transport": _transport_label(modes[0]),
        "transport_modes": modes,
        "phases": args.phases,
        "fsync": not args.no_fsync,
        "storage_thread": not args.storage_inline,
        "command_bytes": args.command_bytes,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "runs": args.runs,
        "aggregate": "median of runs",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if "raft" in args.phases:
        transports: dict[str, Any] = {}
        for mode in modes:
            runs = per_mode[mode]
            results = [_median_phase([r[i] for r in runs]) for i in range(len(proposer_counts))]
            transports[mode] = {
                "transport": _transport_label(mode),
                "results": results,
                "targets_met": _targets(results),
            }
        report["results"] = transports[modes[0]]["results"]
        report["targets_met"] = transports[modes[0]]["targets_met"]
        report["transports"] = transports
        if "plain" in transports and "tls" in transports:
            cost: dict[str, float | None] = {}
            for plain, tls in zip(
                transports["plain"]["results"], transports["tls"]["results"], strict=True
            ):
                base = plain.get("commands_per_second")
                over = tls.get("commands_per_second")
                cost[str(plain["proposers"])] = (
                    round(over / base, 3) if base and over is not None else None
                )
            report["tls_cost"] = cost
            report["tls_cost_is"] = "tls commands_per_second / plain (median runs); 1.0 = free"
    if syncobj_runs:
        skipped = [r["skipped"] for r in syncobj_runs if "skipped" in r]
        if skipped:
            report["pysyncobj"] = {"skipped": skipped[0]}
        else:
            results = [_median_phase([r["results"][i] for r in syncobj_runs])
                       for i in range(len(proposer_counts))]
            report["pysyncobj"] = {
                "config": "3 processes, log in memory (no fsync), 0.5 ms tick and heartbeat",
                "results": results,
            }
            if "results" in report:
                report["versus_pysyncobj"] = {
                    "raftlib_fsync": not args.no_fsync,
                    "transport": _transport_label(modes[0]),
                    "by_proposers": _versus_pysyncobj(report["results"], results),
                }
    if resp_runs:
        resp = _median_tree(resp_runs)
        resp["leader"] = [run["leader"] for run in resp_runs]  # an id per run, not a figure
        resp["runs"] = [
            {
                tool: {op: run[tool][op] for op in ("set", "get")}
                for tool in ("builtin", "redis_benchmark")
                if tool in run and "set" in run[tool]
            }
            for run in resp_runs
        ]
        report["resp"] = resp
    return report


def _parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--proposers: {text!r} is not a list like 1,64") from None
    if not counts or any(c < 1 or c > 4096 for c in counts):
        raise argparse.ArgumentTypeError(f"--proposers: counts must be in 1..4096, got {text!r}")
    return counts


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 3600)")
    return value


def _parse_choices(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [item for item in items if item not in allowed]
        if not items or unknown or len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a comma list of distinct {', '.join(allowed)}"
            )
        return items

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=_positive_float, default=5.0, help="measured, per phase")
    parser.add_argument("--warmup-seconds", type=_positive_float, default=1.0)
    parser.add_argument("--proposers", type=_parse_counts, default=[1, 64], help="e.g. 1,64")
    parser.add_argument("--runs", type=int, choices=range(1, 21), default=1, metavar="1..20")
    parser.add_argument(
        "--command-bytes", type=int, choices=range(16, 65537), default=100, metavar="16..65536"
    )
    parser.add_argument("--no-fsync", action="store_true", help="unsafe baseline: no flushes")
    parser.add_argument("--dir", help="parent of the temporary data directories")
    parser.add_argument(
        "--storage-inline",
        action="store_true",
        help="NodeConfig(storage_thread=False) on every node: fsync on the Trio loop",
    )
    parser.add_argument(
        "--transport",
        type=_parse_choices(TRANSPORT_MODES),
        default=list(TRANSPORT_MODES),
        help="peer transports of the raft phase, e.g. plain,tls (default both)",
    )
    parser.add_argument(
        "--phases",
        type=_parse_choices(PHASES),
        default=list(PHASES),
        help="raft (proposers in process), resp (raftlib serve + RESP load), pysyncobj (the "
        "same load on PySyncObj); default all",
    )
    parser.add_argument(
        "--resp-clients", type=int, choices=range(1, 1001), default=50, metavar="1..1000"
    )
    parser.add_argument(
        "--resp-requests",
        type=int,
        choices=range(1, 1_000_001),
        default=20_000,
        metavar="1..1000000",
        help="redis-benchmark -n (per test)",
    )
    args = parser.parse_args()
    try:
        report = trio.run(_main_async, args, args.proposers)
    except BenchError as exc:
        print(f"raft_throughput: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
