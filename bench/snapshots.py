"""Snapshots and log compaction, measured on live ``raftlib serve`` processes; one JSON object.

    python3 bench/snapshots.py [--soak 600] [--restart] [--catch-up] [--p99] [--quick]

With no measurement flag, all four run (at the sizes of issue 10's acceptance line);
``--quick`` runs them at tiny sizes (seconds in total: a smoke test, figures meaningless).
Needs Debian's ``redis-tools`` (``redis-benchmark``); without it prints ``{"skipped": ...}``.

- ``--soak SECONDS``: a 3-node cluster (default snapshot thresholds) under sustained
  ``redis-benchmark -t set -c 50 -r KEYSPACE`` load; every ``--sample-seconds`` the leader's
  RSS (/proc/PID/status VmRSS), every node's data directory size and the leader's applied
  index are sampled. After the warm-up (the first ``WARMUP_FRACTION`` of the run) a
  least-squares slope of RSS and data-directory bytes against commands applied is reported in
  MiB per 100k commands (issue 10 wants <= 1: flat).
- ``--restart``: a node with ``--restart-commands`` applied commands (built with pipelined
  ``redis-benchmark -P 64``) is stopped cleanly and started again; time from process start
  until INFO answers with applied_index == commit_index >= the applied index before the stop
  (target <= 2 s); median of ``--restart-runs``, with the snapshot index and log tail it
  restarted from.
- ``--catch-up``: a 3-node cluster holding ``--state-mb`` MB (sequential keys of
  ``--value-bytes`` values); one follower's disk dies, and it is replaced as the README says
  ("Replacing a node"): removed (``RAFT.REMOVE``), and a new node under a new id, started with
  ``--join`` and an empty data directory, added (``RAFT.ADD``: a learner, promoted once caught
  up). Time from the new node's start until its applied index reaches the leader's commit
  index, with the snapshot bytes the leader sent and MB/s. (Under its old id the wiped node
  would be refused by its peers: it lost the votes and entries it promised.)
- ``--p99``: SET p99 (``-c 50``) on a 3-node cluster holding ``--p99-keys`` keys, with
  snapshots off (``--snapshot-entries 0 --snapshot-bytes 0``) and with a snapshot threshold
  that fires during the run (counted from the nodes' "snapshot at index ... taken" lines);
  the cluster is restarted with each configuration before each run, runs interleaved, medians
  of ``--p99-runs``; the ratio target is <= 2.

Everything listens on 127.0.0.1; every load is bounded in requests and in seconds; every
process started here is stopped on exit, error or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MIB = 1 << 20
COMMANDS_PER_SLOPE = 100_000  # the slope's unit: MiB per this many commands applied
WARMUP_FRACTION = 0.2  # the soak's first part, left out of the fit
SAMPLES_REPORTED_MAX = 60  # raw soak samples kept in the JSON (evenly thinned)
SOAK_SECONDS_DEFAULT = 600.0
SOAK_CLIENTS = 50
SOAK_KEYSPACE = 100_000
SOAK_VALUE_BYTES = 16
SOAK_REQUESTS_PER_RUN_MAX = 50_000_000  # one redis-benchmark run's bound; the soak restarts it
RESTART_PIPELINE = 64
RESTART_KEYSPACE = 100_000
FILL_PIPELINE = 64  # SETs in flight on the filler's one connection
FILL_SECONDS_MAX = 1800.0
LOAD_SECONDS_MAX = 1800.0  # one redis-benchmark run (the soak's runs: the soak's length)
START_SECONDS_MAX = 60.0  # a node answering INFO after its process starts
READY_SECONDS_MAX = 120.0  # a cluster agreeing on a leader with every node applied
CATCH_UP_SECONDS_MAX = 600.0
STOP_SECONDS_MAX = 20.0
INFO_SECONDS_MAX = 2.0
ADMIN_SECONDS_MAX = 10.0  # a RAFT.REMOVE: one configuration change committed
POLL_SECONDS = 0.02
RESP_REPLY_BYTES_MAX = 1 << 20  # an INFO or SET reply is far smaller

SNAPSHOT_TAKEN = re.compile(rb"node \d+: snapshot at index (\d+) taken")
SNAPSHOT_SENT = re.compile(rb"sending the snapshot at index (\d+) \((\d+) bytes\) to node (\d+)")
SNAPSHOT_INSTALLED = re.compile(rb"installed the leader's snapshot at index (\d+)")
LOG_STAMP = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")  # logging's asctime
SNAPSHOT_FILE = re.compile(r"snapshot-(\d+)\.snap$")
SEGMENT_FILE = re.compile(r"wal-(\d+)\.log$")


class BenchError(Exception):
    """A measurement could not be made; the message is the one-line reason."""


# --- processes ---------------------------------------------------------------------------------

_RUNNING: list[subprocess.Popen[bytes]] = []  # every child still to stop on exit


def spawn(argv: Sequence[str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as log:
        # Own session: a Ctrl-C at the terminal reaches only this script, which stops them.
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    _RUNNING.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc in _RUNNING:
        _RUNNING.remove(proc)


def stop_all() -> None:
    for proc in list(_RUNNING):
        stop(proc)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every ``finally``: children get stopped


def free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- RESP --------------------------------------------------------------------------------------

def resp_encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def info_fields(port: int) -> dict[str, str]:
    """INFO of the node on ``port`` as a dict (raises OSError or BenchError)."""
    with socket.create_connection((HOST, port), timeout=INFO_SECONDS_MAX) as sock:
        sock.sendall(resp_encode(b"INFO"))
        data = b""
        while len(data) < RESP_REPLY_BYTES_MAX:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$"):
                raise BenchError(f"INFO on port {port} answered {head[:100]!r}")
            if len(body) >= int(head[1:]) + 2:
                break
    text = data.decode(errors="replace")
    return {k: v for k, sep, v in (line.partition(":") for line in text.splitlines()) if sep}


def admin_call(port: int, *args: bytes, seconds_max: float) -> str:
    """One RESP command (an operator's ``RAFT.*``) at ``port``; its one-line reply."""
    with socket.create_connection((HOST, port), timeout=seconds_max) as sock:
        sock.sendall(resp_encode(*args))
        with sock.makefile("rb") as reader:
            line = reader.readline(RESP_REPLY_BYTES_MAX)
    if not line.startswith(b"+"):
        raise BenchError(f"{b' '.join(args).decode()} on port {port} answered {line[:200]!r}")
    return line[1:].strip().decode()


def fill_sequential(port: int, keys: int, value_bytes: int, seconds_max: float) -> float:
    """SET key:000000000000 .. key:KEYS-1 (redis-benchmark's key names) to ``value_bytes``
    values on one pipelined connection; returns seconds. Exact state size, each key once."""
    value = (os.urandom(16).hex().encode() * (value_bytes // 32 + 1))[:value_bytes]
    started = time.monotonic()
    deadline = started + seconds_max
    with socket.create_connection((HOST, port), timeout=READY_SECONDS_MAX) as sock:
        reader = sock.makefile("rb")
        for first in range(0, keys, FILL_PIPELINE):
            if time.monotonic() > deadline:
                raise BenchError(f"filling {keys} keys took over {seconds_max:g}s")
            batch = range(first, min(keys, first + FILL_PIPELINE))
            sock.sendall(b"".join(resp_encode(b"SET", b"key:%012d" % k, value) for k in batch))
            for _ in batch:
                line = reader.readline(RESP_REPLY_BYTES_MAX)
                if not line.startswith(b"+OK"):
                    raise BenchError(f"SET on port {port} answered {line[:200]!r}")
    return time.monotonic() - started


# --- nodes and clusters ------------------------------------------------------------------------

class Node:
    """One ``raftlib serve`` KV process: its ports, data directory and log file."""

    def __init__(self, node_id: int, raft_port: int, client_port: int, base: Path,
                 join: bool = False) -> None:
        self.node_id = node_id
        self.join = join  # started with --join: a new member, added by RAFT.ADD
        self.raft_port = raft_port
        self.client_port = client_port
        self.data = base / f"node-{node_id}"
        self.log = base / f"node-{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"node {self.node_id} is not running")
        return self.proc.pid

    def info(self) -> dict[str, str]:
        return info_fields(self.client_port)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"no VmRSS in /proc/{self.pid}/status")

    def data_bytes(self) -> int:
        total = 0
        for path in self.data.rglob("*"):
            with contextlib.suppress(OSError):  # a segment deleted while we walk
                if path.is_file():
                    total += path.stat().st_size
        return total

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> bytes:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read()

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"node {self.node_id} exited with {self.proc.returncode}; "
                             f"see {self.log}")


def on_disk(data: Path) -> dict[str, Any]:
    """The snapshot index and WAL segments in a (stopped) node's data directory."""
    snaps = [int(m.group(1)) for p in data.iterdir() if (m := SNAPSHOT_FILE.search(p.name))]
    segments = sorted(int(m.group(1)) for p in data.iterdir()
                      if (m := SEGMENT_FILE.search(p.name)))
    return {
        "snapshot_index": max(snaps, default=0),
        "snapshot_bytes": sum(p.stat().st_size for p in data.glob("snapshot-*.snap")),
        "segments": len(segments),
        "first_segment_index": segments[0] if segments else None,
        "wal_bytes": sum(p.stat().st_size for p in data.glob("wal-*.log")),
    }


class Cluster:
    """``nodes`` ``raftlib serve --client-port`` processes on loopback (plain TCP)."""

    def __init__(self, base: Path, nodes: int, snapshot_args: Sequence[str]) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self._base = base
        ports = free_ports(2 * nodes)
        self.nodes = {i: Node(i, ports[i - 1], ports[nodes + i - 1], base)
                      for i in range(1, nodes + 1)}
        self.snapshot_args = list(snapshot_args)
        self._peers = ",".join(f"{n.node_id}={HOST}:{n.raft_port}" for n in self.nodes.values())
        self._clients = ",".join(f"{n.node_id}={HOST}:{n.client_port}"
                                 for n in self.nodes.values())

    def add_node(self) -> Node:
        """A new node (the next id, new ports, an empty data directory) that starts with
        ``--join``: it waits to be added (``RAFT.ADD``)."""
        node_id = max(self.nodes) + 1
        raft_port, client_port = free_ports(2)
        node = Node(node_id, raft_port, client_port, self._base, join=True)
        self.nodes[node_id] = node
        return node

    def start(self, node_id: int) -> float:
        """Start a node; returns the monotonic time just before its process was created."""
        node = self.nodes[node_id]
        if node.proc is not None and node.proc.poll() is None:
            raise BenchError(f"node {node_id} is already running")
        peers, clients = self._peers, self._clients
        if node.join:  # the members' addresses and its own (README, "Replacing a node")
            peers += f",{node_id}={HOST}:{node.raft_port}"
            clients += f",{node_id}={HOST}:{node.client_port}"
        argv = [sys.executable, "-m", "raftlib.cli", "serve", "--id", str(node_id),
                "--peers", peers, "--data", str(node.data), "--insecure",
                "--client-port", str(node.client_port), "--client-peers", clients,
                *(["--join"] if node.join else []), *self.snapshot_args]
        started = time.monotonic()
        node.proc = spawn(argv, node.log)
        return started

    def stop(self, node_id: int) -> None:
        proc = self.nodes[node_id].proc
        if proc is not None:
            stop(proc)
            if proc.returncode not in (0, -signal.SIGTERM):
                raise BenchError(f"node {node_id} exited with {proc.returncode} on SIGTERM; "
                                 f"see {self.nodes[node_id].log}")
        self.nodes[node_id].proc = None

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id)

    def stop_all(self) -> None:
        for node_id in self.nodes:
            self.stop(node_id)

    def infos(self) -> dict[int, dict[str, str]]:
        found = {}
        for node in self.nodes.values():
            node.check_alive()
            with contextlib.suppress(OSError, BenchError, ValueError):
                found[node.node_id] = node.info()
        return found

    def wait_ready(self, seconds_max: float = READY_SECONDS_MAX) -> Node:
        """Wait until every node answers, agrees on one leader and has applied the leader's
        commit index; returns the leader."""
        deadline = time.monotonic() + seconds_max
        last = "no node answered"
        while time.monotonic() < deadline:
            infos = self.infos()
            leaders = [i for i, f in infos.items() if f.get("role") == "leader"]
            if len(infos) == len(self.nodes) and len(leaders) == 1:
                commit = int(infos[leaders[0]]["commit_index"])
                behind = {i: f["applied_index"] for i, f in infos.items()
                          if f.get("leader_id") != str(leaders[0])
                          or int(f["applied_index"]) < commit}
                if not behind:
                    return self.nodes[leaders[0]]
                last = f"leader {leaders[0]} at commit {commit}; behind or disagreeing: {behind}"
            else:
                last = f"answers from {sorted(infos)}, leaders {leaders}"
            time.sleep(0.1)
        raise BenchError(f"cluster not ready within {seconds_max:g}s ({last})")


