"""The verdict as JSON for machines: ``result_to_json(result, history=None) -> dict``.

Schema ``lincheck.result/1`` (stable: fields may be added, never renamed or removed)::

    {
      "schema": "lincheck.result/1",
      "verdict": "ok" | "illegal" | "unknown",
      "linearizable": true | false | null,    # null when unknown
      "model": str,
      "seconds": float,                       # time spent checking
      "reason": str,                          # "" or why (e.g. the deadline for unknown)
      "source": str | null,                   # the history's file, when a history is given
      "operations": int | null,               # client operations checked (null without history)
      "nemesis_events": int | null,
      "stats": {str: JSON},                   # the search's counters, as it reports them
      "partitions": [                         # illegal first, then unknown, then ok
        {
          "key": JSON | null,                 # null when the history was checked whole
          "verdict": "ok" | "illegal" | "unknown",
          "operations": int,                  # operations in this partition
          "linearized": int,                  # length of the longest linearization found
          "seconds": float,
          "decided_by": "search" | "zones",   # zones: distinct-value registers, no search
          # only when verdict != "ok" (an ok partition's witness is the whole partition):
          "longest": [int],                   # operation ids, in linearization order
          "states": [str],                    # model state after each of "longest"
          "unplaced": [int]                   # ids that could not be placed next; first = culprit
        }
      ],
      "failure": null | {                     # the first illegal partition, spelled out
        "key": JSON | null,
        "state": str | null,                  # state after the longest linearization
        "last_linearized": [Op],              # up to 10, each Op with "state" after it
        "unplaced": [Op]                      # up to 10
      }
    }

``Op`` (only with a history): ``{"id", "process", "f", "input", "output", "status" ("ok" |
"info"), "key", "call", "ret", "call_line", "ret_line", "call_time", "ret_time"}``; ``call``
and ``ret`` are event indexes, ``ret`` is null for an operation of unknown outcome. Values
that JSON cannot carry (tuples, sets, objects) are converted: tuples and sets to lists, other
objects to their ``repr``; non-finite floats to strings.
"""

from __future__ import annotations

import math

from .history import History, Operation
from .report_text import ordered_partitions, unplaced_of
from .result import PartitionResult, Result

# mypy reads any TYPE_CHECKING as true; at run time typing is not imported (start-up time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA = "lincheck.result/1"
failure_ops_shown_max = 10


def json_safe(value: Any, depth_max: int = 32) -> Any:
    """``value`` converted to plain JSON types (depth-bounded against hostile nesting)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth_max <= 0:
        return "…"  # not repr: it would recurse as deep as the value does
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth_max - 1) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(item, depth_max - 1) for item in value), key=repr)
    if isinstance(value, dict):
        return {
            (k if isinstance(k, str) else repr(k)): json_safe(v, depth_max - 1)
            for k, v in value.items()
        }
    return repr(value)


def op_to_json(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "process": json_safe(op.process),
        "f": op.f,
        "input": json_safe(op.input),
        "output": json_safe(op.output),
        "status": op.status,
        "key": json_safe(op.key),
        "call": op.call,
        "ret": op.ret,
        "call_line": op.call_line,
        "ret_line": op.ret_line,
        "call_time": json_safe(op.call_time),
        "ret_time": json_safe(op.ret_time),
    }


def _partition_to_json(part: PartitionResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": json_safe(part.key),
        "verdict": part.verdict,
        "operations": len(part.operation_ids),
        "linearized": len(part.longest),
        "seconds": part.seconds,
        "decided_by": part.decided_by,
    }
    if part.verdict != "ok":
        out["longest"] = list(part.longest)
        out["states"] = list(part.states)
        out["unplaced"] = unplaced_of(part)
    return out


def _failure_to_json(part: PartitionResult, history: History | None) -> dict[str, Any]:
    ops = {op.id: op for op in history.operations} if history is not None else {}
    done = len(part.longest)
    last: list[dict[str, Any]] = []
    for position in range(max(done - failure_ops_shown_max, 0), done):
        op_id = part.longest[position]
        entry: dict[str, Any] = op_to_json(ops[op_id]) if op_id in ops else {"id": op_id}
        entry["state"] = part.states[position] if position < len(part.states) else None
        last.append(entry)
    unplaced = [
        op_to_json(ops[op_id]) if op_id in ops else {"id": op_id}
        for op_id in unplaced_of(part)[:failure_ops_shown_max]
    ]
    return {
        "key": json_safe(part.key),
        "state": part.states[done - 1] if done and done <= len(part.states) else None,
        "last_linearized": last,
        "unplaced": unplaced,
    }


def result_to_json(result: Result, history: History | None = None) -> dict[str, Any]:
    """The result as a JSON-ready dict following schema ``lincheck.result/1`` (see above)."""
    failing = result.first_failure()
    return {
        "schema": SCHEMA,
        "verdict": result.verdict,
        "linearizable": {"ok": True, "illegal": False}.get(result.verdict),
        "model": result.model,
        "seconds": result.seconds,
        "reason": result.reason,
        "source": history.source if history is not None else None,
        "operations": len(history.operations) if history is not None else None,
        "nemesis_events": len(history.nemesis) if history is not None else None,
        "stats": json_safe(result.stats),
        "partitions": [_partition_to_json(part) for part in ordered_partitions(result)],
        "failure": _failure_to_json(failing, history) if failing is not None else None,
    }
