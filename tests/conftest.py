"""Hypothesis profiles for the whole suite: deterministic by default, a harder search on demand.

- ``ci`` (the default, locally and in CI): derandomized, so every run draws the same examples
  and a red CI is a real regression, not a bad draw. No deadline and no ``too_slow`` health
  check: both measure wall time, which on a loaded 2-core machine is itself a coin toss. No
  example database: a failure saved by an earlier run must not change what this run tests.
- ``search`` (``HYPOTHESIS_PROFILE=search``): random, and every test's example budget
  multiplied by ``SEARCH_EXAMPLES_FACTOR`` (tests that set ``max_examples`` included). Failures
  are saved in ``.hypothesis/`` and replayed first on the next search run; ``print_blob`` shows
  the ``@reproduce_failure`` line that turns one into a fixed regression test.

    HYPOTHESIS_PROFILE=search .ci/run -m hypothesis      # only the Hypothesis tests

``--hypothesis-profile NAME`` on the command line wins over the environment variable.

Tests that build their own ``settings(...)`` inherit everything they do not set from the
profile loaded here, because this file is imported before any test module. Collection checks
that: under ``ci`` a Hypothesis test that is not derandomized stops the run, naming the test.
"""

from __future__ import annotations

import os
import unittest
from typing import Final

import pytest
from hypothesis import HealthCheck, settings

try:
    from hypothesis import is_hypothesis_test
except ImportError:  # Hypothesis releases before it was exported kept it here
    from hypothesis.internal.detection import is_hypothesis_test

PROFILE_ENV: Final = "HYPOTHESIS_PROFILE"
DEFAULT_PROFILE: Final = "ci"
# How many times each test's own example budget the search profile runs.
SEARCH_EXAMPLES_FACTOR: Final = 20
# Examples per test in the search profile for tests that set no budget (Hypothesis: 100).
SEARCH_EXAMPLES_DEFAULT: Final = 100 * SEARCH_EXAMPLES_FACTOR

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "search",
    derandomize=False,
    max_examples=SEARCH_EXAMPLES_DEFAULT,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def profile_name(config: pytest.Config) -> str:
    name = config.getoption("--hypothesis-profile", None) or os.environ.get(PROFILE_ENV)
    return name or DEFAULT_PROFILE


def pytest_configure(config: pytest.Config) -> None:
    name = profile_name(config)
    try:
        settings.load_profile(name)
    except Exception as exc:  # Hypothesis raises InvalidArgument naming the profile
        raise pytest.UsageError(f"{PROFILE_ENV}={name!r}: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str:
    current = settings.default
    assert current is not None
    return (f"hypothesis profile: {settings.get_current_profile_name()} "
            f"(derandomize={current.derandomize}, max_examples={current.max_examples})")


def _holder(item: pytest.Item) -> tuple[object, str]:
    """Where a collected Hypothesis test keeps its settings: a state machine's ``TestCase``
    class (public API), or the attribute ``@given`` sets on the test function."""
    cls = getattr(item, "cls", None)
    if cls is not None and issubclass(cls, unittest.TestCase) and hasattr(cls, "settings"):
        return cls, "settings"
    function = getattr(item.obj, "__func__", item.obj)  # type: ignore[attr-defined]
    return function, "_hypothesis_internal_use_settings"


def settings_of(item: pytest.Item) -> settings:
    """The settings a collected Hypothesis test will run with."""
    holder, name = _holder(item)
    found = getattr(holder, name, None)
    if not isinstance(found, settings):
        raise pytest.UsageError(f"{item.nodeid}: cannot read its Hypothesis settings (did "
                                "Hypothesis change where @given keeps them?)")
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    search = settings.get_current_profile_name() == "search"
    scaled: set[int] = set()  # a parametrized test or a state machine spans several items
    for item in items:
        if not (isinstance(item, pytest.Function) and is_hypothesis_test(item.obj)):
            continue
        current = settings_of(item)
        if search:
            holder, name = _holder(item)
            if id(holder) not in scaled:
                scaled.add(id(holder))
                setattr(holder, name, settings(
                    current, max_examples=current.max_examples * SEARCH_EXAMPLES_FACTOR,
                    derandomize=False))
        elif not current.derandomize:
            raise pytest.UsageError(
                f"{item.nodeid}: Hypothesis runs it randomized under the "
                f"{settings.get_current_profile_name()!r} profile; its settings must inherit "
                "derandomize from the profile (create them at import, without derandomize=False)"
            )
