"""A live run stops cleanly on Ctrl-C or SIGTERM, and a new run cleans up after a killed one.

Each test starts the harness as a subprocess and waits for an observable event, the run's
ledger file saying the cluster is up (phase ``workload``), before it signals: no fixed sleeps.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.live import ledger, net
from harness.live.cluster import pid_alive, wait_pids_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
ROOT_NETNS = net.netns_unavailable_reason() is None
# A concurrent live run on this machine may hold the namespace lock for a while.
CLUSTER_UP_SECONDS_MAX = 120.0
STOP_SECONDS_MAX = 60.0
POLL_SECONDS = 0.05


def _start(run_dir: Path, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--backend", "live", "--nodes", "3",
         "--no-progress", "--out", str(run_dir), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_cluster_up(harness: subprocess.Popen[str]) -> list[int]:
    """The node pids, once the harness's ledger says the workload runs."""
    path = ledger.state_dir() / f"run-{harness.pid}.json"
    deadline = time.monotonic() + CLUSTER_UP_SECONDS_MAX
    while time.monotonic() < deadline and harness.poll() is None:
        state = ledger.read(path)
        if state is not None and state["phase"] == "workload":
            return [pid for pid, _ in state["nodes"]]
        time.sleep(POLL_SECONDS)
    harness.kill()
    _, err = harness.communicate()
    raise AssertionError(f"the cluster did not come up (status {harness.returncode}): {err}")


def _node_pids_under(directory: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "raftlib.cli" in cmdline and str(directory) in cmdline and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _assert_nothing_left(run_dir: Path, pids: list[int]) -> None:
    assert wait_pids_gone(pids, 5.0) == [], "node processes outlived the run"
    assert _node_pids_under(run_dir) == []
    if ROOT_NETNS:
        assert net.leftovers_when_idle() == [], "namespaces or links outlived the run"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_heals_stops_says_one_line_and_exits_130_with_verdict_interrupted(
    tmp_path: Path, signum: signal.Signals,
) -> None:
    run_dir = tmp_path / "run"
    harness = _start(run_dir, "--time-limit", "60", "--nemesis", "partition,kill,pause",
                     "--nemesis-interval", "1")
    try:
        pids = _wait_cluster_up(harness)
        harness.send_signal(signum)
        out, err = harness.communicate(timeout=STOP_SECONDS_MAX)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.communicate()
    assert harness.returncode == 130, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert f"interrupted by {signum.name}" in err and "faults healed" in err
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "interrupted"
    assert results["interrupted"]["signal"] == signum.name
    assert not (ledger.state_dir() / f"run-{harness.pid}.json").exists()
    _assert_nothing_left(run_dir, pids)


def test_a_new_run_first_removes_what_a_killed_run_left_and_says_so(tmp_path: Path) -> None:
    killed_dir = tmp_path / "killed"
    harness = _start(killed_dir, "--time-limit", "60")
    try:
        pids = _wait_cluster_up(harness)
        harness.kill()  # SIGKILL: no finally, no cleanup
        harness.communicate(timeout=STOP_SECONDS_MAX)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.communicate()
    assert all(pid_alive(pid) for pid in pids), "the killed run's nodes should still be up"
    if ROOT_NETNS:
        assert "rh-n1" in net.leftovers()
    new_dir = tmp_path / "new"
    second = _start(new_dir, "--time-limit", "2")
    _, err = second.communicate(timeout=CLUSTER_UP_SECONDS_MAX)
    assert second.returncode == 0, err
    cleanup = [line for line in err.splitlines()
               if "removed what an earlier, killed run left" in line]
    assert len(cleanup) == 1, err
    assert "3 node processes" in cleanup[0]
    if ROOT_NETNS:
        assert "netns rh-n1" in cleanup[0]
    assert wait_pids_gone(pids, 5.0) == []
    _assert_nothing_left(new_dir, pids)
