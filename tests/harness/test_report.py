"""report.html: written by every run, self-contained, escaped, honest about failures and runs
that stopped early, and rebuilt by ``raft-harness report``."""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path
from typing import Any

import lincheck
import pytest

from harness import runner as runner_mod
from harness.cli import main
from harness.options import RunOptions
from harness.report import render_report, write_report
from harness.runner import run

PLOT = re.compile(r'<svg class="plot"')


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--nodes", "3", "--clients", "4", "--time-limit", "4", "--nemesis",
            "partition,kill,pause", "--seed", "3", "--out", str(out), "--no-progress", *extra]


def _assert_self_contained(page: str) -> None:
    assert 'src="http' not in page and "src='http" not in page
    assert "<link" not in page
    assert "<script src" not in page
    assert "@import" not in page and "url(http" not in page


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(_run_args(out)) == 0
    return out


def test_every_run_writes_a_self_contained_report_with_verdict_command_and_plots(
    valid_run: Path,
) -> None:
    page = (valid_run / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    results = json.loads((valid_run / "results.json").read_text())
    assert '<div class="word">VALID</div>' in page
    assert html.escape(results["command"]) in page
    assert f"raft-harness replay {html.escape(str(valid_run))}" in page
    assert len(PLOT.findall(page)) == 3, "latency, throughput and node plots"
    for check in ("linearizable", "safety", "durability", "liveness"):
        assert html.escape(results["checks"][check]["summary"]) in page, check


def test_the_reports_command_is_exactly_the_recorded_one_and_reproduces_the_run(
    valid_run: Path, tmp_path: Path
) -> None:
    page = (valid_run / "report.html").read_text(encoding="utf-8")
    shown = re.search(r'<pre id="cmd-run">(.*?)</pre>', page, re.S)
    assert shown is not None
    argv = shlex.split(html.unescape(shown.group(1)))
    assert argv[0] == "raft-harness"
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main([*argv[1:], "--no-progress"]) == 0
    assert (tmp_path / "again" / "history.jsonl").read_bytes() == (
        valid_run / "history.jsonl").read_bytes()


def test_every_fault_window_of_the_history_is_a_row_of_the_schedule_table(
    valid_run: Path,
) -> None:
    page = (valid_run / "report.html").read_text(encoding="utf-8")
    starts = [json.loads(line) for line in (valid_run / "history.jsonl").read_text().splitlines()
              if '"nemesis"' in line and '"start-' in line]
    assert starts, "the run had faults"
    table = page[page.index("<h2>Fault schedule</h2>"):page.index("<h2>Run parameters</h2>")]
    assert table.count("<tr><td class=num>") == len(starts)
    assert f"{len(starts)} fault windows" in table


def _write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


def _invalid_run_dir(run_dir: Path) -> Path:
    """A run directory whose history is not linearizable, with lincheck's real verdict,
    explanation and HTML report in it."""
    run_dir.mkdir(parents=True)
    events: list[dict[str, Any]] = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 0.10},
        {"process": 0, "type": "ok", "f": "write", "value": 1, "time": 0.12},
        {"process": "nemesis", "type": "info", "f": "start-partition",
         "value": {"id": 1, "mode": "halves", "blocked": [[1, 2], [2, 1]]}, "time": 0.15},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 0.20},
        {"process": 1, "type": "ok", "f": "read", "value": 2, "time": 0.25},
        {"process": "nemesis", "type": "info", "f": "stop-partition", "value": {"id": 1},
         "time": 0.40},
    ]
    _write_jsonl(run_dir / "history.jsonl", events)
    history = lincheck.read_history(run_dir / "history.jsonl")
    model = lincheck.get_model("cas-register")
    result = lincheck.check(history, model, timeout=10)
    assert result.verdict == "illegal", result
    lincheck.write_html(history, result, run_dir / "lincheck.html")
    explanation = lincheck.explain(history, result).splitlines()
    passed = {"valid": True, "summary": "fine", "violations": [], "violation_count": 0}
    results = {
        "verdict": "invalid", "seed": 11, "backend": "sim",
        "options": RunOptions(seed=11, nemesis=("partition",)).to_json(),
        "checks": {
            "linearizable": {"valid": False, "summary": f"not linearizable: {result.reason}",
                             "violations": explanation, "violation_count": len(explanation)},
            "safety": passed, "durability": passed, "liveness": passed,
        },
        "failed_checks": ["linearizable"],
        "command": "raft-harness run --seed 11 --nemesis partition",
        "replay": f"raft-harness replay {run_dir}",
    }
    (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (run_dir / "nemesis.json").write_text(json.dumps({"version": 1, "nodes": 3, "time_limit": 1.0,
                                                      "faults": []}), encoding="utf-8")
    return run_dir


def test_a_failed_run_shows_the_failing_check_lincheck_explanation_and_links_its_report(
    tmp_path: Path,
) -> None:
    run_dir = _invalid_run_dir(tmp_path / "bad")
    page = write_report(run_dir).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert '<div class="word">INVALID</div>' in page
    assert '<tr class="failed"><td><b>Linearizability (lincheck)</b>' in page
    assert '<a href="lincheck.html">' in page
    results = json.loads((run_dir / "results.json").read_text())
    for line in results["checks"]["linearizable"]["violations"]:
        assert html.escape(line) in page, line
    # The operation lincheck could not place is circled on the latency plot.
    assert "not linearizable: read (line 4)" in page
    assert len(PLOT.findall(page)) == 2, "latency and throughput; no nodes.log, no node plot"


def test_text_from_the_run_files_is_escaped_everywhere(tmp_path: Path) -> None:
    run_dir = _invalid_run_dir(tmp_path / "hostile")
    evil = '<script>alert("x")</script>'
    results = json.loads((run_dir / "results.json").read_text())
    results["checks"]["safety"] = {"valid": False, "summary": evil, "violations": [evil],
                                   "violation_count": 1}
    results["command"] = f"raft-harness run --seed '{evil}'"
    (run_dir / "results.json").write_text(json.dumps(results))
    events = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    events += [
        {"process": "nemesis", "type": "info", "f": f"start-{evil}", "value": {"id": 9},
         "time": 0.5},
        {"process": 7, "type": "invoke", "f": "$\\frac{", "value": None, "time": 0.6},
        {"process": 7, "type": "ok", "f": "$\\frac{", "value": None, "time": 0.7},
        {"process": "nemesis", "type": "info", "f": f"stop-{evil}", "value": {"id": 9},
         "time": 0.8},
    ]
    _write_jsonl(run_dir / "history.jsonl", events)
    (run_dir / "nodes.log").write_text(f"[    0.100000] n1 role leader term=1 {evil}\n")
    page = render_report(run_dir)
    assert evil not in page
    assert html.escape(evil) in page
    # A '$' that would start a formula in matplotlib is drawn literally, and every plot drew.
    assert "could not be drawn" not in page
    assert len(PLOT.findall(page)) == 3


def test_a_run_stopped_by_a_harness_exception_still_gets_a_report_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the simulator fell over")

    monkeypatch.setattr(runner_mod, "simulate", broken)
    out = tmp_path / "stopped"
    with pytest.raises(RuntimeError):
        run(RunOptions(nodes=3, nemesis=("kill",), seed=5, time_limit=3.0), out)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "The run stopped on an exception" in page
    assert "RuntimeError: the simulator fell over" in page
    assert "No results.json" in page and "NO VERDICT" in page
    assert "No history.jsonl" in page
    assert "fault windows, from nemesis.json" in page, "the planned schedule is still shown"


def test_an_invariant_broken_inside_the_cluster_reports_the_invariant_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise AssertionError("log matching: entry 7 differs on n2")

    monkeypatch.setattr(runner_mod, "simulate", broken)
    out = tmp_path / "crashed"
    report = run(RunOptions(nodes=3, seed=6, time_limit=3.0), out)
    assert report.verdict == "invalid"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<div class="word">INVALID</div>' in page
    assert "Invariant inside the cluster" in page and "FAILED" in page
    assert "log matching: entry 7 differs on n2" in page


def test_a_damaged_history_line_is_named_and_the_rest_still_plots(valid_run: Path,
                                                                  tmp_path: Path) -> None:
    run_dir = tmp_path / "damaged"
    run_dir.mkdir()
    for name in ("results.json", "nemesis.json", "nodes.log"):
        (run_dir / name).write_bytes((valid_run / name).read_bytes())
    lines = (valid_run / "history.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(3, b"\xff\xfe{not json\n")
    (run_dir / "history.jsonl").write_bytes(b"".join(lines))
    (run_dir / "results.json").write_text("{truncated")
    page = render_report(run_dir)
    assert "1 line(s) are not history events and were skipped (lines 4)" in page
    assert "results.json: not valid JSON" in page
    assert len(PLOT.findall(page)) == 3


def test_a_dense_history_is_drawn_as_a_bitmap_and_the_page_stays_small(tmp_path: Path) -> None:
    run_dir = tmp_path / "dense"
    run_dir.mkdir()
    events = []
    for i in range(20_000):
        t = i * 0.001
        outcome = ("ok", "fail", "info")[i % 3]
        events.append({"process": i % 50, "type": "invoke", "f": "read", "time": t})
        events.append({"process": i % 50, "type": outcome, "f": "read", "time": t + 0.003})
    _write_jsonl(run_dir / "history.jsonl", events)
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "drawn as a bitmap inside the SVG" in page
    assert "<image" in page
    assert len(page) < 1_500_000, len(page)


def test_report_subcommand_rebuilds_every_run_of_a_campaign_directory(
    valid_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign = tmp_path / "campaign"
    for seed in (0, 1):
        run_dir = campaign / f"seed-{seed}"
        run_dir.mkdir(parents=True)
        for name in ("results.json", "nemesis.json", "nodes.log", "history.jsonl"):
            (run_dir / name).write_bytes((valid_run / name).read_bytes())
    assert main(["report", str(campaign)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(campaign / "seed-0" / "report.html"),
                       str(campaign / "seed-1" / "report.html")]
    assert all(Path(p).stat().st_size > 10_000 for p in printed)


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing", "is not a directory"), ("empty", "holds no run")],
)
def test_report_subcommand_rejects_a_directory_without_a_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / target)]) == 3
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_node_log_lines_become_leader_down_and_paused_spans(tmp_path: Path) -> None:
    from harness.report.rundata import NodeMark, NodeSpan, load

    (tmp_path / "nodes.log").write_text(
        "[   startup  ] n1 start #1 (pid 10)\n"
        "[   startup  ] n1 role leader term=1\n"
        "[    0.000018] -- cluster ready; workload and faults start\n"
        "[    1.000000] n2 pause (SIGSTOP pid 11)\n"
        "[    2.000000] n1 crash: SIGKILL (pid 10, status -9)\n"
        "[    2.500000] n2 resume (SIGCONT pid 11)\n"
        "[    3.000000] n1 start #2 (pid 12)\n"
        "[    3.100000] n2 role pre_candidate term=1\n"
        "[    3.200000] n2 role leader term=2\n"
        "[    4.000000] -- all faults healed; recovery window starts\n"
        "[    5.000000] n2 stopped (status 0)\n"
        "not a node line at all\n"
    )
    data = load(tmp_path)
    assert data.node_ids == [1, 2]
    assert data.heal_time == 4.0
    assert sorted(data.node_spans, key=lambda s: (s.start, s.node)) == [
        NodeSpan(1, "leader", 0.0, 2.0, "T1"),
        NodeSpan(2, "paused", 1.0, 2.5),
        NodeSpan(1, "down", 2.0, 3.0),
        NodeSpan(2, "leader", 3.2, 5.0, "T2"),
    ]
    assert NodeMark(2, 3.1, "candidate") in data.node_marks
    assert NodeMark(1, 2.0, "crash") in data.node_marks
