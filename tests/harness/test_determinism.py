"""A sim run is a function of its seed: the same seed gives a byte-identical history file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.options import NEMESIS_KINDS, RunOptions
from harness.runner import run, simulate


def options(**overrides: object) -> RunOptions:
    """Small, quick runs: 3 nodes, 5 clients, 5 simulated seconds unless overridden."""
    base: dict[str, object] = {"nodes": 3, "clients": 5, "time_limit": 5.0, "seed": 1,
                               "lincheck_timeout": 30.0}
    base.update(overrides)
    return RunOptions(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("workload", ["register", "kv", "append"])
def test_same_seed_twice_gives_identical_history_bytes(workload: str, tmp_path: Path) -> None:
    opts = options(workload=workload, nemesis=NEMESIS_KINDS, nodes=5, time_limit=8.0, seed=11)
    first = run(opts, tmp_path / "a")
    second = run(opts, tmp_path / "b")
    a = (tmp_path / "a" / "history.jsonl").read_bytes()
    b = (tmp_path / "b" / "history.jsonl").read_bytes()
    assert len(a) > 1000, "the run produced almost no history"
    assert a == b, f"seed {opts.seed}: histories differ between two runs"
    assert (tmp_path / "a" / "nemesis.json").read_bytes() == (
        tmp_path / "b" / "nemesis.json"
    ).read_bytes()
    log_a = (tmp_path / "a" / "nodes.log").read_bytes()
    assert log_a == (tmp_path / "b" / "nodes.log").read_bytes()
    assert first.verdict == second.verdict


def test_different_seeds_give_different_histories() -> None:
    a = run(options(seed=1, nemesis=("partition",)), None).history_jsonl
    b = run(options(seed=2, nemesis=("partition",)), None).history_jsonl
    assert a != b


def test_a_run_does_not_depend_on_the_real_process_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAL writes its process id into the data directory's lock file; on the simulated
    disk that must be the simulated process's, or the crash model's draws (which depend on
    the file's length) made a seed give other histories in processes with longer ids."""
    opts = options(workload="register", nemesis=("disk", "kill"), seed=11, time_limit=12.0,
                   nodes=5)
    outcomes = []
    for pid in (7, 123456):
        monkeypatch.setattr("os.getpid", lambda pid=pid: pid)
        outcome = simulate(opts)
        outcomes.append((outcome.history.jsonl(), outcome.node_log))
    assert outcomes[0] == outcomes[1]
