"""Property tests: the search agrees with the brute-force oracle on small random histories."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from lincheck import search as search_module
from lincheck.brute import brute_force_check
from lincheck.formats import history_from_events
from lincheck.history import History, HistoryError, Operation
from lincheck.models import INCONSISTENT, Model, get_model
from lincheck.report_text import explain, stuck_reasons
from lincheck.result import PartitionResult, Result
from lincheck.search import check
from lincheck.validate import validate_functions
from lincheck_strategies import (  # type: ignore[import-not-found]
    DISTINCT_WRITE,
    SPECS,
    mutated_history,
    recorded_history,
)

MODELS = sorted(SPECS)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _both(events: list[dict[str, Any]], name: str) -> tuple[str, str]:
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
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


# --- the explanation of an illegal history is true, claim by claim -----------------------------

_CLAIM_READ = re.compile(r"(read|get) returned (.+?) but the state was (.+?)(?:[:;]|$)")
_CLAIM_STALE = re.compile(r"it read (the initial state|the state after step (\d+)) \(a stale "
                          r"read\): step (\d+).*? cannot go before step (\d+)")
_CLAIM_CAS = re.compile(r"cas expected (.+?), but the state was (.+?)(?:[:;]|$)")
_CLAIM_CAS_FAILED = re.compile(
    r"cas reported that the value was not (.+?), but the state was (.+?)(?:[:;]|$)")


def _successors(model: Model, state: Any, op: Operation) -> list[Any]:
    nexts = (list(model.step_unknown(state, op)) if op.status == "info" and model.step_unknown
             else [model.step(state, op)])
    return [s for s in nexts if s is not INCONSISTENT]


def _replay(part: PartitionResult, model: Model, ops: dict[int, Operation],
            considered: list[Operation]) -> list[Any]:
    """The states before and after each step of ``part.longest`` (index j: after step j),
    checking that it is a partial linearization: real-time order and the model's step."""
    states = [model.init()]
    placed: set[int] = set()
    for k, op_id in enumerate(part.longest):
        op = ops[op_id]
        early = {o.id for o in considered
                 if o.status == "ok" and o.ret is not None and o.ret < op.call}
        assert early <= placed, f"step {k + 1} ({op_id}) comes before {early - placed}"
        fits = [s for s in _successors(model, states[-1], op)
                if model.describe_state(s) == part.states[k]]
        assert fits, f"step {k + 1} ({op_id}) is not accepted from the state before it"
        states.append(fits[0])
        placed.add(op_id)
    return states


def _verify_failure(history: History, model: Model, part: PartitionResult) -> None:
    pm = model.part_model(part.key) if model.part_model is not None else model
    ops = {op.id: op for op in history.operations}
    considered = [ops[i] for i in part.operation_ids
                  if not (ops[i].status == "info" and pm.read_only(ops[i]))]
    states = _replay(part, pm, ops, considered)
    final = states[-1]
    placed = set(part.longest)
    left = [op for op in considered if op.status == "ok" and op.id not in placed]
    culprit = min(left, key=lambda op: (op.ret or 0))
    assert part.unplaced[0] == culprit.id and set(part.unplaced) == {op.id for op in left}
    frontier = {op.id for op in considered
                if op.id not in placed and op.call < (culprit.ret or 0)}
    assert {c.op_id for c in part.candidates} == frontier
    assert part.candidates[0].op_id == culprit.id
    completed = [ops[c.op_id] for c in part.candidates if ops[c.op_id].status == "ok"]
    for cand in part.candidates:
        op = ops[cand.op_id]
        nexts = _successors(pm, final, op)
        assert cand.outcome != "allowed", "the prefix was not extended to the end"
        if cand.outcome == "rejected":
            assert not nexts, f"{op} is said to be rejected, yet the model accepts it"
            if cand.read_only:
                for j in range(cand.after_step, len(states)):
                    assert not _successors(pm, states[j], op), f"{op} fits after step {j}"
        else:
            assert op.status == "info" and nexts
            for ns in nexts:
                assert not any(_successors(pm, ns, c) for c in completed)
        if cand.after_step:
            before = ops[part.longest[cand.after_step - 1]]
            assert before.ret is not None and before.ret < op.call
        later = [ops[i] for i in part.longest[cand.after_step:]]
        assert not any(o.status == "ok" and o.ret is not None and o.ret < op.call for o in later)


