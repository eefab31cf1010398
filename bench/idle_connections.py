"""Idle clients cannot starve a node: hold N idle client connections on the leader's RESP port
and measure a normal client's latency and the node's memory before and after. Prints JSON.

    python bench/idle_connections.py                  # 3 TLS nodes, 1,000 idle connections
    python bench/idle_connections.py --plain --idle 2000 --ops 500

Runs three ``raftlib serve`` processes on 127.0.0.1 (TLS with certificates made by
``raftlib.certs`` unless ``--plain``), finds the leader, then:

1. baseline: ``--ops`` SET+GET pairs from one client, latency percentiles; leader RSS;
2. opens ``--idle`` connections to the leader (TLS handshake done, one PING each, then
   silent), and repeats the measurement while they are held; leader RSS again;
3. opens ``--silent`` raw TCP connections that never start TLS and reports how many the leader
   has closed after its ``--handshake-timeout`` (they must not hold a slot forever);
4. closes the idle connections and reports RSS once more.

The bench process raises its own soft ``ulimit -n`` to the hard limit if needed (the nodes
inherit it); if that is still too small for ``--idle`` plus headroom it stops with a message.
Figures: ``rss_bytes_per_idle_connection`` is (RSS held - RSS before) / idle.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raftlib.certs import ensure_certs
from raftlib.client import KvClient, TcpConnector
from raftlib.transport.tls import client_context

NODES = 3
FD_HEADROOM = 200
CONNECT_BATCH = 50  # connections opened concurrently (the accept backlog is finite)


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def start_nodes(tmp: Path, args: argparse.Namespace) -> tuple[dict[int, subprocess.Popen[bytes]],
                                                               dict[int, int]]:
    ports = free_ports(2 * NODES)
    raft = dict(zip(range(1, NODES + 1), ports[:NODES], strict=True))
    client = dict(zip(range(1, NODES + 1), ports[NODES:], strict=True))
    peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in raft.items())
    clients = ",".join(f"{n}=127.0.0.1:{p}" for n, p in client.items())
    security = ["--insecure"] if args.plain else ["--tls-dir", str(tmp / "certs")]
    procs = {}
    for n in raft:
        with (tmp / f"node-{n}.log").open("ab") as out:
            procs[n] = subprocess.Popen(
                [sys.executable, "-m", "raftlib.cli", "serve", "--id", str(n), "--peers", peers,
                 "--data", str(tmp / f"node-{n}"), "--client-port", str(client[n]),
                 "--client-peers", clients, "--handshake-timeout", str(args.handshake_timeout),
                 "--max-clients", str(args.idle + args.silent + 100), "--log-level", "warning",
                 *security],
                stdout=out, stderr=subprocess.STDOUT)
    return procs, client


async def find_leader(client_ports: dict[int, int], ctx: ssl.SSLContext | None) -> int:
    probe = KvClient(["127.0.0.1:1"], connector=TcpConnector(ssl_context=ctx),
                     request_timeout_seconds=0.5)
    with trio.fail_after(30):
        while True:
            for n, port in client_ports.items():
                try:
                    info = await probe.info(f"127.0.0.1:{port}")
                except Exception:
                    continue
                if info.get("role") == "leader":
                    await probe.aclose()
                    return n
            await trio.sleep(0.1)


async def latencies(address: str, ctx: ssl.SSLContext | None, ops: int) -> dict[str, float]:
    client = KvClient([address], connector=TcpConnector(ssl_context=ctx),
                      request_timeout_seconds=2.0)
    samples = []
    try:
        for i in range(ops):
            started = time.perf_counter()
            await client.set(b"bench", b"%d" % i)
            await client.get(b"bench")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await client.aclose()
    samples.sort()
    return {
        "pairs": ops,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 3),
        "max_ms": round(samples[-1], 3),
    }


async def open_idle(port: int, ctx: ssl.SSLContext | None, count: int) -> list[trio.abc.Stream]:
    streams: list[trio.abc.Stream] = []

    async def one() -> None:
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        stream: trio.abc.Stream = raw
        if ctx is not None:
            stream = trio.SSLStream(raw, ctx, server_hostname="127.0.0.1")
        await stream.send_all(b"PING\r\n")
        reply = await stream.receive_some(64)
        if not reply.startswith(b"+PONG"):
            raise RuntimeError(f"unexpected reply {reply!r} (connection refused by the limit?)")
        streams.append(stream)

    for start in range(0, count, CONNECT_BATCH):
        async with trio.open_nursery() as nursery:
            for _ in range(min(CONNECT_BATCH, count - start)):
                nursery.start_soon(one)
    return streams


async def silent_connections(port: int, count: int, wait_seconds: float) -> dict[str, float]:
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(count)]
    await trio.sleep(wait_seconds)
    closed = 0
    for stream in streams:
        with trio.move_on_after(0.05):
            try:
                if await stream.receive_some(1) == b"":
                    closed += 1
            except trio.BrokenResourceError:
                closed += 1
        await trio.aclose_forcefully(stream)
    return {"opened": count, "closed_by_server": closed, "waited_seconds": wait_seconds}


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    if not args.plain:
        ensure_certs(tmp / "certs", nodes=NODES)
    ctx = None if args.plain else client_context(tmp / "certs" / "ca.pem")
    procs, client_ports = start_nodes(tmp, args)
    try:
        leader = await find_leader(client_ports, ctx)
        pid, port = procs[leader].pid, client_ports[leader]
        address = f"127.0.0.1:{port}"
        await latencies(address, ctx, 20)  # warm-up
        before = {"rss_bytes": rss_bytes(pid), "latency": await latencies(address, ctx, args.ops)}
        started = time.perf_counter()
        idle = await open_idle(port, ctx, args.idle)
        opened_seconds = time.perf_counter() - started
        held = {"rss_bytes": rss_bytes(pid), "latency": await latencies(address, ctx, args.ops)}
        silent = (await silent_connections(port, args.silent, args.handshake_timeout + 1.0)
                  if args.silent and not args.plain else None)
        for stream in idle:
            await trio.aclose_forcefully(stream)
        await trio.sleep(1.0)
        after_close = {"rss_bytes": rss_bytes(pid)}
        for n, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"node {n} died; see {tmp}/node-{n}.log")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "bench": "idle_connections",
        "tls": not args.plain,
        "idle_connections": args.idle,
        "open_seconds": round(opened_seconds, 2),
        "leader_before": before,
        "leader_with_idle_held": held,
        "leader_after_close": after_close,
        "rss_growth_bytes": held["rss_bytes"] - before["rss_bytes"],  # type: ignore[operator]
        "rss_bytes_per_idle_connection": round(
            (held["rss_bytes"] - before["rss_bytes"]) / max(1, args.idle)),  # type: ignore[operator]
        "p99_ratio_held_vs_before": round(
            held["latency"]["p99_ms"] / before["latency"]["p99_ms"], 2),  # type: ignore[index]
        "silent_unhandshaken": silent,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000, help="idle connections to hold")
    parser.add_argument("--ops", type=int, default=300, help="SET+GET pairs per measurement")
    parser.add_argument("--silent", type=int, default=200,
                        help="raw connections that never handshake (TLS only)")
    parser.add_argument("--handshake-timeout", type=float, default=2.0)
    parser.add_argument("--plain", action="store_true", help="plain TCP instead of TLS")
    args = parser.parse_args()
    needed = args.idle + args.silent + FD_HEADROOM
    limit = raise_fd_limit(needed)
    if limit < needed:
        print(f"idle_connections: ulimit -n is {limit}, need {needed}; raise it or lower --idle",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="idle-bench-") as tmp:
        result = trio.run(run, args, Path(tmp))
    result["fd_soft_limit"] = limit
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
