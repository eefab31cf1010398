"""``raftlib`` command line: run one node as its own process.

    raftlib serve --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data DIR

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C), 2 for bad arguments or an unusable data
directory (one line on stderr saying which), 1 when the node stopped on an error.
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
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(
            config, storage=storage, transport=transport, state_machine=CountingStateMachine()
        ) as node:
            log.info("node %d serving on %s:%d", args.id, *peers[args.id])
            async for signum in signals:
                log.info("node %d stopping on %s", node.node_id, signal.Signals(signum).name)
                break


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        peers = parse_peers(args.peers)
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


def _first_leaf(exc: BaseException) -> BaseException:
    # Trio wraps task errors in exception groups; the person at the terminal wants the cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
