"""Property tests: the search agrees with the brute-force oracle on small random histories."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lincheck.brute import brute_force_check
from lincheck.formats import history_from_events
from lincheck.history import HistoryError
from lincheck.models import get_model
from lincheck.search import check
from lincheck.validate import validate_functions
from lincheck_strategies import (  # type: ignore[import-not-found]
    SPECS,
    mutated_history,
    recorded_history,
)

MODELS = sorted(SPECS)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _both(events: list[dict[str, Any]], name: str) -> tuple[str, str]:
    history = history_from_events(events)
    model = get_model(name)
    try:
        validate_functions(history, model)
    except HistoryError:
        assume(False)
    return check(history, model).verdict, brute_force_check(history, model)


@pytest.mark.parametrize("name", MODELS)
@SETTINGS
@given(data=st.data())
def test_history_recorded_from_a_sequential_object_is_linearizable(name: str,
                                                                   data: st.DataObject) -> None:
    events = data.draw(recorded_history(name))
    verdict, oracle = _both(events, name)
    assert oracle == "ok", events
    assert verdict == "ok", events


@pytest.mark.parametrize("name", MODELS)
@SETTINGS
@given(data=st.data())
def test_search_agrees_with_brute_force_on_mutated_histories(name: str,
                                                             data: st.DataObject) -> None:
    events = data.draw(mutated_history(name))
    verdict, oracle = _both(events, name)
    assert verdict == oracle, events


@SETTINGS
@given(data=st.data())
def test_search_agrees_with_brute_force_on_busier_register_histories(
        data: st.DataObject) -> None:
    events = data.draw(mutated_history("cas-register", ops_max=8))
    verdict, oracle = _both(events, "cas-register")
    assert verdict == oracle, events
