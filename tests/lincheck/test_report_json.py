"""The JSON result follows schema lincheck.result/1 and survives json.dumps for any value."""

from __future__ import annotations

import json
from typing import Any

from lincheck.formats import history_from_events
from lincheck.report_json import SCHEMA, json_safe, result_to_json
from lincheck.result import PartitionResult, Result


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


def test_illegal_result_spells_out_the_failure() -> None:
    history = history_from_events(
        [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1), ev(1, "invoke", "read"),
         ev(1, "ok", "read", 2)],
        source="h.jsonl",
    )
    bad = PartitionResult(("k", 1), "illegal", (0, 1), longest=(0,), states=("1",), unplaced=(1,))
    good = PartitionResult("z", "ok", (), longest=(), states=())
    doc = result_to_json(Result("illegal", "register", (good, bad), seconds=0.5), history)
    json.dumps(doc)  # plain JSON types only
    assert doc["schema"] == SCHEMA
    assert (doc["verdict"], doc["linearizable"], doc["source"], doc["operations"]) == (
        "illegal", False, "h.jsonl", 2)
    assert [p["verdict"] for p in doc["partitions"]] == ["illegal", "ok"]
    assert doc["partitions"][0]["key"] == ["k", 1]
    assert doc["partitions"][0]["unplaced"] == [1]
    assert "longest" not in doc["partitions"][1]  # an ok partition reports counts only
    failure = doc["failure"]
    assert failure["state"] == "1"
    assert failure["last_linearized"][0]["state"] == "1"
    assert failure["unplaced"][0] == {
        "id": 1, "process": 1, "f": "read", "input": None, "output": 2, "status": "ok",
        "key": None, "call": 2, "ret": 3, "call_line": 3, "ret_line": 4, "call_time": None,
        "ret_time": None,
    }


def test_without_history_and_unknown_verdict() -> None:
    doc = result_to_json(Result("unknown", "kv", (), reason="deadline"))
    assert doc["linearizable"] is None and doc["operations"] is None
    assert doc["failure"] is None and doc["reason"] == "deadline"


def test_json_safe_converts_what_json_cannot_carry() -> None:
    value = {1: (frozenset({3, 2}), float("inf")), "o": object}
    safe = json_safe(value)
    json.dumps(safe, allow_nan=False)
    assert safe["1"] == [[2, 3], "inf"]
    deep: Any = []
    for _ in range(1000):
        deep = [deep]
    json.dumps(json_safe(deep))  # hostile nesting is cut, not a RecursionError
