"""pytest plugin: ``assert_linearizable`` writes its HTML report into the test's ``tmp_path``.

Installing the package registers it with pytest (the ``pytest11`` entry point), so it is active
in any test run where lincheck is installed; ``-p no:lincheck`` turns it off. Only pytest
imports this module; ``lincheck`` itself never does, so the library stays standard-library-only
at run time.

Fixture ``lincheck_report_dir``: the folder the reports of the current test go to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import testing


def _report_dir(request: pytest.FixtureRequest) -> Path:
    # Asked lazily: a test that never fails an assertion never creates the folder.
    tmp_path: Path = request.getfixturevalue("tmp_path")
    folder = tmp_path / "lincheck"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def lincheck_report_dir(request: pytest.FixtureRequest) -> Path:
    """The folder where ``assert_linearizable`` writes this test's reports."""
    return _report_dir(request)


@pytest.fixture(autouse=True)
def _lincheck_reports_in_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    previous = testing.set_report_dir_provider(lambda: _report_dir(request))
    try:
        yield
    finally:
        testing.set_report_dir_provider(previous)
