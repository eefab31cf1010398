"""The zone algorithm: each of its three conditions, crashed writes, its precondition, reports."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from lincheck.formats import history_from_events
from lincheck.history import History
from lincheck.models import get_model
from lincheck.report_json import result_to_json
from lincheck.report_text import explain
from lincheck.result import Result
from lincheck.search import check


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


def _check(*events: dict[str, Any], model: str = "register") -> tuple[History, Result]:
    history = history_from_events(events)
    return history, check(history, get_model(model))


def test_a_read_that_returned_before_its_write_was_invoked_is_illegal() -> None:
    _, result = _check(ev(1, "invoke", "read"), ev(1, "ok", "read", 1),
                       ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1))
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("illegal", "zones")
    assert "p0 write 1 was invoked after p1 read → 1 returned" in part.reason


def test_a_read_of_a_value_nobody_wrote_is_illegal() -> None:
    _, result = _check(ev(1, "invoke", "read"), ev(1, "ok", "read", 7))
    assert result.verdict == "illegal"
    assert "neither the initial one nor written" in result.partitions[0].reason


def test_overlapping_forward_zones_are_illegal() -> None:
    # w1 then w2 complete in turn; a read of 1 starts after w2 returned (a stale read).
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
                       ev(0, "invoke", "write", 2), ev(0, "ok", "write", 2),
                       ev(1, "invoke", "read"), ev(1, "ok", "read", 1),
                       ev(2, "invoke", "read"), ev(2, "ok", "read", 2))
    assert result.verdict == "illegal"
    assert "forward zones overlap" in result.partitions[0].reason


def test_a_backward_zone_inside_a_forward_zone_is_illegal() -> None:
    # 1 is written and read later; write 2 runs inside that stretch, and nobody reads it.
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
                       ev(2, "invoke", "write", 2), ev(2, "ok", "write", 2),
                       ev(1, "invoke", "read"), ev(1, "ok", "read", 1))
    assert result.verdict == "illegal"
    assert "backward zone lies inside" in result.partitions[0].reason


def test_a_backward_zone_that_sticks_out_of_forward_zones_is_placed_between_them() -> None:
    # write 3 overlaps the end of 1's zone and the start of 2's: it fits between them.
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
                       ev(1, "invoke", "read"), ev(3, "invoke", "write", 3),
                       ev(1, "ok", "read", 1), ev(3, "ok", "write", 3),
                       ev(0, "invoke", "write", 2), ev(2, "invoke", "read"),
                       ev(0, "ok", "write", 2), ev(2, "ok", "read", 2))
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert len(part.longest) == 5


def test_a_crashed_write_that_was_read_took_effect_after_its_call() -> None:
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "info", "write", 1),
                       ev(1, "invoke", "read"), ev(1, "ok", "read", 1))
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert part.longest == (0, 1)


def test_a_crashed_write_nobody_read_may_never_have_happened() -> None:
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "info", "write", 1),
                       ev(1, "invoke", "read"), ev(1, "ok", "read", None))
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert part.longest == (1,)


def test_a_read_before_a_crashed_write_was_invoked_is_illegal() -> None:
    _, result = _check(ev(1, "invoke", "read"), ev(1, "ok", "read", 1),
                       ev(0, "invoke", "write", 1), ev(0, "info", "write", 1))
    assert result.verdict == "illegal"


@pytest.mark.parametrize(("events", "model"), [
    ((ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
      ev(1, "invoke", "write", 1), ev(1, "ok", "write", 1)), "register"),
    ((ev(0, "invoke", "write", None), ev(0, "ok", "write", None)), "register"),
    ((ev(0, "invoke", "cas", [1, 2]), ev(0, "ok", "cas", False)), "cas-register"),
    ((ev(0, "invoke", "put", "a", key="k"), ev(0, "ok", "put", "a", key="k"),
      ev(0, "invoke", "append", "x", key="k"), ev(0, "ok", "append", "x", key="k")), "kv"),
], ids=["repeated value", "writes the initial value", "observed failed cas",
        "put and append"])
def test_without_distinct_plain_writes_the_search_decides(events: tuple[dict[str, Any], ...],
                                                          model: str) -> None:
    _, result = _check(*events, model=model)
    assert result.verdict == "ok"
    assert [part.decided_by for part in result.partitions] == ["search"]


def test_kv_keys_are_decided_each_by_its_own_path() -> None:
    _, result = _check(ev(0, "invoke", "put", "a", key="k"), ev(0, "ok", "put", "a", key="k"),
                       ev(1, "invoke", "put", "b", key="j"), ev(1, "ok", "put", "b", key="j"),
                       ev(1, "invoke", "append", "x", key="j"),
                       ev(1, "ok", "append", "x", key="j"), model="kv")
    assert sorted(part.decided_by for part in result.partitions) == ["search", "zones"]
    assert result.stats["decided_by"] == {"zones": 1, "search": 1}


def test_reports_say_which_path_decided() -> None:
    history, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1))
    assert "decided by the zone algorithm" in explain(history, result).splitlines()[0]
    out = result_to_json(result, history)
    assert out["partitions"][0]["decided_by"] == "zones"
    assert out["stats"]["decided_by"] == {"zones": 1, "search": 0}
    json.dumps(out)


def _many_writers(processes: int, ops: int, seed: int) -> list[dict[str, Any]]:
    """A register driven by concurrent clients, each op taking effect at a random instant
    inside its interval, every write a new value: linearizable by construction."""
    rng = random.Random(seed)
    value: Any = None
    events: list[dict[str, Any]] = []
    open_ops: dict[int, list[Any]] = {}
    written = 0
    while written < ops or open_ops:
        p = rng.randrange(processes)
        if p not in open_ops:
            if written >= ops:
                continue
            written += 1
            f = "write" if rng.random() < 0.5 else "read"
            arg = written if f == "write" else None
            open_ops[p] = [f, arg, False, None]
            events.append(ev(p, "invoke", f, arg))
        elif not open_ops[p][2]:
            f, arg, _, _ = open_ops[p]
            if f == "write":
                value = arg
            open_ops[p][2:] = [True, arg if f == "write" else value]
        else:
            f, _, _, out = open_ops.pop(p)
            events.append(ev(p, "ok", f, out))
    return events


def test_a_long_busy_history_is_decided_without_search() -> None:
    _, result = _check(*_many_writers(processes=50, ops=5_000, seed=7))
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert len(part.longest) == 5_000


def test_a_chain_of_cas_is_decided_without_search() -> None:
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
                       ev(1, "invoke", "cas", [1, 2]), ev(2, "invoke", "cas", [2, 3]),
                       ev(2, "ok", "cas", [2, 3]), ev(1, "ok", "cas", [1, 2]),
                       ev(3, "invoke", "read"), ev(3, "ok", "read", 3), model="cas-register")
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert part.longest == (0, 1, 2, 3)


def test_two_cas_on_the_same_value_are_illegal() -> None:
    _, result = _check(ev(1, "invoke", "cas", [None, 2]), ev(1, "ok", "cas", [None, 2]),
                       ev(2, "invoke", "cas", [None, 3]), ev(2, "ok", "cas", [None, 3]),
                       model="cas-register")
    assert result.verdict == "illegal"
    assert "both took effect on nil" in result.partitions[0].reason


def test_a_crashed_cas_whose_value_was_read_took_effect() -> None:
    _, result = _check(ev(1, "invoke", "cas", [None, 2]), ev(1, "info", "cas", [None, 2]),
                       ev(2, "invoke", "read"), ev(2, "ok", "read", 2),
                       ev(3, "invoke", "read"), ev(3, "ok", "read", None),
                       model="cas-register")
    assert result.verdict == "illegal"  # nil read after 2 was: nil is never written again
    _, result = _check(ev(1, "invoke", "cas", [None, 2]), ev(1, "info", "cas", [None, 2]),
                       ev(3, "invoke", "read"), ev(3, "ok", "read", None),
                       ev(2, "invoke", "read"), ev(2, "ok", "read", 2),
                       model="cas-register")
    assert (result.verdict, result.partitions[0].decided_by) == ("ok", "zones")


def test_a_crashed_cas_that_took_effect_makes_the_write_it_consumed_take_effect() -> None:
    _, result = _check(ev(0, "invoke", "write", 1), ev(0, "info", "write", 1),
                       ev(1, "invoke", "cas", [1, 2]), ev(1, "info", "cas", [1, 2]),
                       ev(2, "invoke", "read"), ev(2, "ok", "read", 2), model="cas-register")
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert part.longest == (0, 1, 2)


@pytest.mark.parametrize("pairs", [[[0, 0]], [[1, 2], [2, 1]]], ids=["itself", "a cycle"])
def test_cas_that_expect_only_what_they_write_are_illegal(pairs: list[list[int]]) -> None:
    events = [e for p, pair in enumerate(pairs)
              for e in (ev(p, "invoke", "cas", pair), ev(p, "ok", "cas", pair))]
    _, result = _check(*events, model="cas-register")
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("illegal", "zones")
    assert "which only a cas that depends on it writes" in part.reason


def test_appends_of_distinct_elements_are_decided_without_search() -> None:
    a = {"key": "k"}
    _, result = _check(ev(0, "invoke", "append", 1, **a), ev(1, "invoke", "append", 2, **a),
                       ev(0, "ok", "append", 1, **a), ev(1, "info", "append", 2, **a),
                       ev(2, "invoke", "get", **a), ev(2, "ok", "get", [2, 1], **a),
                       ev(3, "invoke", "append", 3, **a), ev(3, "ok", "append", 3, **a),
                       model="kv")
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("ok", "zones")
    assert len(part.longest) == 4


def test_a_read_of_appends_in_another_order_than_a_later_read_is_illegal() -> None:
    a = {"key": "k"}
    _, result = _check(ev(0, "invoke", "append", 1, **a), ev(1, "invoke", "append", 2, **a),
                       ev(0, "ok", "append", 1, **a), ev(1, "ok", "append", 2, **a),
                       ev(2, "invoke", "get", **a), ev(2, "ok", "get", [1], **a),
                       ev(2, "invoke", "get", **a), ev(2, "ok", "get", [2, 1], **a),
                       model="kv")
    (part,) = result.partitions
    assert (result.verdict, part.decided_by) == ("illegal", "zones")


def test_appended_strings_one_a_prefix_of_another_are_left_to_the_search() -> None:
    # "x" + "xy" and "xy" + "x" differ, but "xx" + "y" shows why a split may be ambiguous.
    _, result = _check(ev(0, "invoke", "append", "x", key="k"),
                       ev(0, "ok", "append", "x", key="k"),
                       ev(0, "invoke", "append", "xy", key="k"),
                       ev(0, "ok", "append", "xy", key="k"), model="kv")
    assert result.partitions[0].decided_by == "search"


def test_appended_strings_none_a_prefix_of_another_are_decided_without_search() -> None:
    a = {"key": "k"}
    _, result = _check(ev(0, "invoke", "append", "x 1 y", **a),
                       ev(1, "invoke", "append", "x 2 y", **a),
                       ev(0, "ok", "append", "x 1 y", **a), ev(1, "ok", "append", "x 2 y", **a),
                       ev(2, "invoke", "get", **a), ev(2, "ok", "get", "x 2 yx 1 y", **a),
                       model="kv")
    assert (result.verdict, result.partitions[0].decided_by) == ("ok", "zones")
    _, result = _check(ev(0, "invoke", "append", "x 1 y", **a),
                       ev(0, "ok", "append", "x 1 y", **a),
                       ev(2, "invoke", "get", **a), ev(2, "ok", "get", "x 1 yx 1 y", **a),
                       model="kv")
    assert (result.verdict, result.partitions[0].decided_by) == ("illegal", "zones")
    assert "not the initial value followed by distinct appended strings" in (
        result.partitions[0].reason)


def test_the_text_of_a_zone_verdict_names_the_zone_algorithm_as_judge() -> None:
    history, result = _check(ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
                             ev(0, "invoke", "write", 2), ev(0, "ok", "write", 2),
                             ev(1, "invoke", "read"), ev(1, "ok", "read", 1))
    text = explain(history, result)
    assert "Zone algorithm: value 2 can be neither before nor after value 1" in text
    assert "The zone algorithm rules out every order" in text
    assert "The search ruled out" not in text
