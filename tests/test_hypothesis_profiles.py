"""The suite's Hypothesis profiles (tests/conftest.py): the default draws the same examples on
every run, settings a test module builds inherit that, and ``search`` multiplies budgets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
# Built at import, as the suite's own module-level settings are.
MODULE_SETTINGS = settings(max_examples=7)
not_in_search = pytest.mark.skipif(settings.get_current_profile_name() == "search",
                                   reason="the search profile is random by design")


@not_in_search
def test_the_default_profile_is_derandomized_and_ignores_wall_time() -> None:
    current = settings.default
    assert current is not None
    assert settings.get_current_profile_name() == "ci"
    assert current.derandomize is True
    assert current.deadline is None
    assert current.database is None  # no replay of an earlier run's failures
    assert current.print_blob is True


@not_in_search
def test_settings_built_by_a_test_module_inherit_derandomize() -> None:
    assert MODULE_SETTINGS.derandomize is True
    assert MODULE_SETTINGS.deadline is None
    assert MODULE_SETTINGS.max_examples == 7


@not_in_search
def test_a_property_draws_the_same_examples_on_every_run() -> None:
    def draws() -> list[int]:
        seen: list[int] = []

        @MODULE_SETTINGS
        @given(st.integers(-(2**60), 2**60))
        def prop(x: int) -> None:
            seen.append(x)

        prop()
        return seen

    first = draws()
    assert len(first) == 7
    assert draws() == first


COUNTING_TEST = """
from hypothesis import given, settings, strategies as st

SEEN = []

@settings(max_examples=3)
@given(st.integers(-(2**60), 2**60))
def test_draw(x):
    SEEN.append(x)

def test_count():
    print(f"examples={len(SEEN)}")
"""


def _examples_run(tmp_path: Path, profile: str) -> int:
    """How many examples a test with ``max_examples=3`` runs under ``profile``."""
    tmp_path = tmp_path / profile
    tmp_path.mkdir()
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_counting.py").write_text(COUNTING_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "HYPOTHESIS_PROFILE": profile}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:trio",
         "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (count,) = re.findall(r"examples=(\d+)", done.stdout)
    return int(count)


def test_the_search_profile_multiplies_each_tests_own_budget(tmp_path: Path) -> None:
    from tests.conftest import SEARCH_EXAMPLES_FACTOR

    assert _examples_run(tmp_path, "ci") == 3
    assert _examples_run(tmp_path, "search") == 3 * SEARCH_EXAMPLES_FACTOR
