"""One follower process for ``bench/raft_throughput.py``: what ``raftlib serve`` runs (WalStorage,
TcpTransport, a counting state machine), plus the two knobs the bench needs and the CLI lacks.

    python3 bench/raft_bench_node.py --id 2 --peers 1=127.0.0.1:7001,... --data DIR
        [--no-fsync] [--election-ticks-min 40] [--tls-dir CERTS]

- ``--no-fsync`` opens ``WalStorage(fsync=False)`` (the unsafe baseline).
- ``--tls-dir`` runs the peer transport over mutual TLS with the certificates of that directory
  (the ``raftlib certs init`` layout: ca.pem, node-ID.pem, node-ID.key), as ``raftlib serve
  --tls-dir`` does; without it the transport is plain TCP (``--insecure``).
- ``--election-ticks-min`` lengthens this node's election timeout so the bench's own in-process
  node wins the first election (the bench feeds commands to it).
- On SIGUSR1 it prints one JSON line of counters (storage and node statistics) to stdout, so the
  bench can difference them around a measured window. SIGTERM/SIGINT stop it cleanly.

It stops when its stdin reaches end of file, which happens when the bench exits or dies, so a
killed bench never leaves nodes behind. (Not PR_SET_PDEATHSIG: that fires when the parent's
spawning THREAD exits, and Trio spawns children from worker threads that come and go.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import attrs
import trio

from raftlib.certs import NodeFiles
from raftlib.node import NodeConfig, open_node
from raftlib.storage.wal import WalStorage
from raftlib.transport.tcp import TcpTransport
from raftlib.transport.tls import MutualTls


class CountingStateMachine:
    """What ``raftlib serve`` applies by default: counts commands, returns the count."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> int:
        self.applied += 1
        return self.applied


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """``1=127.0.0.1:7001,2=...`` (the bench builds it, so errors are bugs: let them raise)."""
    peers = {}
    for item in text.split(","):
        ident, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        peers[int(ident)] = (host, int(port))
    return peers


async def _wait_parent_gone() -> None:
    """Return once stdin (a pipe from the bench that it never writes to) is closed."""
    stream = trio.lowlevel.FdStream(os.dup(0))
    async with stream:
        while await stream.receive_some(4096):
            pass


async def _serve(args: argparse.Namespace) -> None:
    peers = parse_peers(args.peers)
    config = NodeConfig(
        node_id=args.id,
        peers={nid: f"{host}:{port}" for nid, (host, port) in peers.items()},
        tick_seconds=args.tick_ms / 1000.0,
        storage_thread=not args.storage_inline,
    ).with_core(
        election_timeout_ticks_min=args.election_ticks_min,
        election_timeout_ticks_max=args.election_ticks_min * 2,
    )
    storage = WalStorage(args.data, fsync=not args.no_fsync)
    if args.tls_dir:
        security = MutualTls(args.id, NodeFiles.in_directory(Path(args.tls_dir), args.id))
        transport = TcpTransport(peers, security=security)
    else:
        transport = TcpTransport(peers)
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    with trio.open_signal_receiver(*sigs) as signals:
        async with (
            open_node(
                config, storage=storage, transport=transport, state_machine=CountingStateMachine()
            ) as node,
            trio.open_nursery() as nursery,
        ):

            async def stop_with_parent() -> None:
                await _wait_parent_gone()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_with_parent)
            print(json.dumps({"ready": args.id}), flush=True)
            async for signum in signals:
                if signum != signal.SIGUSR1:
                    break
                report: dict[str, Any] = {
                    "time": time.monotonic(),
                    "storage": attrs.asdict(storage.statistics()),
                    "node": node.statistics(),
                }
                print(json.dumps(report), flush=True)
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--tick-ms", type=float, default=25.0)
    parser.add_argument("--election-ticks-min", type=int, default=10)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--storage-inline", action="store_true")
    parser.add_argument("--tls-dir", default=None, help="mutual TLS with these certificates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="node %(name)s: %(message)s")
    trio.run(_serve, args)


if __name__ == "__main__":
    main()
