"""Jepsen's counter and set checkers: the history checks of workloads lincheck does not check.

Both read the run's history (lincheck ``Event``s in the order they happened; the event's
position is its time) and return a ``harness.checks.Check``: named ``counter`` or ``set``, with
one violation line per finding, naming the history lines involved (``history.jsonl`` line =
event index + 1), so a report shows what went wrong without reading the history.

``counter`` (adds of positive amounts and reads of the total). A read is correct when its value
lies within

- lower bound: the sum of the acknowledged (``ok``) adds that completed before the read began:
  they took effect before it, whatever else happened;
- upper bound: the sum of every add that may have taken effect (``ok`` or ``info``; ``fail`` did
  not happen) invoked before the read completed.

Below the lower bound: acknowledged increments were lost. Above the upper bound: increments
were counted more than once (a retried write applied twice) or from nowhere.

``set`` (adds of unique elements, then a final read of the whole set). With the final read
being the last ``ok`` read of the history:

- lost: elements acknowledged (``ok``) before the final read began and missing from it;
- unexpected: elements in the read that no add invoked before the read ended (or only one
  recorded ``fail``, which did not happen) could have put there;
- recovered: ``info`` adds (unknown outcome) whose element is present: allowed, counted.

Acknowledged adds still running when the final read began may or may not be in it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import lincheck
from lincheck import Event

from harness.checks import Check, judge_history


@attrs.frozen
class Op:
    """One client operation: where its invocation and completion are in the history."""

    process: Any
    f: str
    value: Any  # the invocation's input
    output: Any  # the completion's output (None when it never completed)
    outcome: str  # ok, fail or info (an invocation never completed counts as info)
    invoked: int  # event index of the invocation
    completed: float  # event index of the completion; infinity if it never completed

    @property
    def line(self) -> int:
        return self.invoked + 1


def operations(events: Sequence[Event]) -> list[Op]:
    """Each client's invocations paired with their completions, in invocation order."""
    open_ops: dict[Any, Event] = {}
    ops: list[Op] = []
    for event in events:
        if event.process == "nemesis":
            continue
        if event.type == "invoke":
            if event.process in open_ops:
                raise ValueError(f"history line {event.index + 1}: process {event.process} "
                                 "invokes while its previous operation is open")
            open_ops[event.process] = event
            continue
        start = open_ops.pop(event.process, None)
        if start is None:
            raise ValueError(f"history line {event.index + 1}: a completion without an "
                             f"invocation (process {event.process})")
        ops.append(Op(event.process, start.f, start.value, event.value, event.type,
                      start.index, event.index))
    for start in open_ops.values():
        ops.append(Op(start.process, start.f, start.value, None, "info", start.index,
                      float("inf")))
    ops.sort(key=lambda op: op.invoked)
    return ops


