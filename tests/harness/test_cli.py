"""The raft-harness command line: runs, campaigns, replays, exit statuses and one-line errors."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import main


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--nodes", "3", "--clients", "4", "--time-limit", "4", "--nemesis",
            "partition,kill", "--seed", "3", "--out", str(out), *extra]


def test_run_writes_the_run_directory_and_exits_zero_when_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_run_args(out)) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("VALID") and "\n" not in line and str(out) in line
    for name in ("history.jsonl", "nemesis.json", "results.json", "nodes.log"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["verdict"] == "valid" and results["seed"] == 3
    assert set(results["checks"]) == {"linearizable", "safety", "durability", "refusals",
                                      "liveness"}
    assert results["options"]["nemesis"] == ["partition", "kill"]


def test_the_recorded_command_reproduces_the_same_history(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_run_args(out)) == 0
    command = json.loads((out / "results.json").read_text())["command"]
    argv = shlex.split(command)
    assert argv[0] == "raft-harness"
    again = tmp_path / "again"
    argv[argv.index("--out") + 1] = str(again)
    assert main(argv[1:]) == 0
    assert (again / "history.jsonl").read_bytes() == (out / "history.jsonl").read_bytes()


def test_replay_reruns_the_saved_schedule_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_run_args(out)) == 0
    capsys.readouterr()
    assert main(["replay", str(out)]) == 0
    assert "byte-identical" in capsys.readouterr().out
    assert (out / "replay" / "history.jsonl").read_bytes() == (
        out / "history.jsonl").read_bytes()


def test_campaign_prints_a_table_and_exits_zero_when_all_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["campaign", "--seeds", "0..3", "--jobs", "2", "--nodes", "3",
                 "--time-limit", "3", "--nemesis", "all", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 runs: 4 valid, 0 invalid, 0 unknown" in out
    for seed in range(4):
        assert (tmp_path / "c" / f"seed-{seed}" / "results.json").exists()


def test_campaign_lists_the_replay_command_of_each_failing_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftlib.kv.machine import KvStateMachine

    # Every write is acknowledged but never applied: each seed's history is not linearizable.
    monkeypatch.setattr(KvStateMachine, "_execute", lambda self, op: True)
    code = main(["campaign", "--seeds", "5..6", "--jobs", "1", "--nodes", "3",
                 "--time-limit", "3", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"seed 5 invalid: raft-harness replay {tmp_path / 'c' / 'seed-5'}" in out
    assert "--seed 6" in out


def test_a_campaign_draws_the_failures_pages_and_report_draws_the_rest_and_the_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default only the runs that were not valid get report.html (drawing one takes most
    of a short run's time) and the index links those; ``raft-harness report`` on the campaign
    draws every run's page and the index again, linking all; ``--report-pages all`` draws
    every page at once."""
    out = tmp_path / "c"
    # apply-before-commit: swarm seeds 1, 2 and 4 of 0..5 catch it (tests/harness/test_swarm).
    argv = ["campaign", "--seeds", "0..5", "--jobs", "1", "--swarm", "--time-limit", "2",
            "--bug", "apply-before-commit", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 1
    drawn = {seed for seed in range(6) if (out / f"seed-{seed}" / "report.html").is_file()}
    assert drawn == {1, 2, 4}
    assert all((out / f"seed-{seed}" / "results.json").is_file() for seed in range(6))
    index = (out / "index.html").read_text()
    assert sorted(re.findall(r'href="seed-(\d+)/report.html"', index)) == ["1", "2", "4"]
    assert f"raft-harness report {out}" in index
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(out / "index.html") and len(printed) == 7
    redrawn = (out / "index.html").read_text()
    assert sorted(re.findall(r'href="seed-(\d+)/report.html"', redrawn)) == [
        str(seed) for seed in range(6)]
    # The same rows as the campaign drew (the wall times aside).
    rows = re.compile(r"<tr><td class=num>(?:<a [^>]*>)?(\d+)(?:</a>)?</td><td><span[^<]*>"
                      r"(\w+)</span></td><td class=num>(\d+)</td><td class=num>(\d+)</td>")
    assert rows.findall(redrawn) == rows.findall(index) and len(rows.findall(index)) == 6
    every = tmp_path / "all"
    assert main(["campaign", "--seeds", "0..1", "--jobs", "1", "--swarm", "--time-limit", "2",
                 "--no-progress", "--out", str(every), "--report-pages", "all"]) == 0
    assert all((every / f"seed-{seed}" / "report.html").is_file() for seed in range(2))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--nodes", "0"], "--nodes: must be an integer in [1, 15]"),
        (["run", "--nodes", "three"], "invalid int value"),
        (["run", "--workload", "bank"], "--workload: unknown workload 'bank'"),
        (["run", "--nemesis", "partition,meteor"], "unknown fault kind 'meteor'"),
        (["run", "--nemesis", ""], "--nemesis: empty list"),
        (["run", "--backend", "live", "--nemesis", "reorder"], "cannot reorder"),
        (["run", "--time-limit", "-1"], "--time-limit: must be a number of seconds"),
        (["run", "--time-limit", "nan"], "--time-limit: must be a number of seconds"),
        (["run", "--rate", "0"], "--rate: must be a number of operations per second"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["campaign", "--seeds", "5..2"], "--seeds: need 0 <= A <= B"),
        (["campaign", "--seeds", "x"], "--seeds: expected A..B"),
        (["campaign", "--seeds", "0..1", "--jobs", "0"], "--jobs: must be in [1, 256]"),
        (["replay", "/nonexistent/dir"], "cannot read /nonexistent/dir/results.json"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_options_get_one_line_and_exit_status_3(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("raft-harness")


def test_replay_of_a_corrupt_schedule_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(_run_args(out)) == 0
    capsys.readouterr()
    (out / "nemesis.json").write_text('{"version": 1, "nodes": 3, "time_limit": 4, '
                                      '"faults": [{"kind": "kill"}]}')
    assert main(["replay", str(out)]) == 3
    err = capsys.readouterr().err
    assert "nemesis.json: faults[0]" in err and err.count("\n") == 1
