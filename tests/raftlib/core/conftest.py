"""Fixtures for the pure-core tests: scripted networks whose trace is shown when a test fails."""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from tests.raftlib.core.network import Network

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for net in getattr(item, "_raft_networks", ()):
            report.sections.append((f"raft trace (seed={net.seed})", net.format_trace()))


@pytest.fixture
def make_net(request: pytest.FixtureRequest) -> Callable[..., Network]:
    """Build a Network whose full trace is attached to the report if the test fails."""

    def factory(*args: Any, **kwargs: Any) -> Network:
        net = Network(*args, **kwargs)
        networks = getattr(request.node, "_raft_networks", [])
        networks.append(net)
        request.node._raft_networks = networks
        return net

    return factory
