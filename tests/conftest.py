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

import fnmatch
import os
import unittest
from pathlib import Path
from typing import Any, Final

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


# Test modules that start node processes, a cluster of Trio nodes on real sockets, or a live
# harness run (paths from the repository's root, fnmatch patterns). Under pytest-xdist
# (``.ci/run``: two workers) they are one unit of work, which one worker runs one test after
# another while the other worker takes the rest: two clusters never compete for a 2-core
# machine, and a cluster's timeouts see at most one other busy core, as they did when the
# suite ran in one process. A new such module belongs here (tests/test_suite_groups.py).
PROCESS_MODULES: Final = (
    "tests/harness/test_live*.py",
    "tests/harness/test_targets_live.py",
    "tests/harness/test_ci_campaigns.py",
    "tests/harness/test_ssh_live.py",
    "tests/harness/test_report_chromium.py",
    "tests/raftlib/kv/test_kv_processes.py",
    "tests/raftlib/kv/test_kv_resp_limits_processes.py",
    "tests/raftlib/kv/test_redis_py_sessions.py",
    "tests/raftlib/kv/test_kv_cli_and_example.py",
    "tests/raftlib/kv/test_kv_service_start.py",
    "tests/raftlib/security/test_redis_cli_tls.py",
    "tests/raftlib/security/test_secure_cluster.py",
    "tests/raftlib/security/test_peer_tls.py",
    "tests/raftlib/security/test_certs_and_cli.py",
    "tests/raftlib/test_supervisor.py",
    "tests/raftlib/test_node_api.py",
    "tests/raftlib/test_node_identity.py",
    "tests/raftlib/test_operator_processes.py",
    "tests/raftlib/test_process_crash.py",
    "tests/raftlib/test_cli_serve.py",
    "tests/raftlib/test_bench_snapshots.py",
)
PROCESS_UNIT: Final = "processes"
# Modules whose time is mostly one long step (the native build's compile, about a minute):
# handed out first under xdist, so that no worker ends the run alone with one.
FIRST_MODULES: Final = ("tests/raftlib/test_native.py",)
ROOT: Final = Path(__file__).resolve().parent.parent


def _matches(nodeid: str, patterns: tuple[str, ...]) -> bool:
    path = nodeid.split("::", 1)[0]
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each test its own unit of work, except the process modules' tests, which are one unit.

    (pytest-xdist's ``--dist loadgroup`` would do this with marks, but it renames test ids
    through an attribute pytest 9.2 no longer has, and silently groups nothing.) Units are
    handed out in collection order, which ``pytest_collection_modifyitems`` starts with
    ``FIRST_MODULES`` and the process modules."""
    from xdist.scheduler import LoadScopeScheduling

    class ProcessUnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return PROCESS_UNIT if _matches(nodeid, PROCESS_MODULES) else nodeid

    config.option.loadscopereorder = False
    return ProcessUnitScheduling(config, log)


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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every worker collects the same list and sorts it the same way (a stable sort).
        items.sort(key=lambda item: (not _matches(item.nodeid, FIRST_MODULES),
                                     not _matches(item.nodeid, PROCESS_MODULES)))
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
