"""A short explanation of a verdict for the terminal (``lincheck.report_words`` holds the
op/value wording it shares with the other reports).

``explain(history, result)`` answers, in a dozen lines: what the verdict is, how long the check
took, and for a history that is not linearizable which partition (key) failed, the last few
operations of the longest partial linearization with the model state after each, and where it
is stuck: the operations that could go next (not linearized, invoked before every completed
operation left out had returned) and for each why it cannot, in the model's terms ("read
returned 2 but the state was 3"). Every such claim is one the model makes in that state (the
search computes them; ``lincheck.failure`` documents the rules).

The operation marked ``>>>`` (and highlighted in the HTML report) is the culprit: of the
completed operations left out, the one that returned first. Any order that extends the
partial linearization must place it before every operation invoked after it returned, and
the model rejects it there. The other candidates are listed with their own reasons; the
remaining operations were invoked after the culprit returned, so they cannot go before it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .history import History, Operation
from .report_words import (
    clip,
    clip_middle,
    describe_key,
    describe_lines,
    describe_op,
    describe_process,
    format_seconds,
    format_value,
    ordered_partitions,
    state_chars_max,
    unplaced_of,
    value_chars_max,
    verdict_phrase,
)
from .result import Candidate, PartitionResult, Result

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    from .report_words import DescribesOps as DescribesOps

# The shared wording (lincheck.report_words) is still reachable from here, where the reports
# and their callers have always found it.
__all__ = [
    "candidate_reason", "clip", "clip_middle", "decided_by_phrase", "describe_key",
    "describe_lines", "describe_op", "describe_process", "explain", "final_state",
    "format_seconds", "format_value", "ordered_partitions", "state_chars_max", "stuck_reasons",
    "unplaced_of", "value_chars_max", "verdict_phrase",
]

# How much of a failure the terminal shows: enough to see the cause, short enough to read.
last_steps_shown_max = 6
unplaced_shown_max = 3
candidates_shown_max = 6
states_in_window_max = 5
window_state_chars_max = 40
difference_chars_max = 24
state_literal_chars_max = 1_000_000  # parsing a state's text back costs about its length
other_partitions_named_max = 5


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
    decided = decided_by_phrase(result)
    if decided:
        parts.append(decided)
    return f"{verdict_phrase(result.verdict)}: {history.source} ({', '.join(parts)})"


def decided_by_phrase(result: Result) -> str:
    """Which path decided the partitions that were decided: the zone algorithm (registers
    with distinct written values, no search), the search, or how many each."""
    decided = [part for part in result.partitions if part.verdict != "unknown"]
    zones = sum(1 for part in decided if part.decided_by == "zones")
    if not decided:
        return ""
    if zones == len(decided):
        return "decided by the zone algorithm, without search"
    if zones == 0:
        return "decided by search"
    return (f"decided by the zone algorithm ({_count(zones, 'partition')}) and by search "
            f"({_count(len(decided) - zones, 'partition')})")


def _op_line(op: Operation, model: DescribesOps | None, prefix: str) -> str:
    where = describe_lines(op)
    where = f"  [{where}]" if where else ""
    return f"{prefix}{describe_process(op.process):<12} {describe_op(op, model)}{where}"


def _failure_lines(
    part: PartitionResult, ops: dict[int, Operation], model: DescribesOps | None,
    model_name: str = "",
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
            state = clip_middle(part.states[position]) if position < len(part.states) else "?"
            text = _op_line(op, model, "") if op else f"operation #{part.longest[position]}"
            lines.append(f"    {position + 1:>4}. {text}  ⇒ state {state}")
    state_full = final_state(part, model)
    state_now = clip(state_full) if state_full is not None else None
    unplaced = [ops[i] for i in unplaced_of(part) if i in ops]
    if part.candidates and unplaced and part.candidates[0].op_id == unplaced[0].id:
        lines.extend(_stuck_lines(part, ops, model, model_name, state_full))
    elif unplaced:
        first = unplaced[0]
        lines.append("  Could not be placed next:")
        lines.append(_op_line(first, model, "    >>>   "))
        for op in unplaced[1:unplaced_shown_max]:
            lines.append(_op_line(op, model, "          "))
        if len(unplaced) > unplaced_shown_max:
            lines.append(f"          … and {len(unplaced) - unplaced_shown_max:,} more")
        lines.append("  Why: " + _why(first, state_now, model))
    return lines


def final_state(part: PartitionResult, model: Any = None) -> str | None:
    """The state after ``part.longest`` as text (unclipped); for an empty one the model's
    initial state marked "(initial)", or None when no model is given."""
    done = len(part.longest)
    if done and done <= len(part.states):
        return part.states[done - 1]
    return _initial_state(model) if not done else None


def stuck_reasons(
    part: PartitionResult,
    ops: dict[int, Operation],
    model: DescribesOps | None = None,
    model_name: str = "",
) -> dict[int, str]:
    """Op id -> why it could not go next after ``part.longest``, for each of the partition's
    candidates (the culprit first); empty when the result carries none (a hand-made one)."""
    unplaced = unplaced_of(part)
    if not part.candidates or not unplaced or part.candidates[0].op_id != unplaced[0]:
        return {}
    state = final_state(part, model)
    return {
        cand.op_id: candidate_reason(ops[cand.op_id], cand, part, model, model_name, state, ops)
        for cand in part.candidates
        if cand.op_id in ops
    }


def _stuck_lines(
    part: PartitionResult,
    ops: dict[int, Operation],
    model: DescribesOps | None,
    model_name: str,
    state: str | None,
) -> list[str]:
    """Where the partial linearization is stuck: the candidates, each with the model's reason,
    and what that means (the search's own findings, see ``PartitionResult.candidates``)."""
    shown_state = clip_middle(_state_text(state)) if state is not None else "initial"
    lines = [f"  Could not be placed next, in state {shown_state} (each operation that could "
             "go next, and why not):"]
    cands = [c for c in part.candidates if c.op_id in ops]
    for k, cand in enumerate(cands[:candidates_shown_max]):
        lines.append(_op_line(ops[cand.op_id], model, "    >>>   " if k == 0 else "          "))
        if k:  # the culprit's reason is the "Why" below
            reason = candidate_reason(ops[cand.op_id], cand, part, model, model_name, state,
                                      ops)
            lines.append(f"            {reason}")
    if len(cands) > candidates_shown_max:
        lines.append(f"          … and {len(cands) - candidates_shown_max:,} more candidates")
    culprit = ops[cands[0].op_id]
    candidate_ids = {c.op_id for c in cands}
    later = [i for i in unplaced_of(part) if i not in candidate_ids]
    if later:
        lines.append(
            f"  Must come later: {_count(len(later), 'more completed operation')}, invoked "
            f"after the culprit returned{_returned_where(culprit)}."
        )
    lines.append("  Why: " + _stuck_why(part, cands, culprit, model, model_name, state, ops))
    extended = len(part.longest) - part.longest_searched
    if 0 < part.longest_searched < len(part.longest):
        added = "the last step was" if extended == 1 else f"the last {extended:,} steps were"
        lines.append(
            f"  (The search itself reached step {part.longest_searched:,}; {added} added "
            "after it, greedily, until nothing more fits.)"
        )
    return lines


def _returned_where(op: Operation) -> str:
    if op.ret_line is not None:
        return f" (line {op.ret_line})"
    return f" (event #{op.ret})" if op.ret is not None else ""


def _stuck_why(
    part: PartitionResult,
    cands: list[Candidate],
    culprit: Operation,
    model: DescribesOps | None,
    model_name: str,
    state: str | None,
    ops: dict[int, Operation],
) -> str:
    first = candidate_reason(culprit, cands[0], part, model, model_name, state, ops)
    others = len(cands) - 1
    if others == 0:
        before = "nothing else could go before it (all the rest was invoked after it returned)"
    elif all(c.outcome == "rejected" for c in cands[1:]):
        before = (f"the {others:,} other operation{'s' if others > 1 else ''} that could go "
                  f"before it {'are' if others > 1 else 'is'} rejected too")
    else:
        before = "none of the others that could go before it helps (see above)"
    # Who proved that no order works: the search, or the zone algorithm's conditions (the
    # prefix shown then comes from a search that may have been stopped early).
    judge = ("The zone algorithm rules out every order (see above)" if part.decided_by == "zones"
             else "The search ruled out every other order too")
    return f"{first}; {before}. {judge}, so the history has no linearization."


def candidate_reason(
    op: Operation,
    cand: Candidate,
    part: PartitionResult,
    model: DescribesOps | None = None,
    model_name: str = "",
    state: str | None = None,
    ops_of_steps: dict[int, Operation] | None = None,
) -> str:
    """Why ``op`` cannot go next after ``part.longest`` (whose final state is ``state``; None
    for the initial one), from the model's answer ``cand``. For a rejected read-only
    candidate that could also have gone earlier, it names the states it would have met."""
    was = state if state is not None else "the initial state"
    if cand.outcome == "unhelpful":
        return (f"outcome unknown: it may take effect here (state "
                f"{clip_middle(cand.state_after)}), "
                "but then no completed operation fits either")
    if cand.outcome == "allowed":
        return (f"the model allows it here (state would become "
                f"{clip_middle(cand.state_after)}); "
                "the partial linearization was not extended further (step limit)")
    text = _rejection(op, was, model, model_name)
    done = len(part.longest)
    if cand.read_only and 0 <= cand.after_step < done <= len(part.states):
        earlier = [clip_middle(_state_text(s), window_state_chars_max)
                   for s in part.states[max(cand.after_step - 1, 0):done - 1]]
        if cand.after_step == 0:
            earlier.insert(0, "initial")
        distinct = [s for k, s in enumerate(earlier) if k == 0 or s != earlier[k - 1]]
        shown = ", ".join(distinct[-states_in_window_max:])
        more = "…, " if len(distinct) > states_in_window_max else ""
        where = f"after step {cand.after_step:,}" if cand.after_step else "at the start"
        text += f"; nor could it go earlier: {where}, the soonest it may go, the state was "
        text += f"{more}{shown}"
        if model_name in _VALUE_MODELS and op.f in ("read", "get") and op.status == "ok":
            text += _stale(op, cand, part, ops_of_steps, model)
    return text


def _stale(op: Operation, cand: Candidate, part: PartitionResult,
           ops: dict[int, Operation] | None, model: DescribesOps | None) -> str:
    """For a read whose value is a state from before the point real-time order lets it go:
    which step left that state behind (a stale read), or "" when none matches."""
    for j in range(cand.after_step - 1, -1, -1):  # the state after step j
        if j:
            text = part.states[j - 1]
        else:
            initial = _initial_text(model)
            if initial is None:  # no model given: the initial state is not known here
                return ""
            text = initial
        if _full_value(op.output, text) != _state_text(text):
            continue
        changer = ops.get(part.longest[j]) if ops is not None else None
        by = (f", {describe_process(changer.process)}'s {describe_op(changer, model)}"
              f" [{describe_lines(changer)}]" if changer is not None and changer.call_line
              else "")
        seen = "the initial state" if j == 0 else f"the state after step {j:,}"
        return (f"; it read {seen} (a stale read): step {j + 1:,}{by} changed it, and the read "
                f"cannot go before step {cand.after_step:,}, which returned before it was "
                "invoked")
    return ""


# Porcupine's kv model, which this one follows, reads a key never written as "": a null read
# from a client that maps "absent" to null is then a mismatch, which deserves saying.
KV_NULL_READ_NOTE = ('; note: kv reads an absent key as "" (as Porcupine does), so a null read '
                     "matches only a value put as null, or a key that starts as null "
                     "(--initial '{key}')")

# Models whose reads and cas the wording below describes exactly (their step compares the
# value read, or cas's expected value, with the state).
_VALUE_MODELS = ("register", "cas-register", "kv")


def _rejection(op: Operation, was: str, model: DescribesOps | None, model_name: str) -> str:
    """The model's rejection of ``op`` in state ``was``, in its terms when the model is one
    whose step is known (a read compares its value, a cas its expected value), else plainly."""
    unknown = op.status == "info"
    value_model = model_name in _VALUE_MODELS
    if value_model and not unknown and op.f in ("read", "get"):
        said = _read_mismatch(op, was)
        if said and model_name == "kv" and op.output is None:
            import json

            said += KV_NULL_READ_NOTE.format(key=json.dumps({str(op.key): None}))
        if said:
            return said
    if value_model and op.f == "cas" and isinstance(op.input, list | tuple) and len(
            op.input) == 2:
        expected = _full_value(op.input[0], was)
        state = _state_text(was)
        shown = f"{clip_middle(expected)}, but the state was {clip_middle(state)}"
        if not unknown and op.output is False:
            return f"cas reported that the value was not {shown}"
        if expected != state:
            lead = "cas (outcome unknown) cannot take effect: it" if unknown else "cas"
            return f"{lead} expected {shown}"
    return f"in state {clip_middle(was)}, the model does not allow {describe_op(op, model)}"


def _full_value(value: Any, was: str) -> str:
    """``value`` as text, long enough to compare with the state text ``was``."""
    return format_value(value, len(was) + value_chars_max)


def _read_mismatch(op: Operation, was: str) -> str:
    """``read returned X but the state was Y``, saying where they part when either is long;
    empty when the two would read the same (then the generic wording is used)."""
    seen = _full_value(op.output, was)
    state = _state_text(was)
    if seen == state:  # equal texts of unequal values would read as nonsense
        return ""
    said = f"{op.f} returned {clip_middle(seen)} but the state was {clip_middle(state)}"
    value = _state_value(was)
    if isinstance(op.output, str) and isinstance(value, str):
        if max(len(op.output), len(value)) > value_chars_max:
            return f"{said}: {_difference(op.output, value, 'characters')}"
    elif max(len(seen), len(state)) > value_chars_max:
        return f"{said}: {_difference(seen, state, 'characters of their text')}"
    return said


_NO_VALUE = object()


def _state_value(text: str) -> Any:
    """The value a register-like state's text stands for (a Python literal, as the built-in
    models describe it), or ``_NO_VALUE``."""
    if len(text) > state_literal_chars_max or text[:1] not in ("'", '"'):
        return _NO_VALUE
    import ast  # here, not at the top: only an illegal verdict's text needs it, start-up counts

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE


def _state_text(was: str) -> str:
    """A string state in the same quoting as the values of operations."""
    value = _state_value(was)
    return format_value(value, len(was) + value_chars_max) if isinstance(value, str) else was


def _difference(seen: str, state: str, unit: str) -> str:
    """Where two long strings part, e.g. ``the first 1,204 characters agree, then the read has
    "x 4 2 y" where the state has "x 44 1 y"``."""
    n = 0
    limit = min(len(seen), len(state))
    while n < limit and seen[n] == state[n]:
        n += 1
    after_read = format_value(seen[n:], difference_chars_max) if n < len(seen) else "its end"
    after_state = format_value(state[n:], difference_chars_max) if n < len(state) else "its end"
    return (f"the first {n:,} {unit} agree, then the read has {after_read} where the "
            f"state has {after_state}")


def _initial_text(model: Any) -> str | None:
    """The model's initial state in words, when a model with ``init``/``describe_state`` is
    given (for a partitioned model this is the state every part starts from)."""
    try:
        text: str = model.describe_state(model.init())
    except Exception:  # no model, or one without these optional parts: say "initial" plainly
        return None
    return text


def _initial_state(model: Any) -> str | None:
    text = _initial_text(model)
    return None if text is None else f"{clip(text)} (initial)"


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
        if failing and failing[0].decided_by == "zones" and failing[0].reason:
            lines.append(f"Zone algorithm: {failing[0].reason}.")
        if failing:
            lines.extend(_failure_lines(failing[0], ops, model, result.model))
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
        if "memo_entries_max" in result.reason:
            lines.append(
                "The search stopped at its memory limit: check a shorter history (or fewer "
                "concurrent operations), or raise memo_entries_max in lincheck.check(...)."
            )
        else:
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
