"""Built-in models step as their sequential objects do, and the registry names them."""

from __future__ import annotations

from typing import Any

import pytest
from lincheck.history import Operation
from lincheck.models import INCONSISTENT, MODELS, Model, get_model


def op(f: str, input: Any = None, output: Any = None, status: str = "ok",
       key: Any = None) -> Operation:
    return Operation(id=0, process=0, f=f, input=input, output=output, call=0,
                     ret=1 if status == "ok" else None, status=status,  # type: ignore[arg-type]
                     key=key)


def run(model: Model, *ops: Operation) -> Any:
    state = model.init()
    for o in ops:
        state = model.step(state, o)
        if state is INCONSISTENT:
            return state
    return state


def test_registry_lists_every_built_in_model() -> None:
    assert set(MODELS) == {"register", "cas-register", "kv", "multi-register", "mutex", "set",
                           "unordered-queue", "fifo-queue"}


def test_unknown_model_name_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'stack' \(known: cas-register"):
        get_model("stack")


def test_inconsistent_is_a_value_not_an_exception() -> None:
    assert run(get_model("register"), op("read", None, 5)) is INCONSISTENT
    assert repr(INCONSISTENT) == "INCONSISTENT"


def test_register_reads_the_last_write_and_its_initial_value() -> None:
    m = get_model("register", 7)
    assert run(m, op("read", None, 7)) == 7
    assert run(m, op("write", 3, 3), op("read", None, 3)) == 3
    assert run(m, op("write", 3, 3), op("read", None, 7)) is INCONSISTENT
    assert run(m, op("read", None, None, status="info")) == 7


def test_cas_register_swaps_only_on_match_and_checks_observed_failures() -> None:
    m = get_model("cas-register", 1)
    assert run(m, op("cas", [1, 2], [1, 2])) == 2
    assert run(m, op("cas", [0, 2], [0, 2])) is INCONSISTENT
    assert run(m, op("cas", [0, 2], False)) == 1  # observed failure, consistent
    assert run(m, op("cas", [1, 2], False)) is INCONSISTENT
    assert m.read_only(op("cas", [0, 2], False)) and not m.read_only(op("cas", [0, 2], True))


def test_kv_strings_append_per_key_and_start_empty() -> None:
    m = get_model("kv")
    state = run(m, op("append", "x", key="a"), op("append", "y", key="a"),
                op("put", "z", key="b"), op("get", None, "xy", key="a"))
    assert dict(state) == {"a": "xy", "b": "z"}
    assert run(m, op("get", None, "", key="c")) == frozenset()
    assert run(m, op("get", None, "x", key="c")) is INCONSISTENT
    assert run(m, op("put", 1, key="a"), op("delete", key="a"),
               op("get", None, "", key="a")) is not INCONSISTENT


def test_kv_initial_values_per_key_and_cas() -> None:
    m = get_model("kv", {"a": 5})
    assert run(m, op("get", None, 5, key="a"), op("get", None, "", key="b")) is not INCONSISTENT
    assert run(m, op("cas", [5, 6], True, key="a"), op("get", None, 6, key="a")) \
        is not INCONSISTENT
    assert run(m, op("cas", [4, 6], True, key="a")) is INCONSISTENT


def test_kv_partitions_by_key_with_a_simpler_per_key_model() -> None:
    m = get_model("kv")
    ops = [op("put", 1, key="a"), op("put", 2, key="b"), op("get", None, 1, key="a")]
    parts = dict(m.partition(ops)) if m.partition else {}
    assert {k: len(v) for k, v in parts.items()} == {"a": 2, "b": 1}
    assert m.part_model is not None
    per_key = m.part_model("a")
    assert run(per_key, op("append", "x", key="a"), op("get", None, "x", key="a")) == "x"


def test_multi_register_applies_transactions_atomically() -> None:
    m = get_model("multi-register")
    state = run(m, op("txn", [["w", "x", 1], ["w", "y", 2]], [["w", "x", 1], ["w", "y", 2]]),
                op("txn", [["r", "x", None], ["r", "y", None]], [["r", "x", 1], ["r", "y", 2]]))
    assert dict(state) == {"x": 1, "y": 2}
    assert run(m, op("txn", [["r", "x", None]], [["r", "x", 3]])) is INCONSISTENT
    assert m.check_op(op("txn", [["q", "x", 1]])) is not None


def test_mutex_cannot_be_acquired_twice_or_released_when_free() -> None:
    m = get_model("mutex")
    assert run(m, op("acquire"), op("release"), op("acquire")) is True
    assert run(m, op("acquire"), op("acquire")) is INCONSISTENT
    assert run(m, op("release")) is INCONSISTENT


def test_set_reads_see_exactly_the_added_elements() -> None:
    m = get_model("set")
    assert run(m, op("add", 1), op("add", 2), op("read", None, [2, 1])) == frozenset({1, 2})
    assert run(m, op("add", 1), op("read", None, [])) is INCONSISTENT


def test_fifo_queue_dequeues_oldest_first_and_observes_empty() -> None:
    m = get_model("fifo-queue")
    assert run(m, op("enqueue", 1), op("enqueue", 2), op("dequeue", None, 1)) == (2,)
    assert run(m, op("enqueue", 1), op("enqueue", 2), op("dequeue", None, 2)) is INCONSISTENT
    assert run(m, op("dequeue", None, None)) == ()


def test_unordered_queue_dequeues_any_element_and_branches_when_unknown() -> None:
    m = get_model("unordered-queue")
    assert run(m, op("enqueue", 1), op("enqueue", 2), op("dequeue", None, 2)) == (1,)
    assert m.step_unknown is not None
    after = list(m.step_unknown((1, 2), op("dequeue", status="info")))
    assert sorted(after) == [(1,), (2,)]


def test_initial_value_of_a_collection_model_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="JSON array"):
        get_model("set", 3)
    assert get_model("fifo-queue", [1, 2]).init() == (1, 2)


def test_describe_functions_give_short_text() -> None:
    m = get_model("cas-register")
    assert m.describe_op(op("cas", [1, 2], False)) == "p0 cas [1 2] → False"
    assert m.describe_op(op("write", 3, status="info")) == "p0 write 3 → ?"
    assert m.describe_state(None) == "nil"


def test_user_defined_model_is_checked_by_the_search() -> None:
    from lincheck.formats import history_from_events
    from lincheck.search import check

    def counter_step(state: int, o: Operation) -> Any:
        if o.f == "add":
            return state + o.input
        return state if o.output == state else INCONSISTENT

    counter = Model("counter", lambda: 0, counter_step, frozenset({"add", "read"}))
    events = [
        {"process": 0, "type": "invoke", "f": "add", "value": 2},
        {"process": 1, "type": "invoke", "f": "read"},
        {"process": 1, "type": "ok", "f": "read", "value": 2},
        {"process": 0, "type": "ok", "f": "add", "value": 2},
        {"process": 1, "type": "invoke", "f": "read"},
        {"process": 1, "type": "ok", "f": "read", "value": 3},
    ]
    assert check(history_from_events(events[:4]), counter).verdict == "ok"
    assert check(history_from_events(events), counter).verdict == "illegal"
