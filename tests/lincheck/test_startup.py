"""Start-up stays small: a plain check imports neither the HTML report nor multiprocessing,
nor argparse, nor (for a format other than JSON Lines) json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKER_DIR = Path(__file__).resolve().parents[2] / "checker"

# Modules only some runs need: importing them at start-up costs every per-file CLI call.
HEAVY = ("multiprocessing", "concurrent.futures", "lincheck.report_html", "asyncio", "email",
         "http", "xml", "tempfile", "logging", "shutil", "bz2", "lzma", "dataclasses",
         "inspect", "pathlib", "argparse", "gettext", "locale", "typing")

# Runs the CLI in a fresh interpreter, then prints which of the modules named in argv[1]
# (comma-separated) it imported (stdout of the CLI goes to stderr so that the last stdout line
# is that list). The probe itself imports nothing but sys and contextlib.
_PROBE = """
import contextlib, sys
names = sys.argv[1].split(",")
from lincheck.cli import main
with contextlib.redirect_stdout(sys.stderr):
    status = main(sys.argv[2:])
print(status, ",".join(n for n in names if n in sys.modules))
"""


def _imported(*argv: str, also: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    done = subprocess.run(
        # -S: no site-packages, so nothing a .pth file imports is counted, and lincheck must
        # run on the standard library alone.
        [sys.executable, "-S", "-c", _PROBE, ",".join([*HEAVY, "lincheck.report_json", *also]),
         *argv],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(CHECKER_DIR), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    status, _, imported = done.stdout.splitlines()[-1].partition(" ")
    return int(status), [name for name in imported.split(",") if name]


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


def test_a_check_of_an_etcd_log_imports_neither_argparse_nor_json(tmp_path: Path) -> None:
    """The per-file case of Porcupine's corpus: a failing check, whose explanation prints
    cas values, still needs no json (and no argparse: the fast path reads the arguments)."""
    log = tmp_path / "etcd.log"
    log.write_text("INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
                   "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
                   "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]\n"
                   "INFO  jepsen.util - 1\t:ok\t:cas\t[1 4]\n"
                   "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
                   "INFO  jepsen.util - 1\t:ok\t:read\t1\n", encoding="utf-8")
    status, imported = _imported("check", str(log), "--model", "cas-register", "--format",
                                 "porcupine-etcd", "--timeout", "5", also=("json",))
    assert status == 1
    assert imported == []


def test_an_unusual_command_line_still_goes_through_argparse(small: Path) -> None:
    """The probe sees argparse when the fast path hands over (an abbreviated option)."""
    status, imported = _imported("check", str(small), "--mod", "register")
    assert status == 0
    assert imported == ["argparse", "gettext", "locale"]


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


def test_an_ok_check_loads_neither_the_failure_explanation_nor_the_workers(small: Path) -> None:
    """What only a failure (lincheck.failure) or a parallel check (lincheck.workers) needs is
    imported when it is needed, not at start."""
    status, imported = _imported("check", str(small), "--model", "register",
                                 also=("lincheck.failure", "lincheck.workers"))
    assert status == 0
    assert imported == []


def test_an_illegal_check_loads_the_failure_explanation(tmp_path: Path) -> None:
    """The probe sees the lazy import: an illegal verdict is explained."""
    path = tmp_path / "stale.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
                    '{"process": 0, "type": "ok", "f": "write", "value": 1}\n'
                    '{"process": 1, "type": "invoke", "f": "read", "value": null}\n'
                    '{"process": 1, "type": "ok", "f": "read", "value": 2}\n', encoding="utf-8")
    status, imported = _imported("check", str(path), "--model", "register",
                                 also=("lincheck.failure", "lincheck.workers"))
    assert status == 1
    assert imported == ["lincheck.failure"]


def test_no_submodule_shadows_a_public_name() -> None:
    """Importing a submodule sets it as an attribute of the package: a module named like a
    public name (``lincheck.explain`` vs the ``explain`` function) would replace that name
    once something imports it. Every public name must still be what it was after all load."""
    code = ("import importlib, pkgutil, types, lincheck\n"
            "for info in pkgutil.iter_modules(lincheck.__path__):\n"
            "    if info.name != 'pytest_plugin':\n"
            "        importlib.import_module('lincheck.' + info.name)\n"
            "print(sorted(n for n in lincheck.__all__\n"
            "             if isinstance(getattr(lincheck, n), types.ModuleType)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env={"PYTHONPATH": str(CHECKER_DIR)})
    assert done.stdout.strip() == "[]"
