"""Targets other than raftlib on real processes in network namespaces: a generic RESP service
and etcd valid under faults, Redis with Sentinel failover losing acknowledged writes when a
partition isolates its primary (reported as expected), and nothing left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.live import net
from harness.live.cluster import wait_pids_gone
from harness.nemesis import Fault, Schedule
from harness.options import RunOptions
from harness.runner import run

ROOT_NETNS = net.netns_unavailable_reason() is None


def _needs(*programs: str) -> pytest.MarkDecorator:
    missing = [p for p in programs if shutil.which(p) is None]
    reason = (f"needs root and network namespaces ({net.netns_unavailable_reason()})"
              if not ROOT_NETNS else
              f"needs {', '.join(missing)} (apt-get install etcd-server redis-server "
              "redis-sentinel)")
    return pytest.mark.skipif(not ROOT_NETNS or bool(missing), reason=reason)


def _results(out: Path) -> dict[str, Any]:
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def _left_behind(results: dict[str, Any]) -> list[str]:
    """Node processes still alive and namespaces still present after the run."""
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert pids, "the run started no process"
    return [f"pid {pid}" for pid in wait_pids_gone(pids, 5.0)] + net.leftovers_when_idle()


# Single Redis servers (no replication): a linearizable register, the cas a Lua script.
RESP_COMMAND = ("redis-server --bind {host} --port {port} --dir {data_dir} --save '' "
                "--appendonly yes --appendfsync always --protected-mode no")
RESP_CAS = ("EVAL \"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], "
            "ARGV[2]) return 1 else return 0 end\" 1 {key} {expected} {new}")


@_needs("redis-server")
def test_a_resp_service_from_its_start_command_is_valid_under_kill_and_pause(
        tmp_path: Path) -> None:
    options = RunOptions(backend="live", target="resp", resp_command=RESP_COMMAND,
                         resp_cas=RESP_CAS, nodes=1, clients=4, workload="register",
                         nemesis=("kill", "pause"), time_limit=6.0, nemesis_interval=1.5,
                         seed=3)
    report = run(options, tmp_path / "run")
    assert report.verdict == "valid", f"reproduce with seed=3: {report.line}"
    results = _results(tmp_path / "run")
    assert results["target"]["name"] == "resp"
    assert results["target"]["version"].startswith("Redis server v=")
    assert results["stats"]["operations"]["ok"] > 0
    assert results["stats"]["faults_started"]
    assert _left_behind(results) == []


@pytest.mark.slow
@_needs("etcd")
def test_etcd_with_linearizable_reads_is_valid_under_partition_kill_pause(
        tmp_path: Path) -> None:
    options = RunOptions(backend="live", target="etcd", nodes=3, workload="register",
                         nemesis=("partition", "kill", "pause"), time_limit=12.0, seed=1)
    report = run(options, tmp_path / "run")
    assert report.verdict == "valid", f"reproduce with seed=1: {report.line}"
    results = _results(tmp_path / "run")
    assert results["target"]["version"].startswith("etcd 3.")
    assert "target etcd 3." in report.line
    assert results["checks"]["linearizable"]["valid"] is True
    assert results["stats"]["faults_started"].keys() == {"partition", "kill", "pause"}
    assert _left_behind(results) == []


# The check that names the loss, per workload: the set checker's lost elements, or the
# final reads of the kv keys (harness.targets.lost_writes).
LOSS_CHECK = {"set": ("set", "acknowledged element(s) lost"),
              "kv": ("lost-writes", "acknowledged writes lost")}


@pytest.mark.slow
@_needs("redis-server", "redis-sentinel")
@pytest.mark.parametrize("workload", sorted(LOSS_CHECK))
def test_redis_sentinel_loses_acknowledged_writes_when_a_partition_isolates_the_primary(
        workload: str, tmp_path: Path) -> None:
    # One window: the primary cut off from both replicas and their Sentinels for 6 s, long
    # enough for a failover (down after 1 s) while clients still write to the old primary.
    schedule = Schedule(nodes=3, time_limit=14.0, faults=(
        Fault(1, "partition", 3.0, 9.0, {"mode": "isolate-leader", "blocked": None}),))
    options = RunOptions(backend="live", target="redis-sentinel", nodes=3, workload=workload,
                         nemesis=("partition",), time_limit=14.0, recovery_time=40.0, seed=1)
    from harness.live.runner import run_live

    report = run_live(options, tmp_path / "run", schedule=schedule)
    results = _results(tmp_path / "run")
    check, words = LOSS_CHECK[workload]
    assert report.verdict == "invalid", report.line
    assert check in results["failed_checks"], report.line
    assert words in results["checks"][check]["summary"]
    assert "[expected for redis-sentinel: acknowledged writes lost" in report.line
    assert check in results["expected_failures_seen"]
    assert results["checks"]["liveness"]["valid"] is True
    assert len(results["stats"]["primaries"]) >= 2, "no failover happened"
    assert _left_behind(results) == []


@pytest.mark.slow
@_needs("etcd")
@pytest.mark.parametrize("serializable", [True, False])
def test_etcd_serializable_reads_are_caught_stale_under_a_partition_and_linearizable_are_not(
        serializable: bool, tmp_path: Path) -> None:
    # Node 1 cut off for 6 s: its serializable reads keep answering from its old state while
    # nodes 2 and 3 go on writing, which lincheck must flag; linearizable reads there time out.
    blocked = [[1, 2], [1, 3], [2, 1], [3, 1]]
    schedule = Schedule(nodes=3, time_limit=10.0, faults=(
        Fault(1, "partition", 2.0, 8.0, {"mode": "isolate", "blocked": blocked}),))
    options = RunOptions(backend="live", target="etcd", etcd_serializable_reads=serializable,
                         nodes=3, workload="register", nemesis=("partition",), time_limit=10.0,
                         seed=1)
    from harness.live.runner import run_live

    report = run_live(options, tmp_path / "run", schedule=schedule)
    results = _results(tmp_path / "run")
    assert results["checks"]["linearizable"]["valid"] is (not serializable), report.line
    assert results["options"]["etcd_serializable_reads"] is serializable
    assert _left_behind(results) == []
