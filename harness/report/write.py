"""Render a run directory's report and write it next to the run's files, atomically (a reader
never sees half a page, and a crash while writing leaves the previous page)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.report import page, rundata

REPORT_NAME = "report.html"


def render_report(run_dir: Path, *, stopped: str | None = None) -> str:
    """The page for ``run_dir`` as a string. ``stopped`` says why the run ended early (an
    exception's one-line description), for a run that did not finish."""
    return page.render(rundata.load(Path(run_dir)), stopped)


def write_report(run_dir: Path, *, stopped: str | None = None) -> Path:
    """Write ``run_dir/report.html`` and return its path. Bad or missing files in the run
    directory are shown on the page, not raised; only failing to write the page raises
    ``OSError``."""
    run_dir = Path(run_dir)
    text = render_report(run_dir, stopped=stopped)
    target = run_dir / REPORT_NAME
    temporary = run_dir / f".{REPORT_NAME}.{os.getpid()}.tmp"
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
