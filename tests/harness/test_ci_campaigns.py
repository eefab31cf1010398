"""The project's own CI checks the cluster the way users are told to: a short sim campaign and
a short live run, through the harness's pytest plugin (the ``raft_campaign`` marker)."""

from __future__ import annotations

import pytest


@pytest.mark.raft_campaign(seeds="0..9", time_limit=10)
def test_short_swarm_campaign_is_valid() -> None:
    """Ten swarm seeds: each draws its own cluster size, workload, clients, rate, fault kinds
    and interval, core and snapshot settings (the marker fails the test with the one-line
    verdict and the run directory of the first run that is not valid)."""


@pytest.mark.raft_campaign(
    backend="live", seeds="0..0", nodes=3, nemesis="partition,kill,pause", time_limit=10
)
def test_short_live_run_with_partitions_kills_and_pauses_is_valid() -> None:
    """Real `raftlib serve` processes on TCP; real partitions when running as root."""
