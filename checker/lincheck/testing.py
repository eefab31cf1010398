"""``assert_linearizable`` for tests: check a history, fail with an explanation and a report.

    from lincheck.testing import assert_linearizable

    def test_register_is_linearizable(tmp_path):
        events = run_my_workload()                   # dicts like the JSON Lines format's
        assert_linearizable(events, "cas-register", timeout=30)

It accepts a ``History``, an iterable of events (``Event`` objects or JSON-Lines-like dicts) or
the path of a history file, and a model given by name (``initial`` sets its initial state) or
as a ``Model``. It returns the ``Result`` when the history is linearizable. Otherwise (verdict
illegal, or unknown because the deadline passed) it writes the HTML report and raises
``AssertionError`` whose message is the text explanation followed by the report's path.

Where the report goes, first match wins:

1. ``report_dir`` when given;
2. under pytest with the plugin ``lincheck.pytest_plugin`` active: inside the test's own
   ``tmp_path`` (in a ``lincheck/`` folder), next to the test's other temporary files. Enable
   it with ``pytest_plugins = ["lincheck.pytest_plugin"]`` in the root ``conftest.py`` or
   ``-p lincheck.pytest_plugin``; it also offers a fixture ``lincheck_report_dir``;
3. under pytest without the plugin (``PYTEST_CURRENT_TEST`` is set):
   ``<tempdir>/lincheck-reports/<test name>/``;
4. otherwise ``<tempdir>/lincheck-reports/``.

Standard library only: pytest is never imported here.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .history import Event, History
from .report_html import write_html
from .report_text import explain
from .result import Result

if TYPE_CHECKING:
    from .models import Model

HistoryLike = History | Iterable[Mapping[str, Any] | Event] | str | os.PathLike[str]

# Report files per directory before giving up on a free name (one per failing call is usual).
report_names_max = 1000
slug_chars_max = 80

# Set by the pytest plugin for the duration of one test: returns that test's report folder.
_report_dir_provider: Callable[[], Path] | None = None


def set_report_dir_provider(provider: Callable[[], Path] | None) -> Callable[[], Path] | None:
    """Install ``provider`` (or none); returns the previous one so the caller can restore it."""
    global _report_dir_provider
    previous = _report_dir_provider
    _report_dir_provider = provider
    return previous


def assert_linearizable(
    history_or_events_or_path: HistoryLike,
    model: Model | str,
    *,
    initial: Any = None,
    timeout: float | None = 60.0,
    report_dir: str | os.PathLike[str] | None = None,
) -> Result:
    """Check the history; return the result if linearizable, else raise ``AssertionError``."""
    from .search import check
    from .validate import validate_functions

    history = _as_history(history_or_events_or_path)
    the_model = _as_model(model, initial)
    validate_functions(history, the_model)
    result = check(history, the_model, timeout=timeout)
    if result.verdict == "ok":
        return result
    path = _report_path(report_dir, history.source)
    write_html(history, result, path, model=the_model)
    raise AssertionError(
        f"{explain(history, result, model=the_model)}\nHTML report: {path}"
    )


def _as_history(value: HistoryLike) -> History:
    from .formats import history_from_events, read_history

    if isinstance(value, History):
        return value
    if isinstance(value, (str, os.PathLike)):
        return read_history(value)
    return history_from_events(value)


def _as_model(model: Model | str, initial: Any) -> Model:
    from .models import get_model

    if isinstance(model, str):
        return get_model(model, initial)
    if initial is not None:
        raise TypeError("initial= applies to a model given by name; build the Model with it")
    return model


def report_dir_for_current_test() -> Path:
    """The folder reports go to when the caller names none (rules 2-4 of the module doc)."""
    if _report_dir_provider is not None:
        return _report_dir_provider()
    base = Path(tempfile.gettempdir()) / "lincheck-reports"
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if test:
        # "tests/x.py::test_y[param] (call)": the node id names the test uniquely.
        return base / _slug(test.rsplit(" (", 1)[0])
    return base


def _report_path(report_dir: str | os.PathLike[str] | None, source: str) -> Path:
    folder = Path(report_dir) if report_dir is not None else report_dir_for_current_test()
    folder.mkdir(parents=True, exist_ok=True)
    stem = "lincheck-" + _slug(Path(source).name if not source.startswith("<") else "history")
    for n in range(report_names_max):
        path = folder / (f"{stem}.html" if n == 0 else f"{stem}-{n + 1}.html")
        try:
            # "x" claims the name atomically: parallel test workers never share a report.
            with open(path, "x", encoding="utf-8"):
                pass
        except FileExistsError:
            continue
        return path
    raise AssertionError(f"no free report name in {folder} after {report_names_max} tries")


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    # The tail is the specific part of a test id ("...::test_name[param]"): keep that.
    return slug[-slug_chars_max:].strip("._") or "report"
