"""What a live run has started, on disk, so a later run can clean up after one that was killed.

A harness killed with SIGKILL runs no ``finally``: its node processes (and, as root, its
namespaces) stay. Namespaces carry the ``rh-`` prefix and are found by name; processes are
found through this ledger: one JSON file per running harness, ``STATE_DIR/run-<pid>.json``,
naming the harness and every node process it started, each as (pid, start time) so a pid
reused by an unrelated process is never signalled. A new run removes the files of harnesses
that no longer exist, after killing the nodes they name; a running harness's file is left
alone, so concurrent runs (a campaign's workers) never touch each other's nodes.

The file also names the run's phase (``starting``, ``workload``, ``stopping``): tests wait on it
to interrupt a run whose cluster is up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

# Node processes one ledger file records at most (restarts included); beyond it the oldest
# (long dead) entries are dropped.
LEDGER_PIDS_MAX = 10_000


def state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/raft-harness-live")
    return Path(tempfile.gettempdir()) / f"raft-harness-live-{os.getuid()}"


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command: state is field 3 of stat(5), starttime field 22.
    return None if fields[0] == "Z" else int(fields[19])


def _same_process(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


class Ledger:
    """This harness's file: created by ``open``, updated as nodes start, removed by ``close``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir()
        self.path = self.directory / f"run-{os.getpid()}.json"
        self._nodes: list[tuple[int, int | None]] = []
        self._phase = "starting"
        self._extra: dict[str, Any] = {}

    def open(self, **extra: Any) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._extra = extra
        self._write()

    def node_started(self, pid: int) -> None:
        self._nodes.append((pid, start_time(pid)))
        del self._nodes[:-LEDGER_PIDS_MAX]
        self._write()

    def phase(self, name: str) -> None:
        self._phase = name
        self._write()

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write(self) -> None:
        state = {"harness": [os.getpid(), start_time(os.getpid())], "phase": self._phase,
                 "nodes": self._nodes, **self._extra}
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(state) + "\n", encoding="utf-8")
        partial.replace(self.path)  # readers never see half a file


def read(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def clean_stale(directory: Path | None = None) -> list[str]:
    """Kill the node processes of harnesses that no longer run, drop their files; what was done.
    """
    directory = directory or state_dir()
    if not directory.is_dir():
        return []
    done: list[str] = []
    for path in sorted(directory.glob("run-*.json")):
        state = read(path)
        if state is None:
            path.unlink(missing_ok=True)
            continue
        harness_pid, harness_started = state.get("harness", [0, None])
        if _same_process(int(harness_pid), harness_started):
            continue  # that run is still going: its nodes are not leftovers
        killed = 0
        for pid, started in state.get("nodes", []):
            if _same_process(int(pid), started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
        if killed:
            done.append(f"{killed} node process{'es' if killed != 1 else ''} of harness "
                        f"pid {harness_pid}")
        path.unlink(missing_ok=True)
    return done
