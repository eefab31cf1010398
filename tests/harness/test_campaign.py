"""Short campaigns with every nemesis are valid: the correct cluster passes the checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.campaign import run_campaign
from harness.options import NEMESIS_KINDS, RunOptions
from harness.outcomes import summary, table


def options(**overrides: object) -> RunOptions:
    """Small, quick runs: 3 nodes, 5 clients, 5 simulated seconds unless overridden."""
    base: dict[str, object] = {"nodes": 3, "clients": 5, "time_limit": 5.0, "seed": 1,
                               "lincheck_timeout": 30.0}
    base.update(overrides)
    return RunOptions(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("workload", ["register", "kv", "append"])
def test_ten_seeds_of_ten_seconds_with_all_nemeses_are_valid(workload: str, tmp_path: Path) -> None:
    base = options(workload=workload, nodes=5, clients=10, time_limit=10.0,
                   nemesis=NEMESIS_KINDS)
    outcomes = run_campaign(base, range(0, 10), 1, tmp_path)
    bad = [o for o in outcomes if o.verdict != "valid"]
    assert not bad, "\n".join(o.line for o in bad)
    assert all(o.operations > 20 for o in outcomes), table(outcomes)
    assert all(o.faults > 5 for o in outcomes), table(outcomes)
    assert summary(outcomes).startswith("10 runs: 10 valid")


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["register", "kv", "append"])
def test_two_hundred_seeds_with_all_nemeses_are_valid(workload: str, tmp_path: Path) -> None:
    base = options(workload=workload, nodes=5, clients=10, time_limit=10.0,
                   nemesis=NEMESIS_KINDS)
    outcomes = run_campaign(base, range(0, 200), 2, tmp_path)
    bad = [o for o in outcomes if o.verdict != "valid"]
    assert not bad, "\n".join(o.line for o in bad)


def test_a_campaign_of_valid_runs_never_imports_matplotlib(tmp_path: Path) -> None:
    """Only a run's page draws plots; a campaign whose runs are all valid draws none, and its
    index is plain HTML: importing matplotlib (about a second) would be pure cost per
    campaign, paid by every CI job that runs a small one."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from harness.cli import main\n"
        f"status = main(['campaign', '--backend', 'sim', '--seeds', '0..1', '--jobs', '1',\n"
        f"               '--time-limit', '2', '--no-progress', '--out', {str(tmp_path)!r}])\n"
        "print(status, 'matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    assert (tmp_path / "index.html").exists()
