"""The HTML report's stylesheet and script are package data: they ship in a built package and
the page embeds them whole."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from lincheck.formats import history_from_events
from lincheck.models import get_model
from lincheck.report_html import render_html
from lincheck.search import check

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("report.css", "report.js")


def asset(name: str) -> str:
    return (resources.files("lincheck") / "report_assets" / name).read_text(encoding="utf-8")


def test_the_page_embeds_the_stylesheet_and_the_script_whole() -> None:
    history = history_from_events([
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 2},
    ])
    page = render_html(history, check(history, get_model("register")))
    css, js = asset("report.css"), asset("report.js")
    assert ".op.first rect" in css and "textContent" in js  # the real files, not stubs
    assert f"<style>\n{css}</style>" in page
    assert f"<script>\n{js}</script>" in page


def test_the_assets_ship_in_a_built_package(tmp_path: Path) -> None:
    """setuptools' build_py (what a wheel is made from) copies them: pyproject.toml declares
    them as lincheck's package data. Run on a fresh copy of the sources, so that no egg-info
    left by an editable install can list them instead."""
    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "checker" / "lincheck", tmp_path / "checker" / "lincheck",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
         "--build-lib", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in ASSETS:
        shipped = tmp_path / "out" / "lincheck" / "report_assets" / name
        assert shipped.is_file(), f"{name} is not in the built package"
        assert shipped.read_text(encoding="utf-8") == asset(name)
