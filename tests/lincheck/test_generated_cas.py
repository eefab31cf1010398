"""The issue's cas-register histories (20 and 50 processes, 5,000 and 20,000 operations, 1% and
5% crashed, valid and with one stale read) each get the right verdict well within 60 s."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from lincheck.formats import history_from_events
from lincheck.models import get_model
from lincheck.search import check

BENCH = Path(__file__).resolve().parents[2] / "bench" / "lincheck_vs_porcupine.py"
DECIDE_SECONDS_MAX = 60.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lincheck_vs_porcupine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lincheck_vs_porcupine", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("processes", [20, 50])
@pytest.mark.parametrize("ops", [5_000, 20_000])
@pytest.mark.parametrize("crash_pct", [1, 5])
@pytest.mark.parametrize("stale", [False, True], ids=["valid", "stale-read"])
def test_generated_cas_register_history_is_decided_correctly_in_time(
        processes: int, ops: int, crash_pct: int, stale: bool) -> None:
    events = _bench().generate_cas_history(processes, ops, crash_pct, stale,
                                           seed=processes * 1000 + ops + crash_pct)
    history = history_from_events(events)
    started = time.monotonic()
    result = check(history, get_model("cas-register"), timeout=DECIDE_SECONDS_MAX)
    assert result.verdict == ("illegal" if stale else "ok"), result.reason
    assert time.monotonic() - started < DECIDE_SECONDS_MAX


def test_the_generator_is_seeded_and_crashes_about_as_asked() -> None:
    bench = _bench()
    one = bench.generate_cas_history(5, 400, 5, False, seed=3)
    assert one == bench.generate_cas_history(5, 400, 5, False, seed=3)
    crashed = sum(1 for e in one if e["type"] == "info")
    assert 5 <= crashed <= 40  # 5% of 400 is 20
    stale = bench.generate_cas_history(5, 400, 5, True, seed=3)
    assert check(history_from_events(stale), get_model("cas-register")).verdict == "illegal"
