"""The counter, set and queue workloads on real raftlib processes under partition, kill and
pause: valid, their own checks decided, and nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.live.cluster import wait_pids_gone
from harness.options import RunOptions
from harness.runner import run

# The check that decides each workload's history.
HISTORY_CHECK = {"counter": "counter", "set": "set", "queue": "linearizable"}


@pytest.mark.slow
@pytest.mark.parametrize("workload", sorted(HISTORY_CHECK))
def test_live_run_of_the_workload_is_valid_under_partition_kill_pause(
    workload: str, tmp_path: Path
) -> None:
    options = RunOptions(backend="live", workload=workload, nodes=3, time_limit=10.0,
                         nemesis=("partition", "kill", "pause"), seed=1, recovery_time=10.0)
    report = run(options, tmp_path / "run")
    assert report.verdict == "valid", f"reproduce with seed=1: {report.line}"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["checks"][HISTORY_CHECK[workload]]["valid"] is True
    assert results["stats"]["acknowledged_writes"] > 0
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert pids and wait_pids_gone(pids, 5.0) == []