def _verify_text(history: History, model: Model, result: Result) -> None:
    text = explain(history, result, model=model)
    part = result.first_failure()
    assert part is not None
    reasons = stuck_reasons(part, {op.id: op for op in history.operations}, model, model.name)
    why = next(line for line in text.splitlines() if line.startswith("  Why: "))
    assert why.startswith("  Why: " + reasons[part.unplaced[0]])
    assert f"process {history.operations[part.unplaced[0]].process}" in next(
        line for line in text.splitlines() if ">>>" in line)
    pm = model.part_model(part.key) if model.part_model is not None else model
    ops = {op.id: op for op in history.operations}
    considered = [ops[i] for i in part.operation_ids
                  if not (ops[i].status == "info" and pm.read_only(ops[i]))]
    states = _replay(part, pm, ops, considered)
    by_op = {c.op_id: c for c in part.candidates}
    for op_id, reason in reasons.items():
        stale = _CLAIM_STALE.search(reason)
        if stale:
            j = 0 if stale.group(1) == "the initial state" else int(stale.group(2))
            changed, soonest = int(stale.group(3)), int(stale.group(4))
            assert changed == j + 1 and soonest == by_op[op_id].after_step > j
            assert _successors(pm, states[j], ops[op_id]), "it did not read that state"
            for k in range(j + 1, len(states)):
                assert not _successors(pm, states[k], ops[op_id]), "the value came back"
        for _, seen, was in _CLAIM_READ.findall(reason):
            assert seen != was, reason
        for expected, was in _CLAIM_CAS.findall(reason):
            assert expected != was, reason
        for expected, was in _CLAIM_CAS_FAILED.findall(reason):
            assert expected == was, reason


def _same_kinds(op: Operation) -> bool:
    if op.f != "txn" or op.output is None:
        return True
    return [m[0] for m in op.input] == [m[0] for m in op.output]


def _verify_witness(history: History, model: Model, part: PartitionResult) -> None:
    pm = model.part_model(part.key) if model.part_model is not None else model
    ops = {op.id: op for op in history.operations}
    considered = [ops[i] for i in part.operation_ids
                  if not (ops[i].status == "info" and pm.read_only(ops[i]))]
    _replay(part, pm, ops, considered)
    completed = {op.id for op in considered if op.status == "ok"}
    assert completed <= set(part.longest), "an ok witness leaves a completed operation out"


@pytest.mark.parametrize("name", MODELS)
@SETTINGS
@given(data=st.data())
def test_what_a_result_says_is_true_claim_by_claim(name: str, data: st.DataObject) -> None:
    """Illegal: the longest prefix replays, it is stuck where it says, every candidate is
    rejected (or unhelpful) as it says, and the text's claims hold. Ok: the witness replays."""
    events = data.draw(mutated_history(name, ops_max=7))
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
    try:
        validate_functions(history, model)
    except HistoryError:
        assume(False)
    # multi-register's read_only looks at a txn's invocation, its step at the completion: a
    # txn invoked as reads that completes with writes breaks that contract (a models.py
    # issue, reported), and the search then rightly trusts read_only. Not this test's subject.
    assume(all(_same_kinds(op) for op in history.operations))
    result = check(history, model)
    event(result.verdict)
    for part in result.partitions:
        if part.verdict == "illegal":
            _verify_failure(history, model, part)
        elif part.verdict == "ok":
            _verify_witness(history, model, part)
    if result.verdict == "illegal":
        _verify_text(history, model, result)


