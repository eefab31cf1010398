"""RESP-port throughput and latency of a 3-node ``raftlib serve`` cluster (used by
``bench/raft_throughput.py --phases resp``; also runs alone).

    python3 bench/resp_load.py [--seconds 5] [--clients 50] [--requests 20000]

Setup: three ``python -m raftlib.cli serve --client-port P --insecure`` child processes on
127.0.0.1 (WalStorage with fsync, the default of ``serve``), each with its own temp data dir;
the bench waits until one node's ``INFO`` says ``role:leader`` and every node names it, then
loads that node's client port:

- ``redis-benchmark`` (when on PATH): ``-c 50 -n 20000 -t set,get --csv``; its own figures are
  reported (requests per second, and p50/p99 when its CSV has those columns: 7.x has).
- ``builtin`` (always): 50 concurrent Trio connections, each sending one request and waiting for
  its reply (no pipelining, as redis-benchmark's default ``-P 1``). First SET for
  ``warmup + seconds`` (distinct keys), then GET of those keys for as long; only requests that
  finish inside the measured window count. Latency is send-to-reply per request. Error replies
  (``-TRYAGAIN``, ``-MOVED`` ...) are counted by their first word, not timed.

GET is a linearizable ReadIndex read (no log entry, no fsync); SET is a committed, fsynced log
entry. The load generator shares the 2 cores with the three servers, so its CPU is reported.
Children are killed on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio

from raftlib.resp.protocol import ErrorReply, Reply, RespParser, encode_command

NODE_IDS = (1, 2, 3)
HOST = "127.0.0.1"
TICK_MS = 25
LEADER_TIMEOUT_SECONDS = 20.0
INFO_TIMEOUT_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 10.0
REDIS_BENCHMARK_TIMEOUT_SECONDS = 120.0
CHILD_STOP_TIMEOUT_SECONDS = 3.0
VALUE_BYTES = 3  # redis-benchmark's default -d
RECEIVE_BYTES_MAX = 65536


class RespBenchError(Exception):
    pass


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


class _Conn:
    """One RESP connection: one request in flight at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = RespParser()

    @classmethod
    async def open(cls, port: int) -> _Conn:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def call(self, args: Sequence[bytes]) -> Reply:
        await self.stream.send_all(encode_command(args))
        while True:
            got = self.parser.next_value()
            if got is not None:
                return got[0]
            data = await self.stream.receive_some(RECEIVE_BYTES_MAX)
            if not data:
                raise RespBenchError("server closed the connection")
            self.parser.feed(data)


async def _info(port: int) -> dict[str, str]:
    with trio.fail_after(INFO_TIMEOUT_SECONDS):
        conn = await _Conn.open(port)
        async with conn.stream:
            reply = await conn.call([b"INFO"])
    if not isinstance(reply, bytes):
        raise RespBenchError(f"INFO on port {port} answered {reply!r}")
    fields = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


async def wait_leader(client_ports: dict[int, int]) -> int:
    """The leader's node id, once every node's INFO names the same leader."""
    last = "no answer yet"
    with trio.move_on_after(LEADER_TIMEOUT_SECONDS):
        while True:
            infos: dict[int, dict[str, str]] = {}
            for nid, port in client_ports.items():
                try:
                    infos[nid] = await _info(port)
                except (OSError, trio.TooSlowError, RespBenchError, ValueError) as exc:
                    last = f"node {nid}: {type(exc).__name__} {exc}"
            leaders = [nid for nid, info in infos.items() if info.get("role") == "leader"]
            if len(infos) == len(client_ports) and len(leaders) == 1:
                named = {info.get("leader_id") for info in infos.values()}
                if named == {str(leaders[0])}:
                    return leaders[0]
                last = f"nodes name leaders {sorted(str(n) for n in named)}"
            await trio.sleep(0.2)
    raise RespBenchError(f"no agreed leader in {LEADER_TIMEOUT_SECONDS}s ({last})")


async def _stop(processes: Sequence[trio.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    with trio.move_on_after(CHILD_STOP_TIMEOUT_SECONDS) as scope:
        scope.shield = True
        for process in processes:
            await process.wait()
    for process in processes:
        if process.returncode is None:
            process.kill()
    with trio.CancelScope(shield=True):
        for process in processes:
            await process.wait()


def _log_tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-3:]) or "(empty log)"


