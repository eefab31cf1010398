"""The membership nemesis on live node processes: spares started with --join are added and
removed through the operator's RAFT.* commands while clients write and other faults run; the
run stays valid and judges durability on the final configuration's members."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.live import net
from harness.live.cluster import wait_pids_gone
from harness.options import OptionsError, RunOptions, parse_nemesis
from harness.runner import run

needs_netns = pytest.mark.skipif(net.netns_unavailable_reason() is not None,
                                 reason="needs root on Linux and pyroute2")


@needs_netns
@pytest.mark.slow
@pytest.mark.parametrize("workload", ["register", "kv"])
def test_live_runs_with_membership_changes_are_valid(tmp_path: Path, workload: str) -> None:
    options = RunOptions(backend="live", nodes=3, workload=workload, time_limit=20.0,
                         nemesis=parse_nemesis("member,partition,kill"), nemesis_interval=2.0,
                         seed=1, recovery_time=10.0)
    report = run(options, tmp_path / "run")
    assert report.verdict == "valid", f"reproduce with seed=1: {report.line}"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    events = (tmp_path / "run" / "nodes.log").read_text()
    assert "membership: RAFT.ADD" in events and "done" in events
    assert results["stats"]["faults_started"].get("member", 0) > 0
    # Two spares (nodes 4 and 5) were started in join mode besides the three members.
    assert "--join" in (tmp_path / "run" / "nodes" / "node-4.log").read_text() or \
        (tmp_path / "run" / "nodes" / "node-4").is_dir()
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert wait_pids_gone(pids, 5.0) == []


def test_live_membership_needs_namespaces_and_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.live.runner import validate

    monkeypatch.setenv(net.PARTITIONS_ENV, "proxy")
    with pytest.raises(OptionsError, match=r"'member' is not supported.*one address"):
        validate(RunOptions(backend="live", nemesis=parse_nemesis("member")))
