"""`raftlib serve --client-port` / `raftlib cluster` refuse bad arguments with one line, and
the replicated counter example runs and agrees on every node."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import trio.testing

ROOT = Path(__file__).resolve().parents[3]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftlib.cli", *args],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["cluster", "--nodes", "0", "--data", "d"], "--nodes must be 1..9"),
        (["cluster", "--nodes", "3", "--data", "d", "--base-port", "65534"], "last node"),
        (["cluster", "--data", "d", "--base-port", "7000", "--client-base-port", "7001"],
         "overlap"),
        (["cluster", "--nodes", "3"], "--data"),
        (["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d",
          "--client-port", "0"], "--client-port must be 1..65535"),
        (["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d",
          "--client-port", "6379", "--client-peers", "1=nope"], "--client-peers"),
    ],
)
def test_bad_cluster_and_client_arguments_get_one_line_and_exit_2(
    args: list[str], needle: str
) -> None:
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]


def test_cluster_data_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "file"
    data.write_text("x")
    done = cli("cluster", "--data", str(data))
    assert done.returncode == 2
    assert "not a directory" in done.stderr


async def test_the_replicated_counter_example_agrees_on_every_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = importlib.util.spec_from_file_location(
        "replicated_counter", ROOT / "examples" / "replicated_counter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = await module.main()
    assert len(values) == 2  # the crashed leader stays down
    assert set(values.values()) == {sum(range(1, 21))}
