"""Real processes, real files: SIGKILL nodes while they write; no acknowledged command is lost."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftlib.core.types import EntryKind
from raftlib.invariants import log_matching
from raftlib.storage.wal import WalStorage

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "proc_node.py"
# Bounds of the whole test: kills, time between kills, time to converge at the end.
KILLS = 5
KILL_GAP_SECONDS = (0.4, 1.2)
CONVERGE_SECONDS = 3.0
# Snapshots every this many entries, so kills land before, during and after them.
SNAPSHOT_ENTRIES = 1500


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Proc:
    def __init__(self, node_id: int, peers: str, data: Path, out: Path) -> None:
        self.node_id, self.peers, self.data, self.out = node_id, peers, data, out
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The node's log lines go beside its output: a failure names what the node said.
        with self.out.open("ab") as out, self.out.with_suffix(".err").open("ab") as err:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    str(NODE_SCRIPT),
                    "--id",
                    str(self.node_id),
                    "--peers",
                    self.peers,
                    "--data",
                    str(self.data),
                    "--stop-file",
                    str(self.data.parent / "stop"),
                    "--snapshot-entries",
                    str(SNAPSHOT_ENTRIES),
                ],
                stdout=out,
                stderr=err,
            )

    def kill(self) -> None:
        if self.popen is not None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
            self.popen = None

    def stop(self) -> None:
        if self.popen is not None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            self.popen = None


def acknowledged(outs: list[Path]) -> list[bytes]:
    acks = []
    for out in outs:
        for line in out.read_bytes().split(b"\n"):
            # A line cut by SIGKILL has no newline after it and is not an acknowledgement.
            if line.startswith(b"ACK "):
                acks.append(line[4:])
    return acks


@pytest.mark.skipif(sys.platform != "linux", reason="needs POSIX signals and fsync semantics")
def test_sigkill_while_writing_loses_no_acknowledged_command(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", "7"))
    rng = random.Random(seed)
    ports = free_ports(3)
    peers = ",".join(f"{i + 1}=127.0.0.1:{port}" for i, port in enumerate(ports))
    procs = [Proc(i, peers, tmp_path / f"data{i}", tmp_path / f"out{i}.txt") for i in (1, 2, 3)]
    try:
        for p in procs:
            p.start()
        time.sleep(1.5)  # elect a leader and start writing
        for _ in range(KILLS):
            victim = rng.choice(procs)
            victim.kill()
            time.sleep(rng.uniform(*KILL_GAP_SECONDS))
            victim.start()
            time.sleep(rng.uniform(*KILL_GAP_SECONDS))
        # "After recovery": stop writing, let every node catch up, then stop them all.
        (tmp_path / "stop").touch()
        time.sleep(CONVERGE_SECONDS)
    finally:
        for p in procs:
            p.stop()
    acks = acknowledged([p.out for p in procs])
    assert len(acks) > 20, f"seed={seed}: only {len(acks)} commands acknowledged"
    logs = {}
    snapshots_seen: list[int] = []
    for p in procs:
        storage = WalStorage(p.data)
        try:
            recovered = storage.load()
            reader = storage.open_snapshot()
            snapshotted: set[bytes] = set()
            if reader is not None:
                payload = b"".join(iter(lambda r=reader: r.read(1 << 20), b""))  # type: ignore[misc]
                reader.close()
                snapshotted = set(payload.split(b"\n")) if payload else set()
                snapshots_seen.append(reader.meta.index)
        finally:
            storage.close()
        entries = recovered.entries
        committed = [e for e in entries if e.index <= recovered.hard_state.commit]
        logs[p.node_id] = entries
        have = {e.data for e in committed if e.kind is EntryKind.NORMAL} | snapshotted
        missing = [a for a in acks if a not in have]
        assert not missing, (
            f"seed={seed}: node {p.node_id} lacks {len(missing)} of {len(acks)} acknowledged "
            f"commands in its committed log, e.g. {missing[:3]}"
        )
    problems = log_matching(logs)
    assert not problems, f"seed={seed}: {problems}"
    assert snapshots_seen, f"seed={seed}: no node took a snapshot (the test must cover them)"
