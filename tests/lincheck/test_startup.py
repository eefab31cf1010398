"""Start-up stays small: a plain check imports neither the HTML report nor multiprocessing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHECKER_DIR = Path(__file__).resolve().parents[2] / "checker"

# Modules only some runs need: importing them at start-up costs every per-file CLI call.
HEAVY = ("multiprocessing", "concurrent.futures", "lincheck.report_html", "asyncio", "email",
         "http", "xml", "tempfile", "logging", "shutil", "bz2", "lzma", "dataclasses",
         "inspect", "pathlib")

# Runs the CLI in a fresh interpreter, then prints which of the modules named in argv[1] it
# imported (stdout of the CLI goes to stderr so that the last stdout line is that list).
_PROBE = """
import contextlib, json, sys
names = json.loads(sys.argv[1])
from lincheck.cli import main
with contextlib.redirect_stdout(sys.stderr):
    status = main(sys.argv[2:])
print(json.dumps({"status": status, "imported": [n for n in names if n in sys.modules]}))
"""


def _imported(*argv: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        # -S: no site-packages, so nothing a .pth file imports is counted, and lincheck must
        # run on the standard library alone.
        [sys.executable, "-S", "-c", _PROBE, json.dumps([*HEAVY, "lincheck.report_json"]),
         *argv],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(CHECKER_DIR), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    return found["status"], found["imported"]


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
                    '{"process": 0, "type": "ok", "f": "write", "value": 1}\n', encoding="utf-8")
    return path


def test_a_plain_check_imports_no_heavy_module(small: Path) -> None:
    status, imported = _imported("check", str(small), "--model", "register")
    assert status == 0
    assert imported == []


def test_a_json_check_imports_the_json_report_only(small: Path) -> None:
    status, imported = _imported("check", str(small), "--model", "register", "--json")
    assert status == 0
    assert imported == ["lincheck.report_json"]


def test_the_html_report_is_imported_when_asked_for(small: Path, tmp_path: Path) -> None:
    """The probe sees imports: asking for the HTML report does import it."""
    status, imported = _imported("check", str(small), "--model", "register",
                                 "--html", str(tmp_path / "r.html"))
    assert status == 0
    assert "lincheck.report_html" in imported


def test_import_lincheck_is_lazy_and_its_names_still_resolve() -> None:
    code = ("import sys, lincheck; before = sorted(m for m in sys.modules if "
            "m.startswith('lincheck.')); lincheck.check; lincheck.write_html; "
            "print(before, 'lincheck.report_html' in sys.modules, 'check' in dir(lincheck))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env={"PYTHONPATH": str(CHECKER_DIR)})
    assert done.stdout.strip() == "[] True True"