def _parse_redis_csv(text: str) -> dict[str, dict[str, float | None]]:
    """redis-benchmark ``--csv``: a header row (7.x) or none (older: test,rps only)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    header = ["test", "rps"]
    if rows and rows[0] and rows[0][0].lower() == "test":
        header = [h.lower() for h in rows[0]]
        rows = rows[1:]
    found: dict[str, dict[str, float | None]] = {}
    for row in rows:
        fields = dict(zip(header, row, strict=False))
        name = fields.get("test", "").split()[0].lower() if fields.get("test") else ""
        if name not in ("set", "get"):
            continue

        def number(key: str, fields: dict[str, str] = fields) -> float | None:
            try:
                return round(float(fields[key]), 3)
            except (KeyError, ValueError):
                return None

        found[name] = {
            "requests_per_second": number("rps"),
            "p50_ms": number("p50_latency_ms"),
            "p99_ms": number("p99_latency_ms"),
            "avg_ms": number("avg_latency_ms"),
            "max_ms": number("max_latency_ms"),
        }
    return found


async def run_redis_benchmark(port: int, clients: int, requests: int) -> dict[str, Any] | None:
    """redis-benchmark's figures, or None when it is not installed."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    argv = [
        tool,
        "-h",
        HOST,
        "-p",
        str(port),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-t",
        "set,get",
        "--csv",
    ]
    try:
        with trio.fail_after(REDIS_BENCHMARK_TIMEOUT_SECONDS):
            done = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        return {
            "tool": "redis-benchmark",
            "error": f"timed out after {REDIS_BENCHMARK_TIMEOUT_SECONDS}s",
            "command": " ".join(argv),
        }
    parsed = _parse_redis_csv(done.stdout.decode(errors="replace"))
    result: dict[str, Any] = {"tool": "redis-benchmark", "command": " ".join(argv)}
    if done.returncode != 0 or set(parsed) != {"set", "get"}:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-2:]
        result["error"] = f"exit {done.returncode}: {' | '.join(tail)}"
    result.update(parsed)
    return result