@SETTINGS
@given(data=st.data())
def test_explanation_of_a_busier_illegal_register_history_is_true(data: st.DataObject) -> None:
    events = data.draw(mutated_history("cas-register", ops_max=9))
    history = history_from_events(events)
    model = get_model("cas-register")
    result = check(history, model)
    assume(result.verdict == "illegal")
    (part,) = result.partitions
    _verify_failure(history, model, part)
    _verify_text(history, model, result)


# --- the zone algorithm (distinct written values) agrees with brute force and with the search --

DISTINCT_MODELS = sorted(DISTINCT_WRITE)
# More examples than elsewhere: each is cheap, and the zone conditions have several edges.
ZONE_SETTINGS = settings(max_examples=120, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.filter_too_much])


def _search_only(history: History, model: Model) -> str:
    """The verdict of the search alone, the zone algorithm switched off."""
    saved = search_module.ZONES_ENABLED
    search_module.ZONES_ENABLED = False
    try:
        return check(history, model).verdict
    finally:
        search_module.ZONES_ENABLED = saved


def _decided_by_zones(history: History, model: Model) -> Result:
    result = check(history, model)
    # Distinct values by construction: the zone algorithm, not the search, decided each part.
    assert all(part.decided_by == "zones" for part in result.partitions), result
    assert result.stats["decided_by"]["search"] == 0
    return result


@pytest.mark.parametrize("name", DISTINCT_MODELS)
@ZONE_SETTINGS
@given(data=st.data())
def test_zone_algorithm_agrees_with_brute_force_on_distinct_value_histories(
        name: str, data: st.DataObject) -> None:
    events = data.draw(mutated_history(name, ops_max=7, distinct=True))
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
    assume(history.operations)
    result = _decided_by_zones(history, model)
    event(result.verdict)
    event("a cas took effect" if any(op.f == "cas" for op in history.operations)
          else "no cas")
    assert result.verdict == brute_force_check(history, model), events


@pytest.mark.parametrize("name", DISTINCT_MODELS)
@ZONE_SETTINGS
@given(data=st.data())
def test_zone_algorithm_agrees_with_the_search_on_busier_distinct_value_histories(
        name: str, data: st.DataObject) -> None:
    events = data.draw(mutated_history(name, ops_max=20, processes_max=5, distinct=True))
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
    assume(history.operations)
    result = _decided_by_zones(history, model)
    event(result.verdict)
    assert result.verdict == _search_only(history, model), events


@pytest.mark.parametrize("name", DISTINCT_MODELS)
@ZONE_SETTINGS
@given(data=st.data())
def test_what_a_zone_result_says_is_true_claim_by_claim(name: str, data: st.DataObject) -> None:
    """Ok: the zone witness replays and holds every completed operation. Illegal: the
    explanation (from the search's longest prefix) is true as for the search's own verdicts."""
    events = data.draw(mutated_history(name, ops_max=9, distinct=True))
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
    assume(history.operations)
    result = _decided_by_zones(history, model)
    event(result.verdict)
    for part in result.partitions:
        if part.verdict == "illegal":
            _verify_failure(history, model, part)
        elif part.verdict == "ok":
            _verify_witness(history, model, part)
    if result.verdict == "illegal":
        _verify_text(history, model, result)


# --- the search alone where its value rule bites: distinct values, many crashes -----------------


@pytest.mark.parametrize("name", DISTINCT_MODELS)
@ZONE_SETTINGS
@given(data=st.data())
def test_search_alone_agrees_with_brute_force_on_distinct_value_histories(
        name: str, data: st.DataObject) -> None:
    """With distinct values the search's rule "a value someone still needs is never
    overwritten for good" (``pruning.ValueWatch.value_lost``) prunes most: the zone algorithm is
    switched off so that the search itself is cross-checked there."""
    events = data.draw(mutated_history(name, ops_max=7, distinct=True))
    history = history_from_events(events)
    model = get_model(SPECS[name].model)
    assume(history.operations)
    verdict = _search_only(history, model)
    event(verdict)
    assert verdict == brute_force_check(history, model), events
