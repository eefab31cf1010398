"""Test helper: run `raftlib cluster` (3 node processes on loopback) and stop it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from raftlib.supervisor import consecutive_free_ports

NODES = 3
READY_SECONDS = 30.0
STOP_SECONDS = 30.0


@attrs.define
class ClusterProcess:
    data: Path
    client_base: int
    ready_line: str = ""
    # Set once the cluster has stopped (after the ``with`` block).
    returncode: int | None = None
    output: str = ""


@contextmanager
def raftlib_cluster(tmp_path: Path, *options: str) -> Iterator[ClusterProcess]:
    """Start `raftlib cluster` with ``options``, wait for its "ready" line, and SIGTERM it on
    the way out; the caller asserts on ``returncode`` and ``output`` after the block."""
    raft_base = consecutive_free_ports(NODES)
    client_base = consecutive_free_ports(NODES, avoid=range(raft_base, raft_base + NODES))
    cluster = ClusterProcess(tmp_path / "cluster", client_base)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftlib.cli", "cluster", "--nodes", str(NODES), *options,
         "--data", str(cluster.data), "--base-port", str(raft_base),
         "--client-base-port", str(client_base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            lines.append(line)
            if line.startswith("ready") or not line:
                break
        assert lines[-1].startswith("ready"), "".join(lines)
        cluster.ready_line = lines[-1]
        yield cluster
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_SECONDS)
        cluster.returncode = proc.returncode
        cluster.output = out.decode()
