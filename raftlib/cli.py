"""``raftlib`` command line: run one node as its own process, or a local cluster.

    raftlib serve --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data DIR \
        [--client-port 6379 --client-peers 1=127.0.0.1:6379,2=127.0.0.1:6380,3=127.0.0.1:6381]
    raftlib cluster --nodes 3 --data DIR [--base-port 7001] [--client-base-port 6379]

``serve`` without ``--client-port`` runs a bare node (a counting state machine); with it, the
replicated KV service answers RESP2 (Redis protocol) on 127.0.0.1:PORT. ``--client-peers``
gives every node's client address so a follower can redirect writes to the leader
(``-MOVED 0 HOST:PORT``); without it a follower answers ``-TRYAGAIN``.

``cluster`` starts ``--nodes`` ``serve`` processes on loopback (data in DIR/node-N, logs in
DIR/node-N.log), prints how to reach them once every client port accepts connections, and stops
them all on Ctrl-C or SIGTERM.

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C), 2 for bad arguments or an unusable data
directory (one line on stderr saying which), 1 when the node stopped on an error (or, for
``cluster``, when a node process died on its own).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import trio

from raftlib.errors import ConfigError, RaftError, StorageError
from raftlib.node import NodeConfig, open_node

EXIT_USAGE = 2
EXIT_ERROR = 1


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """``1=127.0.0.1:7001,2=127.0.0.1:7002`` -> {1: ("127.0.0.1", 7001), ...}."""
    peers: dict[int, tuple[str, int]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        ident, sep, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host:
            raise UsageError(f"--peers: {item!r} is not ID=HOST:PORT")
        try:
            node_id, port_number = int(ident), int(port)
        except ValueError:
            raise UsageError(
                f"--peers: {item!r} is not ID=HOST:PORT with integer ID and PORT"
            ) from None
        if node_id < 1:
            raise UsageError(f"--peers: node id in {item!r} must be >= 1")
        if not 0 < port_number < 65536:
            raise UsageError(f"--peers: port in {item!r} must be 1..65535")
        if node_id in peers:
            raise UsageError(f"--peers: node id {node_id} appears twice")
        peers[node_id] = (host, port_number)
    if not peers:
        raise UsageError("--peers: no peers given")
    return peers


def _parser() -> _Parser:
    parser = _Parser(prog="raftlib", description="Run raftlib nodes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run one node as its own process")
    serve.add_argument("--id", type=int, required=True, help="this node's id (>= 1)")
    serve.add_argument(
        "--peers", required=True, help="every member: ID=HOST:PORT,... (this node included)"
    )
    serve.add_argument("--data", required=True, help="data directory (created if missing)")
    serve.add_argument("--tick-ms", type=float, default=25.0, help="tick length (ms)")
    serve.add_argument("--seed", type=int, default=None, help="seed of the election jitter")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument("--client-port", type=int, default=None,
                       help="serve the KV service (RESP2) on 127.0.0.1:PORT")
    serve.add_argument("--client-peers", default=None,
                       help="every member's client address ID=HOST:PORT,... (for redirects)")
    cluster = sub.add_parser("cluster", help="run a local cluster of KV nodes on loopback")
    cluster.add_argument("--nodes", type=int, default=3, help="number of nodes (1..9)")
    cluster.add_argument("--data", required=True, help="directory for every node's data")
    cluster.add_argument("--base-port", type=int, default=7001,
                         help="Raft port of node 1; node N uses BASE+N-1")
    cluster.add_argument("--client-base-port", type=int, default=6379,
                         help="RESP port of node 1; node N uses BASE+N-1")
    cluster.add_argument("--tick-ms", type=float, default=25.0, help="tick length (ms)")
    return parser


class CountingStateMachine:
    """The state machine ``serve`` runs until a service supplies its own: it counts commands
    and returns each command's position, which is enough to watch replication work."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> Any:
        self.applied += 1
        return self.applied


async def _serve(args: argparse.Namespace, peers: dict[int, tuple[str, int]]) -> None:
    from raftlib.storage.wal import WalStorage
    from raftlib.transport.tcp import TcpTransport

    config = NodeConfig(
        node_id=args.id,
        peers={nid: f"{host}:{port}" for nid, (host, port) in peers.items()},
        tick_seconds=args.tick_ms / 1000.0,
        seed=args.seed,
    )
    storage = WalStorage(Path(args.data))
    transport = TcpTransport(peers)
    log = logging.getLogger("raftlib.serve")
    if args.client_port is not None:
        from raftlib.service import serve_kv_until_signal

        client_peers = args.client_peers_parsed
        addresses = {nid: f"{host}:{port}" for nid, (host, port) in client_peers.items()}
        addresses.setdefault(args.id, f"127.0.0.1:{args.client_port}")
        await serve_kv_until_signal(config, storage=storage, transport=transport,
                                    client_port=args.client_port, client_addresses=addresses)
        return
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(
            config, storage=storage, transport=transport, state_machine=CountingStateMachine()
        ) as node:
            log.info("node %d serving on %s:%d", args.id, *peers[args.id])
            async for signum in signals:
                log.info("node %d stopping on %s", node.node_id, signal.Signals(signum).name)
                break


