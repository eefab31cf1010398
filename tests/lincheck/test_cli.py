"""The lincheck command line: exit status per verdict, one-line errors naming file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lincheck.cli import main
from lincheck.formats import read_history

CHECKER_DIR = Path(__file__).resolve().parents[2] / "checker"
PORCUPINE = Path(__file__).resolve().parents[3] / "shared" / "data" / "porcupine"


def jsonl(path: Path, *events: dict[str, Any] | str) -> Path:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


GOOD = (
    ev(0, "invoke", "write", 1),
    ev(1, "invoke", "read"),
    ev(0, "ok", "write", 1),
    ev(1, "ok", "read", 1),
)
# p1 reads 2 after the write of 1 completed and nobody wrote 2.
BAD = (
    ev(0, "invoke", "write", 1),
    ev(0, "ok", "write", 1),
    ev(1, "invoke", "read"),
    ev(1, "ok", "read", 2),
)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- exit status per verdict -----------------------------------------------------------------


def test_linearizable_history_exits_0_with_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, out, err = run(["check", str(path), "--model", "register"], capsys)
    assert (status, err) == (0, "")
    assert out.startswith("linearizable")


def test_illegal_history_exits_1_and_names_the_culprit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "bad.jsonl", *BAD)
    status, out, err = run(["check", str(path), "--model", "register"], capsys)
    assert (status, err) == (1, "")
    assert "NOT LINEARIZABLE" in out
    assert "process 1" in out and "lines 3–4" in out
    assert "read returned 2 but the state was 1" in out


def test_deadline_reached_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 14 concurrent writes, then a read no write explains: exploring every order of the writes
    # takes far longer than the 1 ms deadline, so the verdict is unknown. Two writes share a
    # value, so that the zone algorithm (distinct values only) does not decide it at once.
    writers = 14
    events = [ev(p, "invoke", "write", p % (writers - 1)) for p in range(writers)]
    events += [ev(p, "ok", "write", p % (writers - 1)) for p in range(writers)]
    events += [ev(99, "invoke", "read"), ev(99, "ok", "read", 1000)]
    path = jsonl(tmp_path / "slow.jsonl", *events)
    status, out, err = run(
        ["check", str(path), "--model", "register", "--timeout", "0.001", "--json"], capsys
    )
    assert err == ""
    if status == 1:
        pytest.skip("the search decided before its deadline; no unknown verdict to observe")
    assert status == 2
    assert json.loads(out)["verdict"] == "unknown"


def test_json_flag_prints_the_result_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "bad.jsonl", *BAD)
    status, out, _ = run(["check", str(path), "--model", "register", "--json"], capsys)
    doc = json.loads(out)
    assert status == 1
    assert doc["schema"] == "lincheck.result/1"
    assert (doc["verdict"], doc["linearizable"], doc["model"]) == ("illegal", False, "register")
    assert doc["failure"]["unplaced"][0]["process"] == 1
    assert doc["failure"]["unplaced"][0]["output"] == 2


def test_html_flag_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "bad.jsonl", *BAD)
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    status, out, _ = run(["check", str(path), "--model", "register", "--html", str(report)], capsys)
    assert status == 1
    assert f"HTML report: {report}" in out
    assert 'class="op bad first"' in report.read_text(encoding="utf-8")


def test_initial_value_changes_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "r.jsonl", ev(0, "invoke", "read"), ev(0, "ok", "read", 7))
    assert run(["check", str(path), "--model", "register"], capsys)[0] == 1
    assert run(["check", str(path), "--model", "register", "--initial", "7"], capsys)[0] == 0


# --- bad input: exit 3 and one stderr line naming file and line ------------------------------


def test_invoke_while_previous_operation_open_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev(0, "invoke", "write", 1), ev(0, "invoke", "read"))
    status, out, err = run(["check", str(path), "--model", "register"], capsys)
    assert (status, out) == (3, "")
    assert_one_error_line(err, f"{path}:2")


def test_completion_without_invocation_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "h.jsonl", *GOOD, ev(2, "ok", "read", 1))
    status, _, err = run(["check", str(path), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, f"{path}:5")


def test_unknown_event_type_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev(0, "invoke", "write", 1), ev(0, "done", "write", 1))
    status, _, err = run(["check", str(path), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, f"{path}:2", "done")


def test_unknown_function_for_the_model_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = (ev(0, "invoke", "frobnicate"), ev(0, "ok", "frobnicate"))
    path = jsonl(tmp_path / "h.jsonl", *GOOD, *unknown)
    status, _, err = run(["check", str(path), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, f"{path}:5", "frobnicate")


def test_bad_json_line_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "h.jsonl", *GOOD[:2], '{"process": 0, "type": "ok", "f": ')
    status, _, err = run(["check", str(path), "--model", "register", "--format", "jsonl"], capsys)
    assert status == 3
    assert_one_error_line(err, f"{path}:3")


def test_hostile_bytes_exit_3_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"process": 0, "type": "invoke", "f": "read"}\n\xff\xfe\x00\n\x1b[2J\n')
    status, _, err = run(["check", str(path), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, str(path))


def test_missing_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    status, _, err = run(["check", str(missing), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, str(missing))


def test_unknown_model_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, _, err = run(["check", str(path), "--model", "quantum-register"], capsys)
    assert status == 3
    assert_one_error_line(err, "quantum-register")


def test_unknown_format_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, _, err = run(["check", str(path), "--model", "register", "--format", "xml"], capsys)
    assert status == 3
    assert_one_error_line(err, "--format", "xml")


@pytest.mark.parametrize("initial", ["{not json", "[1, 2"])
def test_bad_initial_json_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], initial: str
) -> None:
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, _, err = run(["check", str(path), "--model", "register", "--initial", initial], capsys)
    assert status == 3
    assert_one_error_line(err, "--initial")


def test_initial_of_wrong_shape_for_model_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, _, err = run(["check", str(path), "--model", "fifo-queue", "--initial", "5"], capsys)
    assert status == 3
    assert_one_error_line(err, "fifo-queue")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["check"],
        ["check", "h.jsonl"],  # --model is required
        ["check", "h.jsonl", "--model", "register", "--timeout", "soon"],
        ["check", "h.jsonl", "--model", "register", "--timeout", "-1"],
        ["check", "h.jsonl", "--model", "register", "--bogus"],
        ["convert", "h.jsonl", "--to", "xml", "out"],
    ],
)
def test_usage_errors_exit_3_on_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(argv, capsys)
    assert (status, out) == (3, "")
    assert_one_error_line(err, "lincheck")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["check", "--help"], capsys)
    assert status == 0
    assert "--model" in out and "--timeout" in out


# --- models and convert ----------------------------------------------------------------------


def test_models_lists_every_model_on_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    from lincheck.models import MODELS

    status, out, _ = run(["models"], capsys)
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(MODELS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # each has a description


def test_convert_writes_jsonl_that_reads_back_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edn = tmp_path / "h.edn"
    edn.write_text(
        "[{:process 0, :type :invoke, :f :write, :value 3}\n"
        " {:process 0, :type :ok, :f :write, :value 3}\n"
        " {:process 1, :type :invoke, :f :read, :value nil}\n"
        " {:process 1, :type :ok, :f :read, :value 3}]\n",
        encoding="utf-8",
    )
    out = tmp_path / "h.jsonl"
    status, _, err = run(["convert", str(edn), "--to", "jsonl", str(out)], capsys)
    assert (status, err) == (0, "")
    before, after = read_history(edn), read_history(out, format="jsonl")
    assert [(o.process, o.f, o.input, o.output, o.status) for o in before.operations] == [
        (o.process, o.f, o.input, o.output, o.status) for o in after.operations
    ]
    assert run(["check", str(out), "--model", "register"], capsys)[0] == 0


def test_convert_of_bad_input_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev(0, "ok", "read", 1))
    status, _, err = run(["convert", str(path), "--to", "jsonl", str(tmp_path / "o")], capsys)
    assert status == 3
    assert_one_error_line(err, f"{path}:1")


# --- as a process ----------------------------------------------------------------------------


def test_python_dash_m_lincheck_exit_status_and_stderr(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev(0, "invoke", "write", 1), ev(0, "invoke", "read"))
    env = {**os.environ, "PYTHONPATH": str(CHECKER_DIR)}
    done = subprocess.run(
        [sys.executable, "-m", "lincheck", "check", str(path), "--model", "register"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout == ""
    assert_one_error_line(done.stderr, f"{path}:2")


@pytest.mark.skipif(not PORCUPINE.exists(), reason="../shared/data/porcupine is absent")
def test_porcupine_illegal_file_exits_1_and_renders_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "etcd.html"
    source = PORCUPINE / "jepsen" / "etcd_000.log"
    status, out, err = run(
        ["check", str(source), "--model", "cas-register", "--html", str(report)], capsys
    )
    assert (status, err) == (1, "")
    assert "Could not be placed next" in out
    page = report.read_text(encoding="utf-8")
    assert page.count('class="op') > 50 and 'bad first"' in page


def test_internal_error_exits_4_not_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lincheck.search

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(lincheck.search, "check", broken)
    path = jsonl(tmp_path / "good.jsonl", *GOOD)
    status, out, err = run(["check", str(path), "--model", "register"], capsys)
    assert (status, out) == (4, "")
    assert_one_error_line(err, "internal error: RuntimeError: boom")


# --- a history with no operations proves nothing ----------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "jsonl", "edn", "porcupine-etcd", "porcupine-kv"])
def test_empty_history_is_bad_input_exit_3_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    path = tmp_path / "empty.log"
    path.write_text("", encoding="utf-8")
    status, out, err = run(["check", str(path), "--model", "cas-register", "--format", fmt],
                           capsys)
    assert (status, out) == (3, "")
    assert_one_error_line(err, str(path), "no operations", "--allow-empty")


def test_log_of_another_format_read_as_etcd_is_empty_so_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "h.jsonl", *GOOD)
    status, _, err = run(["check", str(path), "--model", "cas-register", "--format",
                          "porcupine-etcd"], capsys)
    assert status == 3
    assert_one_error_line(err, str(path), "no operations")


def test_history_of_nemesis_events_only_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev("nemesis", "info", "start"))
    status, _, err = run(["check", str(path), "--model", "register"], capsys)
    assert status == 3
    assert_one_error_line(err, str(path), "only 1 nemesis events")


def test_allow_empty_accepts_an_empty_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.log"
    path.write_text("\n", encoding="utf-8")
    status, out, err = run(["check", str(path), "--model", "register", "--allow-empty"], capsys)
    assert (status, err) == (0, "")
    assert out.startswith("linearizable")


def test_history_whose_operations_all_failed_is_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = jsonl(tmp_path / "h.jsonl", ev(0, "invoke", "write", 1), ev(0, "fail", "write", 1))
    status, _, _ = run(["check", str(path), "--model", "register"], capsys)
    assert status == 0


# --- the fast path for `check` arguments ------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "h.jsonl", "--model", "register"],
        ["check", "--model", "kv", "h.jsonl", "--json", "--allow-empty"],
        ["check", "h.log", "--model=cas-register", "--format=porcupine-etcd", "--timeout=2.5"],
        ["check", "h.jsonl", "--model", "register", "--initial", '{"a": 1}', "--html", "r.html"],
        ["check", "h.jsonl", "--model", "register", "--model", "kv", "--timeout", "1e3"],
    ],
)
def test_fast_path_reads_check_arguments_as_argparse_does(argv: list[str]) -> None:
    from lincheck.cli import CheckArgs, build_parser, parse_check_fast

    fast = parse_check_fast(argv)
    assert fast is not None
    assert vars(fast) == vars(CheckArgs(**vars(build_parser().parse_args(argv))))


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "h.jsonl", "--mod", "register"],  # an abbreviation: argparse's to read
        ["check", "h.jsonl", "--model", "register", "--timeout", "-1"],
        ["check", "h.jsonl", "--model", "register", "--timeout", "nan"],
        ["check", "h.jsonl", "--model", "register", "--format", "xml"],
        ["check", "h.jsonl", "other.jsonl", "--model", "register"],
        ["check", "h.jsonl", "--model", "register", "--initial", "-1"],
        ["check", "h.jsonl", "--model"],
        ["check", "h.jsonl"],
        ["check", "--help"],
        ["check", "h.jsonl", "--model", "register", "--"],
    ],
)
def test_fast_path_hands_anything_unusual_to_argparse(argv: list[str]) -> None:
    from lincheck.cli import parse_check_fast

    assert parse_check_fast(argv) is None