def snapshot_flags(entries: int | None, size: int | None, trailing: int | None,
                   chunk: int | None) -> list[str]:
    flags: list[str] = []
    for flag, value in (("--snapshot-entries", entries), ("--snapshot-bytes", size),
                        ("--snapshot-trailing", trailing), ("--snapshot-chunk-bytes", chunk)):
        if value is not None:
            flags += [flag, str(value)]
    return flags


# --- redis-benchmark ---------------------------------------------------------------------------

def benchmark_argv(port: int, requests: int, *, clients: int, keyspace: int, value_bytes: int,
                   pipeline: int = 1) -> list[str]:
    return ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", "set", "-n", str(requests),
            "-c", str(clients), "-r", str(keyspace), "-d", str(value_bytes), "-P", str(pipeline),
            "--csv"]


def parse_csv(text: str) -> dict[str, float]:
    """redis-benchmark 7's --csv: a header row, then per test rps and latency figures (ms)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise BenchError(f"no figures in redis-benchmark output {text[:200]!r}")
    row = rows[-1]
    try:
        return {k: float(v) for k, v in row.items() if k != "test"}
    except (TypeError, ValueError):
        raise BenchError(f"unexpected redis-benchmark CSV row {row!r}") from None


def run_benchmark(argv: list[str], seconds_max: float) -> dict[str, float]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=seconds_max, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)} ran over {seconds_max:g}s") from None
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed: {done.stderr.strip()[:300]}")
    return parse_csv(done.stdout)


# --- measurements ------------------------------------------------------------------------------

def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys against xs (None when xs do not vary)."""
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def per_100k_mib(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    s = slope(xs, ys)
    return None if s is None else round(s * COMMANDS_PER_SLOPE / MIB, 3)


def thin(samples: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    if len(samples) <= keep:
        return samples
    step = (len(samples) - 1) / (keep - 1)
    return [samples[round(i * step)] for i in range(keep)]


def log_matches(text: bytes, pattern: re.Pattern[bytes]) -> list[tuple[float, re.Match[bytes]]]:
    """(POSIX time of the line's stamp, match) for each log line ``pattern`` matches."""
    found = []
    for line in text.splitlines():
        match = pattern.search(line)
        stamp = LOG_STAMP.match(line)
        if match and stamp:
            at = datetime.datetime.strptime(stamp.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f")
            found.append((at.timestamp(), match))
    return found


def count_lines(cluster: Cluster, offsets: dict[int, int], pattern: re.Pattern[bytes]) -> int:
    return sum(len(pattern.findall(n.log_since(offsets[i]))) for i, n in cluster.nodes.items())


def measure_soak(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster(base / "soak", 3, args.snapshot_flags)
    cluster.start_all()
    try:
        leader = cluster.wait_ready()
        samples: list[dict[str, Any]] = []
        argv = benchmark_argv(leader.client_port, SOAK_REQUESTS_PER_RUN_MAX,
                              clients=SOAK_CLIENTS, keyspace=args.soak_keyspace,
                              value_bytes=SOAK_VALUE_BYTES)
        started = time.monotonic()
        deadline = started + args.soak
        load: subprocess.Popen[bytes] | None = None
        load_runs = 0
        next_sample = started
        try:
            while time.monotonic() < deadline:
                if load is None or load.poll() is not None:
                    if load is not None and load.returncode != 0:
                        raise BenchError(f"redis-benchmark exited with {load.returncode}; "
                                         f"see {base / 'soak' / 'load.log'}")
                    load = spawn(argv, base / "soak" / "load.log")
                    load_runs += 1
                if time.monotonic() >= next_sample:
                    samples.append(soak_sample(cluster, time.monotonic() - started))
                    next_sample += args.sample_seconds
                time.sleep(min(0.2, max(0.0, min(next_sample, deadline) - time.monotonic())))
            samples.append(soak_sample(cluster, time.monotonic() - started))
        finally:
            if load is not None:
                stop(load)
        warm = [s for s in samples if s["seconds"] >= WARMUP_FRACTION * args.soak]
        applied = [float(s["applied_index"]) for s in warm]
        data_max = [float(max(s["data_bytes"].values())) for s in warm]
        leaders = {s["leader"] for s in samples}
        offsets = dict.fromkeys(cluster.nodes, 0)
        result = {
            "seconds": args.soak,
            "command": " ".join(argv),
            "commands_applied": samples[-1]["applied_index"] - samples[0]["applied_index"],
            "samples_total": len(samples),
            "samples_fitted": len(warm),
            "warmup_fraction": WARMUP_FRACTION,
            "leaders_seen": sorted(leaders),
            "rss_mib_per_100k_commands": per_100k_mib(
                applied, [float(s["leader_rss_bytes"]) for s in warm])
            if len(leaders) == 1 else None,
            "data_dir_mib_per_100k_commands": per_100k_mib(applied, data_max),
            "data_dir_mib_per_100k_commands_by_node": {
                str(i): per_100k_mib(applied, [float(s["data_bytes"][i]) for s in warm])
                for i in cluster.nodes},
            "target_mib_per_100k_commands_max": 1.0,
            "snapshots_taken": count_lines(cluster, offsets, SNAPSHOT_TAKEN),
            "samples": thin(samples, SAMPLES_REPORTED_MAX),
        }
        if len(leaders) != 1:
            result["note"] = "the leader changed during the soak: no RSS slope (different pids)"
        return result
    finally:
        cluster.stop_all()


def soak_sample(cluster: Cluster, seconds: float) -> dict[str, Any]:
    infos = cluster.infos()
    leaders = [i for i, f in infos.items() if f.get("role") == "leader"]
    if len(leaders) != 1:
        raise BenchError(f"soak: {len(leaders)} leaders at {seconds:.1f}s (answers {infos})")
    leader = cluster.nodes[leaders[0]]
    return {
        "seconds": round(seconds, 2),
        "leader": leader.node_id,
        "applied_index": int(infos[leader.node_id]["applied_index"]),
        # The keyspace must be full before the warm-up ends, or the fit measures the state
        # growing rather than the log.
        "keys": int(infos[leader.node_id].get("keys", "-1")),
        "leader_rss_bytes": leader.rss_bytes(),
        "data_bytes": {i: n.data_bytes() for i, n in cluster.nodes.items()},
    }


def wait_serving(node: Node, index_min: int, started: float) -> dict[str, float]:
    """Seconds from ``started`` until the node answered INFO at all, and until it answered
    with applied_index == commit_index >= index_min."""
    deadline = started + START_SECONDS_MAX
    first_answer: float | None = None
    last = "no answer"
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            fields = node.info()
        except (OSError, BenchError, ValueError) as exc:
            last = str(exc)
        else:
            now = time.monotonic()
            first_answer = first_answer if first_answer is not None else now - started
            applied, commit = int(fields["applied_index"]), int(fields["commit_index"])
            if applied == commit >= index_min:
                return {"seconds": round(now - started, 3),
                        "first_answer_seconds": round(first_answer, 3)}
            last = f"applied {applied}, commit {commit}, want >= {index_min}"
        time.sleep(POLL_SECONDS)
    raise BenchError(f"node {node.node_id} not serving within {START_SECONDS_MAX:g}s ({last})")


def measure_restart(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster(base / "restart", args.restart_nodes, args.snapshot_flags)
    cluster.start_all()
    try:
        leader = cluster.wait_ready()
        argv = benchmark_argv(leader.client_port, args.restart_commands, clients=50,
                              keyspace=RESTART_KEYSPACE, value_bytes=SOAK_VALUE_BYTES,
                              pipeline=RESTART_PIPELINE)
        fill = run_benchmark(argv, LOAD_SECONDS_MAX)
        leader = cluster.wait_ready()
        applied = int(leader.info()["applied_index"])
        if applied < args.restart_commands:
            raise BenchError(f"restart: applied index {applied} < {args.restart_commands} "
                             "commands sent")
        runs: list[dict[str, Any]] = []
        for _ in range(args.restart_runs):
            node_id = leader.node_id
            applied = int(leader.info()["applied_index"])  # each restart adds a no-op or so
            cluster.stop(node_id)
            disk = on_disk(cluster.nodes[node_id].data)
            started = cluster.start(node_id)
            timing = wait_serving(cluster.nodes[node_id], applied, started)
            runs.append({**timing, **disk, "applied_index": applied,
                         "log_tail_entries": applied - disk["snapshot_index"]})
            leader = cluster.wait_ready()
        return {
            "nodes": args.restart_nodes,
            "commands": args.restart_commands,
            "fill_command": " ".join(argv),
            "fill_rps": fill.get("rps"),
            "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
            "target_seconds_max": 2.0,
            "runs": runs,
        }
    finally:
        cluster.stop_all()


def measure_catch_up(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    keys = max(1, round(args.state_mb * 1_000_000 / args.value_bytes))
    cluster = Cluster(base / "catch-up", 3, args.snapshot_flags)
    cluster.start_all()
    try:
        leader = cluster.wait_ready()
        fill_seconds = fill_sequential(leader.client_port, keys, args.value_bytes,
                                       FILL_SECONDS_MAX)
        leader = cluster.wait_ready()
        lost = next(n for n in cluster.nodes.values() if n is not leader)
        cluster.stop(lost.node_id)
        shutil.rmtree(lost.data)  # its disk died
        admin_call(leader.client_port, b"RAFT.REMOVE", b"%d" % lost.node_id,
                   seconds_max=ADMIN_SECONDS_MAX)
        victim = cluster.add_node()  # its replacement, under a new id
        commit = int(leader.info()["commit_index"])
        offsets = {i: n.log_size() for i, n in cluster.nodes.items()}
        started = cluster.start(victim.node_id)
        deadline = started + args.catch_up_seconds_max
        # RAFT.ADD answers once the learner caught up and was promoted.
        admin_call(leader.client_port, b"RAFT.ADD", b"%d" % victim.node_id,
                   f"{HOST}:{victim.raft_port}".encode(),
                   f"{HOST}:{victim.client_port}".encode(),
                   seconds_max=args.catch_up_seconds_max)
        last = "no answer"
        while True:
            victim.check_alive()
            leader.check_alive()
            with contextlib.suppress(OSError, BenchError, ValueError):
                applied = int(victim.info()["applied_index"])
                last = f"applied {applied} of {commit}"
                if applied >= commit:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"new node {victim.node_id} did not catch up within "
                                 f"{args.catch_up_seconds_max:g}s ({last}); see {victim.log}")
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started
        sent = [(at, m) for at, m in log_matches(leader.log_since(offsets[leader.node_id]),
                                                 SNAPSHOT_SENT)
                if int(m.group(3)) == victim.node_id]
        installed = log_matches(victim.log_since(offsets[victim.node_id]), SNAPSHOT_INSTALLED)
        snapshot_bytes = int(sent[-1][1].group(2)) if sent else 0
        # From the leader's last "sending" line to the follower's "installed" line (both
        # stamped by this host's clock): the transfer alone, without the process start.
        transfer = installed[-1][0] - sent[-1][0] if sent and installed else None
        result = {
            "keys": keys,
            "value_bytes": args.value_bytes,
            "state_mb": round(keys * args.value_bytes / 1e6, 1),
            "fill_seconds": round(fill_seconds, 1),
            "leader": leader.node_id,
            "lost_node": lost.node_id,
            "new_node": victim.node_id,
            "leader_commit_index": commit,
            "seconds": round(seconds, 3),
            "snapshots_sent": len(sent),
            "snapshot_bytes": snapshot_bytes,
            "installed_snapshot_indexes": [int(m.group(1)) for _, m in installed],
            "mb_per_second": round(snapshot_bytes / 1e6 / seconds, 2) if seconds > 0 else None,
            # The snapshot may cover only part of the state: the entries after it (up to
            # --snapshot-entries of them) travel as AppendEntries.
            "state_mb_per_second": round(keys * args.value_bytes / 1e6 / seconds, 2)
            if seconds > 0 else None,
            "transfer_seconds": None if transfer is None else round(transfer, 3),
            "transfer_mb_per_second": round(snapshot_bytes / 1e6 / transfer, 2)
            if transfer else None,
            "note": "the lost follower is replaced under a new id (README, Replacing a "
                    "node): seconds run from the new node's start, RAFT.ADD included",
        }
        if not installed:
            raise BenchError(f"new node {victim.node_id} caught up without installing a "
                             f"snapshot (no \"installed the leader's snapshot\" line in "
                             f"{victim.log}): {json.dumps(result)}")
        return result
    finally:
        cluster.stop_all()


def measure_p99(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    on_entries = args.p99_snapshot_entries or max(1, args.p99_requests // 2)
    configs = {
        "snapshots_off": ["--snapshot-entries", "0", "--snapshot-bytes", "0"],
        "snapshot_during": ["--snapshot-entries", str(on_entries), "--snapshot-bytes", "0"],
    }
    cluster = Cluster(base / "p99", 3, configs["snapshot_during"])
    cluster.start_all()
    try:
        leader = cluster.wait_ready()
        fill_seconds = fill_sequential(leader.client_port, args.p99_keys, SOAK_VALUE_BYTES,
                                       FILL_SECONDS_MAX)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for _ in range(args.p99_runs):
            for name, flags in configs.items():
                cluster.stop_all()
                cluster.snapshot_args = flags
                cluster.start_all()
                leader = cluster.wait_ready()
                offsets = {i: n.log_size() for i, n in cluster.nodes.items()}
                argv = benchmark_argv(leader.client_port, args.p99_requests, clients=50,
                                      keyspace=args.p99_keys, value_bytes=SOAK_VALUE_BYTES)
                figures = run_benchmark(argv, LOAD_SECONDS_MAX)
                runs[name].append({
                    "p99_ms": figures.get("p99_latency_ms"),
                    "p50_ms": figures.get("p50_latency_ms"),
                    "rps": figures.get("rps"),
                    "snapshots_taken": count_lines(cluster, offsets, SNAPSHOT_TAKEN),
                })
        p99 = {name: round(statistics.median(float(r["p99_ms"]) for r in rs), 3)
               for name, rs in runs.items()}
        missed = sum(1 for r in runs["snapshot_during"] if r["snapshots_taken"] == 0)
        result = {
            "keys": args.p99_keys,
            "requests_per_run": args.p99_requests,
            "runs_per_config": args.p99_runs,
            "fill_seconds": round(fill_seconds, 1),
            "snapshot_entries_during": on_entries,
            "command": " ".join(argv),
            "p99_ms_snapshots_off": p99["snapshots_off"],
            "p99_ms_snapshot_during": p99["snapshot_during"],
            "ratio": round(p99["snapshot_during"] / p99["snapshots_off"], 2)
            if p99["snapshots_off"] > 0 else None,
            "target_ratio_max": 2.0,
            "runs": runs,
        }
        if missed:
            result["warning"] = f"{missed} 'snapshot_during' run(s) took no snapshot"
        return result
    finally:
        cluster.stop_all()


# --- command line ------------------------------------------------------------------------------

QUICK = {
    "soak": 6.0, "sample_seconds": 1.0, "restart_commands": 5000, "restart_runs": 1,
    "state_mb": 1.0, "p99_keys": 5000, "p99_requests": 3000, "p99_runs": 1,
    "snapshot_entries": 500, "snapshot_trailing": 100, "snapshot_chunk_bytes": 64 << 10,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--soak", type=float, nargs="?", const=SOAK_SECONDS_DEFAULT, default=None,
                   metavar="SECONDS",
                   help="run the soak for SECONDS (default 600)")
    p.add_argument("--restart", action="store_true", help="measure restart time")
    p.add_argument("--catch-up", action="store_true",
                   help="measure a lost follower's replacement catching up")
    p.add_argument("--p99", action="store_true", help="measure SET p99 with and without a snapshot")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    p.add_argument("--soak-keyspace", type=int, default=SOAK_KEYSPACE,
                   help="soak: distinct keys (the state must stop growing before warm-up ends)")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="soak sampling period")
    p.add_argument("--restart-commands", type=int, default=1_000_000)
    p.add_argument("--restart-nodes", type=int, default=1, choices=(1, 3))
    p.add_argument("--restart-runs", type=int, default=3, help="restarts (median reported)")
    p.add_argument("--state-mb", type=float, default=100.0, help="catch-up: state size (MB)")
    p.add_argument("--value-bytes", type=int, default=1000, help="catch-up: bytes per value")
    p.add_argument("--catch-up-seconds-max", type=float, default=CATCH_UP_SECONDS_MAX)
    p.add_argument("--p99-keys", type=int, default=1_000_000, help="p99: keys in the state")
    p.add_argument("--p99-requests", type=int, default=200_000, help="p99: SETs per run")
    p.add_argument("--p99-runs", type=int, default=3, help="p99: runs per configuration")
    p.add_argument("--p99-snapshot-entries", type=int, default=0,
                   help="p99: snapshot threshold of the 'during' runs (0: half the requests)")
    group = p.add_argument_group("snapshot thresholds of soak, restart and catch-up "
                                 "(default: raftlib serve's)")
    for flag in ("entries", "bytes", "trailing", "chunk-bytes"):
        group.add_argument(f"--snapshot-{flag}", type=int, default=None)
    p.add_argument("--tmp", default=None, help="parent of the data directories (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep data directories and logs")
    args = p.parse_args(argv)
    if args.quick:
        if args.soak == SOAK_SECONDS_DEFAULT:
            args.soak = QUICK["soak"]
        for name, value in QUICK.items():
            if name != "soak" and getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if not (args.soak is not None or args.restart or args.catch_up or args.p99):
        args.soak = QUICK["soak"] if args.quick else SOAK_SECONDS_DEFAULT
        args.restart = args.catch_up = args.p99 = True
    positive = {"--soak": args.soak if args.soak is not None else 1.0,
                "--sample-seconds": args.sample_seconds, "--soak-keyspace": args.soak_keyspace,
                "--restart-commands": args.restart_commands, "--restart-runs": args.restart_runs,
                "--state-mb": args.state_mb, "--value-bytes": args.value_bytes,
                "--catch-up-seconds-max": args.catch_up_seconds_max,
                "--p99-keys": args.p99_keys, "--p99-requests": args.p99_requests,
                "--p99-runs": args.p99_runs}
    for flag, value in positive.items():
        if not value > 0:
            p.error(f"{flag} must be > 0, got {value}")
    if args.p99_snapshot_entries < 0:
        p.error(f"--p99-snapshot-entries must be >= 0, got {args.p99_snapshot_entries}")
    args.snapshot_flags = snapshot_flags(args.snapshot_entries, args.snapshot_bytes,
                                         args.snapshot_trailing, args.snapshot_chunk_bytes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print(json.dumps({"skipped": "not installed: redis-benchmark (Debian package "
                          "redis-tools)"}))
        return 0
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    report: dict[str, Any] = {
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "snapshot_flags": args.snapshot_flags,
    }
    measurements = [("soak", args.soak is not None, measure_soak),
                    ("restart", args.restart, measure_restart),
                    ("catch_up", args.catch_up, measure_catch_up),
                    ("p99", args.p99, measure_p99)]
    tmp = tempfile.mkdtemp(prefix="raftlib-snapshots-", dir=args.tmp)
    status = 0
    try:
        for name, wanted, measure in measurements:
            if not wanted:
                continue
            try:
                report[name] = measure(Path(tmp), args)
            except BenchError as exc:
                report[name] = {"error": str(exc)}
                status = 1
            finally:
                stop_all()
    finally:
        stop_all()
        signal.signal(signal.SIGTERM, previous_sigterm)
        if args.keep or status:
            report["data"] = tmp
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
