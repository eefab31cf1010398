"""The wording every report shares (terminal, JSON, HTML): values, operations, processes,
keys, times and verdicts in a few characters each, and the order partitions are shown in.

Invariants: every text these functions return is one line (a value never breaks a report's
layout) and at most its ``chars_max`` long; ``describe_op`` never raises, whatever a model's
own describer does; ``unplaced_of`` never names an operation the linearization holds.
"""

from __future__ import annotations

import math

from .history import Operation
from .result import PartitionResult, Result

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Protocol

# How long a value or a state may be on one line, in characters.
value_chars_max = 60
state_chars_max = 80


if TYPE_CHECKING:
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
    elif type(value) is int:  # the common cases, without importing json for them
        text = str(value)
    elif type(value) in (list, tuple) and all(type(v) is int for v in value):
        text = "[" + ", ".join(map(str, value)) + "]"  # as json.dumps writes it
    else:
        import json  # here: a per-file run that prints no other value skips its import

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


def clip_middle(text: str, chars_max: int = state_chars_max) -> str:
    """``text`` on one line, its middle cut out to fit ``chars_max`` characters: a state that
    grows (appends, adds) changes at its end, which plain clipping would hide."""
    text = " ".join(str(text).split())
    if len(text) <= chars_max:
        return text
    head = max(chars_max // 4, 1)
    tail = max(chars_max - head - 1, 1)
    return text[:head] + "…" + text[-tail:]


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
