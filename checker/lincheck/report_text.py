"""A short explanation of a verdict for the terminal, and the op/value wording the reports share.

``explain(history, result)`` answers, in a dozen lines: what the verdict is, how long the check
took, and for a history that is not linearizable which partition (key) failed, the last few
operations of the longest linearization with the model state after each, the operation that
could not be placed next (process, source lines) and why: from the last state, its outcome is
not one the model allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Protocol

from .history import History, Operation
from .result import PartitionResult, Result

# How much of a failure the terminal shows: enough to see the cause, short enough to read.
last_steps_shown_max = 6
unplaced_shown_max = 3
other_partitions_named_max = 5
value_chars_max = 60
state_chars_max = 80


class DescribesOps(Protocol):
    """The part of a model the reports use, when a caller passes one."""

    def describe_op(self, op: Operation) -> str: ...


def format_value(value: Any, chars_max: int = value_chars_max) -> str:
    """A compact, one-line rendering of a history value (JSON-like; ``nil`` for None)."""
    if value is None:
        text = "nil"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=_json_fallback)
        except (TypeError, ValueError):
            text = _safe_repr(value)
        except RecursionError:
            text = "<deeply nested value>"
    text = " ".join(text.split())  # a value must never break the one-line layout
    if len(text) > chars_max:
        text = text[: max(chars_max - 1, 1)] + "…"
    return text


def clip(text: str, chars_max: int = state_chars_max) -> str:
    """``text`` on one line, cut to ``chars_max`` characters (an ellipsis marks the cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= chars_max else text[: max(chars_max - 1, 1)] + "…"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except RecursionError:
        return "<deeply nested value>"


def _json_fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return _safe_repr(value)


def describe_op(op: Operation, model: DescribesOps | None = None) -> str:
    """``f(input) → output`` (``→ ?`` when the outcome is unknown), or the model's own wording."""
    if model is not None and not _is_default_describer(model):
        try:
            text = model.describe_op(op)
        except Exception:  # a model's describer must not hide the verdict it helps explain
            text = ""
        if text:
            return " ".join(str(text).split())
    call = f"{op.f}({format_value(op.input)})" if op.input is not None else op.f
    if op.status == "info":
        return f"{call} → ?"
    if op.output is None or op.output == op.input:
        return call  # an echo of the input (a write's ack) says nothing new
    return f"{call} → {format_value(op.output)}"


def _is_default_describer(model: DescribesOps) -> bool:
    """True when the model words operations the generic way, which names the process too:
    the reports show the process in a column of its own and word the rest themselves."""
    from .models import describe_operation

    return getattr(model, "describe_op", None) is describe_operation


def describe_process(process: int | str) -> str:
    return f"process {process}"


def describe_lines(op: Operation) -> str:
    """Where the operation is in the source file, e.g. ``lines 12–15`` or ``line 9, no reply``."""
    if op.call_line is None:
        return ""
    if op.ret_line is None:
        return f"line {op.call_line}, outcome unknown"
    if op.ret_line == op.call_line:
        return f"line {op.call_line}"
    return f"lines {op.call_line}–{op.ret_line}"


def format_seconds(seconds: float) -> str:
    """``1.23 s``, ``45.6 ms``, ``0.31 ms``: enough digits to compare runs, no more."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.2f} ms"


def describe_key(key: Any) -> str:
    return "the whole history" if key is None else f"key {format_value(key)}"


def verdict_phrase(verdict: str) -> str:
    return {
        "ok": "linearizable",
        "illegal": "NOT LINEARIZABLE",
        "unknown": "UNKNOWN (not decided)",
    }.get(verdict, verdict)


def ordered_partitions(result: Result) -> list[PartitionResult]:
    """Partitions in the order a person wants them: illegal, then unknown, then ok; stable."""
    rank = {"illegal": 0, "unknown": 1, "ok": 2}
    return sorted(result.partitions, key=lambda part: rank.get(part.verdict, 3))


def unplaced_of(part: PartitionResult) -> list[int]:
    """The partition's unplaced operation ids, without any that the linearization holds.

    The search promises the two are disjoint; a person reading a report must never be told
    that an operation it shows as linearized is the one that could not be placed.
    """
    placed = set(part.longest)
    return [op_id for op_id in part.unplaced if op_id not in placed]


def _ops_by_id(history: History) -> dict[int, Operation]:
    return {op.id: op for op in history.operations}


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


def _header(history: History, result: Result) -> str:
    processes = {op.process for op in history.operations}
    parts = [
        f"model {result.model}",
        f"{_count(len(history.operations), 'operation')} "
        f"of {_count(len(processes), 'process', 'processes')}",
    ]
    if len(result.partitions) > 1:
        parts.append(_count(len(result.partitions), "partition"))
    if history.nemesis:
        parts.append(_count(len(history.nemesis), "nemesis event"))
    parts.append(f"checked in {format_seconds(result.seconds)}")
    return f"{verdict_phrase(result.verdict)}: {history.source} ({', '.join(parts)})"


def _op_line(op: Operation, model: DescribesOps | None, prefix: str) -> str:
    where = describe_lines(op)
    where = f"  [{where}]" if where else ""
    return f"{prefix}{describe_process(op.process):<12} {describe_op(op, model)}{where}"


def _failure_lines(
    part: PartitionResult, ops: dict[int, Operation], model: DescribesOps | None
) -> list[str]:
    total = len(part.operation_ids)
    done = len(part.longest)
    lines = [
        f"In {describe_key(part.key)}: {done:,} of {total:,} operations linearized, "
        "then no remaining operation could be placed."
    ]
    start = max(done - last_steps_shown_max, 0)
    if done:
        lines.append("  Last linearized operations, with the model state after each:")
        if start:
            lines.append(f"    … {start:,} earlier")
        for position in range(start, done):
            op = ops.get(part.longest[position])
            state = clip(part.states[position]) if position < len(part.states) else "?"
            text = _op_line(op, model, "") if op else f"operation #{part.longest[position]}"
            lines.append(f"    {position + 1:>4}. {text}  ⇒ state {state}")
    state_now = clip(part.states[done - 1]) if done and done <= len(part.states) else None
    if not done:
        state_now = _initial_state(model)
    unplaced = [ops[i] for i in unplaced_of(part) if i in ops]
    if unplaced:
        first = unplaced[0]
        lines.append("  Could not be placed next:")
        lines.append(_op_line(first, model, "    >>>   "))
        for op in unplaced[1:unplaced_shown_max]:
            lines.append(_op_line(op, model, "          "))
        if len(unplaced) > unplaced_shown_max:
            lines.append(f"          … and {len(unplaced) - unplaced_shown_max:,} more")
        lines.append("  Why: " + _why(first, state_now, model))
    return lines


def _initial_state(model: Any) -> str | None:
    """The model's initial state in words, when a model with ``init``/``describe_state`` is
    given (for a partitioned model this is the state every part starts from)."""
    try:
        return f"{clip(model.describe_state(model.init()))} (initial)"
    except Exception:  # no model, or one without these optional parts: say "initial" plainly
        return None


def _why(op: Operation, state: str | None, model: DescribesOps | None) -> str:
    where = f"from state {state}" if state is not None else "from the initial state"
    what = describe_op(op, model)
    if op.f in ("read", "get", "r") and op.status == "ok":
        # The common case deserves plain words: the read saw a value the object did not hold.
        seen = format_value(op.output)
        was = state if state is not None else "the initial state"
        return (
            f"{op.f} returned {seen} but the state was {was}; "
            "no other order of the concurrent operations got further."
        )
    return f"{where}, the model does not allow {what}; no other order got further."


def explain(history: History, result: Result, *, model: DescribesOps | None = None) -> str:
    """A short explanation of ``result`` for a terminal (no trailing newline).

    ``model`` is optional: when given, its ``describe_op`` words the operations.
    """
    lines = [_header(history, result)]
    if result.reason:
        lines.append(f"Reason: {result.reason}")
    ops = _ops_by_id(history)
    if result.verdict == "illegal":
        failing = [part for part in result.partitions if part.verdict == "illegal"]
        if failing:
            lines.extend(_failure_lines(failing[0], ops, model))
        others = failing[1:]
        if others:
            lines.append(
                f"{_count(len(others), 'other partition')} also not linearizable: "
                + _name_keys(part.key for part in others)
            )
    elif result.verdict == "unknown":
        undecided = [part for part in result.partitions if part.verdict == "unknown"]
        decided = len(result.partitions) - len(undecided)
        if result.partitions:
            lines.append(
                f"{decided:,} of {len(result.partitions):,} partitions decided (all linearizable);"
                f" undecided: {_name_keys(part.key for part in undecided)}"
            )
        lines.append("Raise --timeout (or timeout=) to let the search finish.")
    return "\n".join(lines)


def _name_keys(keys: Iterable[Any]) -> str:
    names: list[str] = []
    rest = 0
    for key in keys:
        if len(names) < other_partitions_named_max:
            names.append(describe_key(key))
        else:
            rest += 1
    if rest:
        names.append(f"and {rest:,} more")
    return ", ".join(names) if names else "none"
