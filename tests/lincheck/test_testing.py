"""assert_linearizable passes good histories and fails bad ones with explanation and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from lincheck.formats import history_from_events
from lincheck.models import get_model
from lincheck.testing import assert_linearizable

CHECKER_DIR = Path(__file__).resolve().parents[2] / "checker"


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


GOOD = [
    ev(0, "invoke", "write", 1),
    ev(1, "invoke", "read"),
    ev(0, "ok", "write", 1),
    ev(1, "ok", "read", 1),
]
BAD = [
    ev(0, "invoke", "write", 1),
    ev(0, "ok", "write", 1),
    ev(1, "invoke", "read"),
    ev(1, "ok", "read", 2),
]


def test_good_events_pass_and_return_the_result(tmp_path: Path) -> None:
    result = assert_linearizable(GOOD, "register", report_dir=tmp_path)
    assert result.verdict == "ok"
    assert list(tmp_path.iterdir()) == []  # no report for a passing check


def test_good_history_object_and_path_pass(tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in GOOD), encoding="utf-8")
    assert assert_linearizable(path, "register").verdict == "ok"
    assert assert_linearizable(str(path), get_model("register")).verdict == "ok"
    assert assert_linearizable(history_from_events(GOOD), "register").verdict == "ok"


def test_bad_history_fails_with_explanation_and_writes_report(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_linearizable(BAD, "register", report_dir=tmp_path / "reports")
    message = str(failure.value)
    assert message.startswith("NOT LINEARIZABLE")
    assert "read returned 2 but the state was 1" in message
    last = message.splitlines()[-1]
    assert last.startswith("HTML report: ")
    report = Path(last.removeprefix("HTML report: "))
    assert report.parent == tmp_path / "reports"
    page = report.read_text(encoding="utf-8")
    assert 'class="op bad first"' in page and "Not linearizable" in page


def test_two_failures_write_two_reports(tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(AssertionError):
            assert_linearizable(BAD, "register", report_dir=tmp_path)
    assert len(list(tmp_path.glob("*.html"))) == 2


def test_initial_value_by_name(tmp_path: Path) -> None:
    read_7 = [ev(0, "invoke", "read"), ev(0, "ok", "read", 7)]
    assert assert_linearizable(read_7, "register", initial=7).verdict == "ok"
    with pytest.raises(AssertionError):
        assert_linearizable(read_7, "register", report_dir=tmp_path)


def test_initial_with_a_model_object_is_refused() -> None:
    with pytest.raises(TypeError, match="initial="):
        assert_linearizable(GOOD, get_model("register"), initial=3)


def test_malformed_history_raises_history_error() -> None:
    from lincheck.history import HistoryError

    with pytest.raises(HistoryError, match="no open invocation"):
        assert_linearizable([ev(0, "ok", "read", 1)], "register")


def test_without_plugin_report_goes_under_tempdir_by_test_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lincheck import testing

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # The plugin is installed by the package's pytest11 entry point; act as if it were not.
    previous = testing.set_report_dir_provider(None)
    try:
        with pytest.raises(AssertionError) as failure:
            assert_linearizable(BAD, "register")
    finally:
        testing.set_report_dir_provider(previous)
    report = Path(str(failure.value).splitlines()[-1].removeprefix("HTML report: "))
    assert report.exists()
    folder = report.parent
    assert folder.parent == tmp_path / "lincheck-reports"
    assert "test_without_plugin_report_goes_under_tempdir_by_test_name" in folder.name


def test_module_imports_no_third_party_package() -> None:
    code = (
        "import sys, lincheck.testing, lincheck.cli, lincheck.report_html;"
        "bad = sorted(m for m in ('pytest', '_pytest', 'trio', 'attrs', 'msgspec', 'raftlib')"
        " if m in sys.modules); print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(CHECKER_DIR)},
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_plugin_puts_report_in_the_failing_tests_tmp_path(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_user.py").write_text(
        textwrap.dedent(
            f"""
            from lincheck.testing import assert_linearizable

            BAD = {BAD!r}

            def test_bad_history(lincheck_report_dir):
                assert lincheck_report_dir.name == "lincheck"
                assert_linearizable(BAD, "register")
            """
        ),
        encoding="utf-8",
    )
    (suite / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    basetemp = tmp_path / "basetemp"
    done = subprocess.run(
        # The installed package's pytest11 entry point loads the plugin.
        [sys.executable, "-m", "pytest", "-q",
         "-p", "no:cacheprovider", f"--basetemp={basetemp}", str(suite)],
        capture_output=True,
        text=True,
        cwd=suite,
        env={**os.environ, "PYTHONPATH": str(CHECKER_DIR)},
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the inner test fails, as it must
    assert "read returned 2 but the state was 1" in done.stdout
    # pytest links "<name>current" to the newest numbered folder: count real files once.
    reports = sorted({p.resolve() for p in basetemp.glob("*/lincheck/*.html")})
    assert len(reports) == 1, done.stdout
    assert reports[0].parent.parent.name.startswith("test_bad_history")
    assert str(reports[0]) in done.stdout
