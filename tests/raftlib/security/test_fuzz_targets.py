"""The atheris fuzz targets run under fuzz/run.py (a tiny CI-sized run) and report success."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_every_fuzz_target_runs_its_inputs_without_a_finding(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed")
    done = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "--runs", "2000",
         "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert {t["target"] for t in summary["targets"]} == {"codec_target", "resp_target"}
    for target in summary["targets"]:
        assert target["ok"] and target["runs_done"] == 2000, target
        assert target["coverage_edges"] > 20, target  # instrumentation reached raftlib code
    assert list(tmp_path.iterdir()) == []  # no crash artifacts