def _check_port(name: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"{name} must be 1..65535, got {port}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "cluster":
            return _cluster_main(args)
        peers = parse_peers(args.peers)
        args.client_peers_parsed = {}
        if args.client_port is not None:
            _check_port("--client-port", args.client_port)
            if args.client_peers:
                try:
                    args.client_peers_parsed = parse_peers(args.client_peers)
                except UsageError as exc:
                    raise UsageError(str(exc).replace("--peers", "--client-peers")) from None
        if args.id not in peers:
            raise UsageError(f"--id {args.id} is not among --peers ({sorted(peers)})")
        if not args.tick_ms > 0:
            raise UsageError("--tick-ms must be > 0")
    except UsageError as exc:
        print(f"raftlib: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        trio.run(_serve, args, peers)
    except (Exception, BaseExceptionGroup) as exc:
        leaf = _first_leaf(exc)
        print(f"raftlib: error: {leaf}", file=sys.stderr)
        if isinstance(leaf, ConfigError | StorageError | OSError):
            return EXIT_USAGE
        if isinstance(leaf, RaftError):
            return EXIT_ERROR
        raise
    return 0


def _cluster_main(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        raise UsageError(f"--nodes must be 1..9, got {args.nodes}")
    last = args.nodes - 1
    _check_port("--base-port", args.base_port)
    _check_port("--base-port (last node)", args.base_port + last)
    _check_port("--client-base-port", args.client_base_port)
    _check_port("--client-base-port (last node)", args.client_base_port + last)
    raft_ports = set(range(args.base_port, args.base_port + args.nodes))
    if raft_ports & set(range(args.client_base_port, args.client_base_port + args.nodes)):
        raise UsageError("--base-port and --client-base-port ranges overlap")
    if not args.tick_ms > 0:
        raise UsageError("--tick-ms must be > 0")
    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data {data} exists and is not a directory")
    return run_cluster(
        nodes=args.nodes,
        data=data,
        base_port=args.base_port,
        client_base_port=args.client_base_port,
        tick_ms=args.tick_ms,
    )


# How long ``cluster`` waits for every client port to accept connections, and for its
# children to exit after SIGTERM before it SIGKILLs them.
CLUSTER_READY_SECONDS_MAX = 20.0
CLUSTER_STOP_SECONDS_MAX = 10.0


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_cluster(
    *, nodes: int, data: Path, base_port: int, client_base_port: int, tick_ms: float
) -> int:
    """Run ``nodes`` ``serve`` processes until SIGINT/SIGTERM; see the module docstring."""
    import subprocess
    import time

    ids = range(1, nodes + 1)
    peers = ",".join(f"{i}=127.0.0.1:{base_port + i - 1}" for i in ids)
    clients = ",".join(f"{i}=127.0.0.1:{client_base_port + i - 1}" for i in ids)
    data.mkdir(parents=True, exist_ok=True)
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    status = 0
    try:
        for i in ids:
            with (data / f"node-{i}.log").open("ab") as out:
                procs[i] = subprocess.Popen(
                    [sys.executable, "-m", "raftlib.cli", "serve", "--id", str(i),
                     "--peers", peers, "--data", str(data / f"node-{i}"),
                     "--client-port", str(client_base_port + i - 1),
                     "--client-peers", clients, "--tick-ms", str(tick_ms)],
                    stdout=out, stderr=subprocess.STDOUT,
                    # Own process group: a terminal's Ctrl-C reaches only this parent, which
                    # then stops the children in order.
                    start_new_session=True,
                )
        deadline = time.monotonic() + CLUSTER_READY_SECONDS_MAX
        waiting = set(ids)
        while waiting and not stopping and time.monotonic() < deadline:
            waiting = {i for i in waiting if not _port_open(client_base_port + i - 1)}
            if any(p.poll() is not None for p in procs.values()):
                break
            time.sleep(0.1)
        if waiting and not stopping:
            print(f"raftlib: error: nodes {sorted(waiting)} did not start; see "
                  f"{data}/node-N.log", file=sys.stderr)
            return EXIT_ERROR
        for i in ids:
            print(f"node {i}: raft 127.0.0.1:{base_port + i - 1}  "
                  f"client 127.0.0.1:{client_base_port + i - 1}  log {data}/node-{i}.log")
        print(f"ready: try `redis-cli -c -p {client_base_port} SET greeting hello` "
              "(-c follows MOVED redirects to the leader); Ctrl-C stops the cluster", flush=True)
        while not stopping:
            dead = [i for i, p in procs.items() if p.poll() is not None]
            if dead:
                print(f"raftlib: error: node {dead[0]} exited with status "
                      f"{procs[dead[0]].returncode}; stopping the cluster", file=sys.stderr)
                status = EXIT_ERROR
                break
            time.sleep(0.1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CLUSTER_STOP_SECONDS_MAX
        for p in procs.values():
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("cluster stopped", flush=True)
    return status


def _first_leaf(exc: BaseException) -> BaseException:
    # Trio wraps task errors in exception groups; the person at the terminal wants the cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
