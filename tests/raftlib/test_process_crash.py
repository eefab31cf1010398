"""Real processes, real files: SIGKILL nodes while they write; no acknowledged command is lost."""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raftlib.core.types import EntryKind
from raftlib.invariants import log_matching
from raftlib.storage.wal import WalStorage
from raftlib.supervisor import CUT_NOTE, Supervisor, free_ports

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "proc_node.py"
# Bounds of the whole test: kills, time between kills, time to converge at the end.
KILLS = 5
KILL_GAP_SECONDS = (0.4, 1.2)
CONVERGE_SECONDS = 3.0
# Snapshots every this many entries, so kills land before, during and after them.
SNAPSHOT_ENTRIES = 1500


def node_command(peers: str, root: Path) -> Callable[[int], list[str]]:
    def command(node_id: int) -> list[str]:
        return [sys.executable, str(NODE_SCRIPT), "--id", str(node_id), "--peers", peers,
                "--data", str(root / f"node-{node_id}"), "--stop-file", str(root / "stop"),
                "--snapshot-entries", str(SNAPSHOT_ENTRIES)]
    return command


def acknowledged(outs: list[Path]) -> list[bytes]:
    acks = []
    for out in outs:
        lines = out.read_bytes().split(b"\n")
        for line, after in itertools.pairwise(lines):
            # A line cut by SIGKILL is not an acknowledgement: the supervisor's start marker
            # after it says so (and the file's last line, with no newline, is cut too).
            if line.startswith(b"ACK ") and not after.endswith(CUT_NOTE):
                acks.append(line[4:])
    return acks


@pytest.mark.skipif(sys.platform != "linux", reason="needs POSIX signals and fsync semantics")
def test_sigkill_while_writing_loses_no_acknowledged_command(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", "7"))
    rng = random.Random(seed)
    ports = free_ports(3)
    peers = ",".join(f"{i + 1}=127.0.0.1:{port}" for i, port in enumerate(ports))
    ids = (1, 2, 3)
    # Each node's output (its ACK lines, and its log lines) goes to its log, across restarts.
    with Supervisor(tmp_path, ids, node_command(peers, tmp_path)) as cluster:
        for node_id in ids:
            cluster.start(node_id)
        time.sleep(1.5)  # elect a leader and start writing
        for _ in range(KILLS):
            victim = rng.choice(ids)
            cluster.kill(victim)
            time.sleep(rng.uniform(*KILL_GAP_SECONDS))
            cluster.start(victim)
            time.sleep(rng.uniform(*KILL_GAP_SECONDS))
        # "After recovery": stop writing, let every node catch up, then stop them all.
        (tmp_path / "stop").touch()
        time.sleep(CONVERGE_SECONDS)
        cluster.stop_all()
    acks = acknowledged([cluster.log_path(n) for n in ids])
    assert len(acks) > 20, f"seed={seed}: only {len(acks)} commands acknowledged"
    logs = {}
    holders: dict[int, set[bytes]] = {}
    snapshots_seen: list[int] = []
    for node_id in ids:
        storage = WalStorage(cluster.data_dir(node_id))
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
        logs[node_id] = entries
        holders[node_id] = {e.data for e in committed if e.kind is EntryKind.NORMAL} | snapshotted
    # Raft's promise: an acknowledged command is committed, so a majority holds it durably
    # (every node holds it only once all caught up, which a fixed wait on a loaded machine
    # cannot promise: node 1 once lacked 2,864 of 8,288 after it).
    held_by = {a: sum(a in have for have in holders.values()) for a in acks}
    lost = [a for a, count in held_by.items() if count < 2]
    assert not lost, (
        f"seed={seed}: {len(lost)} of {len(acks)} acknowledged commands are held by fewer "
        f"than 2 of 3 nodes' committed logs, e.g. {lost[:3]}"
    )
    problems = log_matching(logs)
    assert not problems, f"seed={seed}: {problems}"
    assert snapshots_seen, f"seed={seed}: no node took a snapshot (the test must cover them)"
