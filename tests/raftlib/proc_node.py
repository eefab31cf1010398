"""A node process for crash tests: runs one raftlib node on TCP with a WAL and, while it leads,
proposes commands and prints ``ACK <command>`` (flushed) for each one the cluster committed.

    python proc_node.py --id 1 --peers 1=127.0.0.1:7001,... --data DIR --writers 4

The parent kills it with SIGKILL at random moments and later checks that every acknowledged
command survived: in the log, or in the snapshot (``--snapshot-entries``: the state machine's
snapshot lists every command it applied). Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

import trio

from raftlib import NotLeader, ProposalDropped, ProposalQueueFull, Role
from raftlib.cli import parse_peers
from raftlib.node import Node, NodeConfig, open_node
from raftlib.snapshots import SnapshotPolicy
from raftlib.storage.wal import WalStorage
from raftlib.transport.tcp import TcpTransport

# Each writer pauses this long when the node does not lead, so followers idle cheaply.
IDLE_SECONDS = 0.02


class ListingStateMachine:
    """Applies commands by remembering them; its snapshot is their list, one per line."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def apply(self, command: bytes) -> int:
        self.commands.append(command)
        return len(self.commands)

    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"\n".join(self.commands))

    def restore(self, file: BinaryIO) -> None:
        data = file.read()
        self.commands = data.split(b"\n") if data else []


async def writer(node: Node, writer_id: int, boot: str, stop_file: Path) -> None:
    sequence = 0
    while not stop_file.exists():
        if node.status().role is not Role.LEADER:
            await trio.sleep(IDLE_SECONDS)
            continue
        command = f"n{node.node_id}-{boot}-w{writer_id}-{sequence}"
        sequence += 1
        try:
            await node.propose(command.encode())
        except (NotLeader, ProposalDropped, ProposalQueueFull):
            await trio.sleep(IDLE_SECONDS)
            continue
        sys.stdout.write(f"ACK {command}\n")
        sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    peers = parse_peers(args.peers)
    config = NodeConfig(
        node_id=args.id,
        peers={nid: f"{host}:{port}" for nid, (host, port) in peers.items()},
        tick_seconds=0.02,
        snapshot=SnapshotPolicy(entries=args.snapshot_entries, trailing_entries=100),
    )
    boot = f"p{os.getpid()}"  # commands stay unique across restarts of this node
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with (
            open_node(
                config,
                storage=WalStorage(Path(args.data)),
                transport=TcpTransport(peers),
                state_machine=ListingStateMachine(),
            ) as node,
            trio.open_nursery() as nursery,
        ):
            for writer_id in range(args.writers):
                nursery.start_soon(writer, node, writer_id, boot, Path(args.stop_file))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--snapshot-entries", type=int, default=0)
    # Writers stop proposing once this file exists, so the cluster can converge before the
    # parent inspects the logs.
    parser.add_argument("--stop-file", required=True)
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