async def _load(
    port: int,
    clients: int,
    warmup_seconds: float,
    seconds: float,
    command: str,
    keys_written: list[int],
) -> dict[str, Any]:
    """``clients`` connections loop on ``command`` (SET or GET) for warmup + seconds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    window_start = window_end = float("inf")
    clock = time.perf_counter

    async def worker(index: int, conn: _Conn) -> None:
        sequence = 0
        value = b"x" * VALUE_BYTES
        written = max(keys_written[index], 1)
        while True:
            sequence += 1
            if command == "SET":
                args = [b"SET", b"key:%d:%d" % (index, sequence), value]
            else:
                args = [b"GET", b"key:%d:%d" % (index, (sequence - 1) % written + 1)]
            started = clock()
            with trio.fail_after(REQUEST_TIMEOUT_SECONDS):
                reply = await conn.call(args)
            finished = clock()
            if isinstance(reply, ErrorReply):
                word = reply.code or "ERR"
                errors[word] = errors.get(word, 0) + 1
                await trio.sleep(0.01)
                continue
            if command == "SET":
                keys_written[index] = sequence
            if window_start <= finished <= window_end:
                latencies.append(finished - started)

    conns = [await _Conn.open(port) for _ in range(clients)]
    cpu_before = _cpu_seconds_self()
    try:
        async with trio.open_nursery() as nursery:
            for index, conn in enumerate(conns):
                nursery.start_soon(worker, index, conn)
            await trio.sleep(warmup_seconds)
            window_start = clock()
            cpu_before = _cpu_seconds_self()
            await trio.sleep(seconds)
            window_end = clock()
            nursery.cancel_scope.cancel()
        cpu = _cpu_seconds_self() - cpu_before
    finally:
        for conn in conns:
            await conn.stream.aclose()
    elapsed = window_end - window_start
    latencies.sort()
    return {
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 3) if latencies else None,
        "max_ms": round(latencies[-1] * 1e3, 3) if latencies else None,
        "generator_cpu_percent": round(100 * cpu / elapsed, 1),
        "errors": errors,
    }


def _cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_builtin(
    port: int, clients: int, warmup_seconds: float, seconds: float
) -> dict[str, Any]:
    keys_written = [0] * clients
    result: dict[str, Any] = {"tool": "builtin", "clients": clients}
    result["set"] = await _load(port, clients, warmup_seconds, seconds, "SET", keys_written)
    result["get"] = await _load(port, clients, warmup_seconds, seconds, "GET", keys_written)
    return result


async def run_resp_phase(
    *,
    seconds: float,
    warmup_seconds: float,
    clients: int,
    requests: int,
    parent_dir: str | None = None,
) -> dict[str, Any]:
    """Start a cluster, load its leader with redis-benchmark (if any) then builtin; stop it."""
    with tempfile.TemporaryDirectory(prefix="raft-resp-bench-", dir=parent_dir) as tmp:
        ports = free_ports(2 * len(NODE_IDS))
        peer_ports = dict(zip(NODE_IDS, ports[: len(NODE_IDS)], strict=True))
        client_ports = dict(zip(NODE_IDS, ports[len(NODE_IDS) :], strict=True))
        peers = ",".join(f"{nid}={HOST}:{port}" for nid, port in peer_ports.items())
        client_peers = ",".join(f"{nid}={HOST}:{port}" for nid, port in client_ports.items())
        processes: list[trio.Process] = []
        logs: dict[int, str] = {}
        try:
            for nid in NODE_IDS:
                logs[nid] = os.path.join(tmp, f"node{nid}.log")
                argv = [
                    sys.executable,
                    "-m",
                    "raftlib.cli",
                    "serve",
                    "--id",
                    str(nid),
                    "--peers",
                    peers,
                    "--data",
                    os.path.join(tmp, f"node{nid}"),
                    "--tick-ms",
                    str(TICK_MS),
                    "--client-port",
                    str(client_ports[nid]),
                    "--client-peers",
                    client_peers,
                    "--insecure",
                    "--log-level",
                    "warning",
                ]
                with open(logs[nid], "wb") as log_file:
                    processes.append(
                        await trio.lowlevel.open_process(
                            argv,
                            stdout=log_file,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        )
                    )
            try:
                leader = await wait_leader(client_ports)
            except RespBenchError as exc:
                tails = "; ".join(f"node {nid}: {_log_tail(p)}" for nid, p in logs.items())
                raise RespBenchError(f"{exc}; logs: {tails}") from None
            port = client_ports[leader]
            report: dict[str, Any] = {
                "cluster": "3 x `python -m raftlib.cli serve --insecure` (fsync on), loopback",
                "leader": leader,
                "clients": clients,
                "value_bytes": VALUE_BYTES,
            }
            external = await run_redis_benchmark(port, clients, requests)
            builtin = await run_builtin(port, clients, warmup_seconds, seconds)
            for process, nid in zip(processes, NODE_IDS, strict=True):
                if process.poll() is not None:
                    raise RespBenchError(
                        f"node {nid} exited during the load: {_log_tail(logs[nid])}"
                    )
            report["builtin"] = builtin
            if external is not None:
                report["redis_benchmark"] = external
            # The headline: redis-benchmark's figures where it ran cleanly, else builtin's.
            headline = external if external is not None and "error" not in external else builtin
            report["tool"] = headline["tool"]
            report["set"] = headline["set"]
            report["get"] = headline["get"]
            return report
        finally:
            await _stop(processes)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 3600)")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=_positive_float, default=5.0)
    parser.add_argument("--warmup-seconds", type=_positive_float, default=1.0)
    parser.add_argument(
        "--clients", type=int, choices=range(1, 1001), default=50, metavar="1..1000"
    )
    parser.add_argument(
        "--requests",
        type=int,
        choices=range(1, 10_000_001),
        default=20_000,
        metavar="1..10000000",
        help="redis-benchmark -n",
    )
    parser.add_argument("--dir", help="parent of the temporary data directories")
    args = parser.parse_args()
    try:
        report = trio.run(
            lambda: run_resp_phase(
                seconds=args.seconds,
                warmup_seconds=args.warmup_seconds,
                clients=args.clients,
                requests=args.requests,
                parent_dir=args.dir,
            )
        )
    except RespBenchError as exc:
        print(f"resp_load: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
