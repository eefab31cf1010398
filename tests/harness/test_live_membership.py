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


class _Disks:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.retired: set[int] = set()

    def retire(self, node: int) -> None:
        self.events.append(f"retire {node}")
        self.retired.add(node)


def _membership(disks: _Disks, refuse: set[bytes]) -> tuple[object, list[str]]:
    import random

    from harness.live.membership import LiveMembership

    membership = LiveMembership(size=3, nodes=[1, 2, 3, 4, 5],
                                raft_address=lambda n: f"h{n}:7000",
                                client_address=lambda n: f"h{n}:6379", leader=lambda: 1,
                                log=lambda text: None, rng=random.Random(0), disks=disks)

    async def call(command: list[bytes]) -> bool:
        disks.events.append(" ".join(part.decode() for part in command[:2]))
        return command[0] not in refuse

    membership._call = call  # type: ignore[method-assign]
    return membership, disks.events


def test_wipe_replace_retires_a_follower_and_puts_a_spare_in_its_place_under_a_new_id() -> None:
    import trio

    disks = _Disks()
    membership, events = _membership(disks, refuse=set())
    trio.run(membership._wipe_replace, [1, 2, 3], 4)  # type: ignore[attr-defined]
    gone = int(events[0].split()[1])
    assert gone in (2, 3), "the leader (1) is never the one replaced"
    assert events == [f"retire {gone}", "RAFT.ADD 4", f"RAFT.REMOVE {gone}"]


def test_a_retired_node_is_never_an_outsider_and_is_removed_before_any_action() -> None:
    import trio

    disks = _Disks()
    disks.retired.add(2)
    membership, events = _membership(disks, refuse=set())
    answers = iter([{1: "voter", 2: "voter", 3: "voter"}, {1: "voter", 3: "voter"}])

    async def members() -> dict[int, str]:
        return next(answers)

    membership.members = members  # type: ignore[attr-defined]
    trio.run(membership._act, "grow")  # type: ignore[attr-defined]
    # The dead node goes first; grow then adds spares 4 and 5, never node 2 back.
    assert events == ["RAFT.REMOVE 2", "RAFT.ADD 4", "RAFT.ADD 5"]