def _prefix_sums(pairs: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    """(positions sorted, running totals) so that a bisect gives the sum before a position."""
    pairs.sort()
    return [p for p, _ in pairs], [0, *itertools.accumulate(v for _, v in pairs)]


def check_counter(events: Sequence[Event]) -> Check:
    ops = operations(events)
    adds = [op for op in ops if op.f == "add"]
    for op in adds:
        if not (isinstance(op.value, int) and op.value > 0):
            raise ValueError(f"history line {op.line}: a counter add of {op.value!r}; the "
                             "bounds need positive integers")
    done_at, done_sum = _prefix_sums([(op.completed, op.value) for op in adds
                                      if op.outcome == "ok"])
    tried_at, tried_sum = _prefix_sums([(op.invoked, op.value) for op in adds
                                        if op.outcome in ("ok", "info")])
    reads = [op for op in ops if op.f == "read" and op.outcome == "ok"]
    violations: list[str] = []
    for read in reads:
        lower = done_sum[bisect.bisect_left(done_at, read.invoked)]
        upper = tried_sum[bisect.bisect_left(tried_at, read.completed)]
        value = read.output
        where = f"read by p{read.process} at line {read.line}"
        if not isinstance(value, int):
            violations.append(f"{where} saw {value!r}, not a count")
        elif value < lower:
            violations.append(f"{where} saw {value}, below {lower}: acknowledged increments "
                              f"worth {lower} had completed before it began (lost "
                              f"{lower - value})")
        elif value > upper:
            violations.append(f"{where} saw {value}, above {upper}: increments attempted "
                              f"before it ended add up to only {upper} (over-counted by "
                              f"{value - upper}: an increment applied twice?)")
    acked = sum(1 for op in adds if op.outcome == "ok")
    unknown = sum(1 for op in adds if op.outcome == "info")
    if violations:
        return Check("counter", False, f"{len(violations)} of {len(reads)} reads outside "
                                       f"their bounds", tuple(violations))
    final = f", last read {reads[-1].output}" if reads else ""
    return Check("counter", True, f"all {len(reads)} reads within bounds ({acked} acknowledged "
                                  f"and {unknown} unknown increments{final})")


def _show(elements: Sequence[Any], shown_max: int = 10) -> str:
    text = ", ".join(str(e) for e in elements[:shown_max])
    return text + (f", ... ({len(elements)} in all)" if len(elements) > shown_max else "")


def check_set(events: Sequence[Event]) -> Check:
    ops = operations(events)
    adds = [op for op in ops if op.f == "add"]
    reads = [op for op in ops if op.f == "read" and op.outcome == "ok"]
    if not reads:
        return Check("set", None, "no final read completed: nothing to compare the adds with")
    final = max(reads, key=lambda op: op.completed)
    if not isinstance(final.output, list):
        return Check("set", False, f"the final read (line {final.line}) saw "
                                   f"{final.output!r}, not a set", ())
    present = set(final.output)
    by_element = {op.value: op for op in adds}
    lost = sorted(op.value for op in adds if op.outcome == "ok"
                  and op.completed < final.invoked and op.value not in present)
    possible = {op.value for op in adds if op.outcome in ("ok", "info")
                and op.invoked < final.completed}
    unexpected = sorted(present - possible)
    recovered = sum(1 for op in adds if op.outcome == "info" and op.value in present)
    unknown = sum(1 for op in adds if op.outcome == "info")
    acked = sum(1 for op in adds if op.outcome == "ok")
    violations = [_lost_line(by_element[e], final) for e in lost]
    violations += [_unexpected_line(e, by_element.get(e), final) for e in unexpected]
    counts = (f"final read (line {final.line}) of {len(present)} elements; {acked} adds "
              f"acknowledged, {recovered} of {unknown} unknown adds present")
    if violations:
        found = []
        if lost:
            found.append(f"{len(lost)} acknowledged element(s) lost ({_show(lost)})")
        if unexpected:
            found.append(f"{len(unexpected)} unexpected element(s) ({_show(unexpected)})")
        return Check("set", False, f"{'; '.join(found)}: {counts}", tuple(violations))
    return Check("set", True, f"no acknowledged element lost, none unexpected: {counts}")


def _lost_line(add: Op, final: Op) -> str:
    return (f"lost: element {add.value} (added by p{add.process} at line {add.line}, "
            f"acknowledged at line {int(add.completed) + 1}) is missing from the final read "
            f"(line {final.line})")


def _unexpected_line(element: Any, add: Op | None, final: Op) -> str:
    if add is None:
        why = "no client ever added it"
    elif add.outcome == "fail":
        why = f"its add (p{add.process}, line {add.line}) was recorded fail"
    else:
        why = f"its add (p{add.process}, line {add.line}) began after the read ended"
    return f"unexpected: element {element} is in the final read (line {final.line}): {why}"


CHECKERS: dict[str, Callable[[Sequence[Event]], Check]] = {
    "counter": check_counter,
    "set": check_set,
}


def judge_workload_history(
    events: Sequence[Event], checker: str, model: lincheck.Model | None, timeout: float,
    parallel: bool | None = None,
) -> tuple[Check, lincheck.History | None, lincheck.Result | None]:
    """The history's check for a workload whose ``checker`` is ``lincheck`` (with ``model``;
    the history and lincheck's result come back for its report) or one of ``CHECKERS``."""
    if checker != "lincheck":
        return CHECKERS[checker](events), None, None
    assert model is not None, "a lincheck workload has a model"
    history = lincheck.history_from_events(list(events), source="history.jsonl")
    check, result = judge_history(history, model, timeout, parallel)
    return check, history, result
