"""Shrinking: a failing run of a zoo bug shrinks to at most a quarter of its operations while
the same check still fails, and the smallest run is a replayable run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import zoo
from harness.cli import main
from harness.options import RunOptions
from harness.runner import run
from harness.shrink import ShrinkError, shrink_dir


@pytest.mark.parametrize(("name", "seed"), [("local-reads", 2), ("session-cache-off", 1),
                                            ("apply-before-commit", 0)])
def test_a_zoo_failure_shrinks_to_a_quarter_of_its_operations_failing_the_same_check(
    name: str, seed: int, tmp_path: Path
) -> None:
    options = RunOptions(**zoo.get(name).detection.options(), seed=seed, bug=name)
    original = run(options, tmp_path / "original")
    assert original.verdict == "invalid", f"seed {seed}: {original.line}"
    result = shrink_dir(tmp_path / "original", tmp_path / "small", runs_max=150, seconds_max=120)
    assert result.target in original.results["failed_checks"]
    assert result.target in result.report.results["failed_checks"], result.report.line
    original_ops = original.results["stats"]["operations"]["invoke"]
    assert result.original.operations == original_ops
    assert result.best.operations * 4 <= original_ops, (
        f"seed {seed}: {original_ops} -> {result.best.operations} operations: {result.steps}")
    saved = json.loads((tmp_path / "small" / "results.json").read_text())
    assert saved["shrink"]["original"] == str(tmp_path / "original")
    assert saved["shrink"]["target_check"] == result.target
    assert saved["shrink"]["steps"] == result.steps and result.steps
    assert saved["options"]["bug"] == name
    # The smallest run is an ordinary run directory: replay reproduces it byte for byte.
    assert main(["replay", str(tmp_path / "small"), "--out", str(tmp_path / "again"),
                 "--no-progress"]) == 1
    assert (tmp_path / "again" / "history.jsonl").read_bytes() == (
        tmp_path / "small" / "history.jsonl").read_bytes()


def test_shrinking_a_valid_run_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(RunOptions(time_limit=2.0, nodes=3, clients=3), tmp_path / "ok")
    with pytest.raises(ShrinkError, match="nothing to shrink"):
        shrink_dir(tmp_path / "ok", tmp_path / "small")
    assert main(["shrink", str(tmp_path / "ok")]) == 3
    err = capsys.readouterr().err
    assert "nothing to shrink" in err and len(err.strip().splitlines()) == 1
    assert main(["shrink", str(tmp_path / "missing")]) == 3
    assert "cannot read" in capsys.readouterr().err
