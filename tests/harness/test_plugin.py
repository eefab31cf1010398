"""The pytest plugin: a marked test or the fixture runs a short campaign and fails with the
one-line verdict and the run directory (run in a pytest subprocess, as a user's suite would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import pytest

@pytest.mark.raft_campaign(seeds="0..1", nodes=3, clients=3, time_limit=3,
                           nemesis="partition,kill")
def test_correct_cluster() -> None:
    pass

@pytest.mark.raft_campaign(seeds=2, nemesis="partition,pause", bug="local-reads", swarm=False)
def test_broken_reads() -> None:
    pass

def test_fixture_expects_the_bug_caught(raft_campaign) -> None:
    outcomes = raft_campaign(seeds="2..2", workload="append", nemesis="kill,partition",
                             nemesis_interval=0.5, rate=100, bug="session-cache-off",
                             expect="invalid", swarm=False)
    assert outcomes[0].verdict == "invalid"

def test_fixture_valid_outcomes(raft_campaign) -> None:
    outcomes = raft_campaign(seeds=range(2), nodes=3, clients=3, time_limit=2)
    assert [o.seed for o in outcomes] == [0, 1]

@pytest.mark.raft_campaign(seeds="0..1", nemesis="meteor")
def test_bad_option() -> None:
    pass
'''


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "checker")])}
    return subprocess.run(
        # no:raft_harness: the pytest11 entry point (when installed) must not load it twice.
        [sys.executable, "-m", "pytest", "-p", "no:raft_harness", "-p", "harness.pytest_plugin",
         "-p", "no:cacheprovider",
         "-q", "-rf", "--rootdir", str(tmp_path), "-c", os.devnull, *args,
         str(tmp_path / "test_suite.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_marker_and_fixture_pass_valid_campaigns_and_fail_with_the_verdict(tmp_path: Path) -> None:
    keep = tmp_path / "runs"
    proc = _pytest(tmp_path, "--raft-campaign-out", str(keep))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "3 passed" in out and "2 failed" in out, out
    verdicts = [line for line in out.splitlines() if line.startswith("raft campaign: ")]
    assert len(verdicts) == 1, out  # one line: the failing marked test's verdict
    broken = verdicts[0]
    assert "1 of 2 runs not valid; first: INVALID (linearizable" in broken, broken
    assert f"replay: raft-harness replay {keep / 'test_broken_reads' / 'seed-0'}" in broken
    assert "FAILED test_suite.py::test_broken_reads" in out
    assert "FAILED test_suite.py::test_bad_option" in out
    assert "unknown fault kind 'meteor'" in out, out
    results = json.loads((keep / "test_correct_cluster" / "seed-1" / "results.json").read_text())
    # Swarm by default: the seed drew what the marker did not pin.
    assert results["options"]["swarm"] is True
    assert results["options"]["nodes"] == 3 and results["options"]["clients"] == 3
    fixed = json.loads((keep / "test_broken_reads" / "seed-1" / "results.json").read_text())
    assert fixed["options"]["swarm"] is False
