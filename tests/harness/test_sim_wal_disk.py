"""The simulator on the production WAL: with ``SimParams(disk="wal")`` every node keeps its
data in ``WalStorage`` over ``CrashFS`` (the persistence model the storage crash explorer
proves the WAL against), so simulated power losses go through the real files, records and
recovery. Runs under disk, kill and partition faults must stay valid, with snapshots too."""

from __future__ import annotations

import pytest

from harness.options import RunOptions
from harness.runner import run, schedule_for
from harness.sim.node import DATA_DIR
from harness.sim.params import SimParams
from harness.sim.world import SimWorld

WAL = SimParams(disk="wal")


def _options(seed: int, workload: str) -> RunOptions:
    return RunOptions(nodes=3, clients=5, time_limit=6.0, seed=seed, workload=workload,
                      nemesis=("disk", "kill", "partition"), nemesis_interval=0.5,
                      lincheck_timeout=30.0, snapshot_entries=16, snapshot_trailing=4)


@pytest.mark.parametrize("workload", ["register", "append"])
def test_runs_on_the_wal_disk_under_power_loss_are_valid(workload: str) -> None:
    bad = [r.line for seed in range(6)
           if (r := run(_options(seed, workload), None, params=WAL)).verdict != "valid"]
    assert not bad, "\n".join(bad)


def test_the_wal_disk_holds_the_nodes_files() -> None:
    options = _options(1, "append")
    world = SimWorld(options, schedule_for(options), WAL)
    outcome = world.run()
    assert sum(outcome.stats["faults_started"].values()) > 0
    node = world.nodes[1]
    names = node.fs.listdir(DATA_DIR)
    assert "hardstate" in names and any(n.startswith("wal-") for n in names), names
    assert any(n.startswith("snapshot-") for n in names), names
