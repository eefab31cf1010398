"""Why a partition is not linearizable: what the report shows once the search
(``lincheck.linearize``) has failed. It starts from the longest partial linearization the
search saw, and needs nothing else from it.

* **longest**: the longest partial linearization (a sequence of operations that respects
  real-time order and that the model accepts step by step) the search saw anywhere: at any
  node of any branch point, counting every child it generated, pruned or not. Eager reads
  count; operations of unknown outcome that would change nothing are never placed, so never
  counted. Trailing operations of unknown outcome are then dropped (they are optional) and the
  prefix is extended greedily: completed operations first (earliest return first), an
  operation of unknown outcome only when a completed one fits after it; when nothing can be
  appended, a read-only completed candidate is inserted after an earlier step whose state it
  fits, if its real-time window allows (it changes no later state); until nothing fits (at
  most ``EXTEND_STEPS_MAX`` steps). The result is *maximal*, not *maximum*: no operation
  that must happen can be appended to it, nor a read-only one inserted, but another order
  might be longer (finding the longest is as hard as the check itself). ``longest_searched``
  says how many of its first steps the search itself reached.
* **candidates**: the operations that could go next after it: not linearized, and invoked
  before every completed operation left out had returned. Each one with the model's answer
  in the state after ``longest``: rejected, or (unknown outcome) allowed but no completed
  candidate fits after it either.
* **culprit** (first of ``unplaced``): of the completed operations left out, the one that
  returned first. Every order extending ``longest`` must place it before any operation
  invoked after that return: it is the one the search was forced to place and could not, as
  in Knossos and Porcupine. It is always a candidate, so the model rejects it there.

Invariants, asserted (a violation means the search said "illegal" wrongly): some completed
operation is left out (else the prefix is a linearization); the culprit is the first
completed candidate; when the prefix is maximal, no candidate is "allowed".

Imported only when a partition is illegal: an "ok" check never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from lincheck.history import Operation
from lincheck.linearize import unpack
from lincheck.models import INCONSISTENT, Model
from lincheck.result import Candidate

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    from lincheck.linearize import Path

__all__ = ["explain_failure"]

# Steps appended greedily to the longest partial linearization of an illegal partition.
EXTEND_STEPS_MAX = 100_000


class _Frontier:
    """Which operations may go next after a partial linearization: those not placed that were
    invoked before the earliest return among completed operations not placed (placing any
    other would put it after an operation that returned before it was invoked)."""

    def __init__(self, ops: Sequence[Operation], done: list[bool]) -> None:
        self.ops = ops  # in call order
        self.done = done
        self.by_ret = sorted((i for i, op in enumerate(ops) if op.status == "ok"),
                             key=self.ret_of)
        self.first = 0  # by_ret[:first] are all placed
        self.admitted = 0  # ops[:admitted] were invoked before the earliest open return
        self.open: list[int] = []  # the candidates, in call order
        self._admit()

    def ret_of(self, i: int) -> int:
        ret = self.ops[i].ret
        if ret is None:
            raise AssertionError(f"completed operation {self.ops[i].id} has no return")
        return ret

    def earliest_return(self) -> int | None:
        """The completed operation not placed that returned first (None: all are placed)."""
        by_ret, done = self.by_ret, self.done
        while self.first < len(by_ret) and done[by_ret[self.first]]:
            self.first += 1
        return by_ret[self.first] if self.first < len(by_ret) else None

    def _admit(self) -> None:
        first = self.earliest_return()
        limit = float("inf") if first is None else self.ret_of(first)
        ops = self.ops
        while self.admitted < len(ops) and ops[self.admitted].call < limit:
            if not self.done[self.admitted]:
                self.open.append(self.admitted)
            self.admitted += 1

    def place(self, i: int) -> None:
        self.done[i] = True
        self.open.remove(i)
        self._admit()


def _successors(model: Model, state: Any, op: Operation) -> list[Any]:
    """The states ``op`` may lead to from ``state`` (none: the model rejects it there)."""
    if op.status == "info" and model.step_unknown is not None:
        nexts = list(model.step_unknown(state, op))
    else:
        nexts = [model.step(state, op)]
    return [ns for ns in nexts if ns is not INCONSISTENT]


def _fits_any(model: Model, state: Any, ops: Sequence[Operation]) -> bool:
    step = model.step
    return any(step(state, op) is not INCONSISTENT for op in ops)


def _next_fit(model: Model, ops: Sequence[Operation], cands: list[int],
              state: Any) -> tuple[int, Any] | None:
    """The candidate to append greedily, and the state after it: a completed one that the
    model accepts (earliest return first), else one of unknown outcome after which some
    completed one fits. None when nothing more fits."""
    done = sorted((i for i in cands if ops[i].status == "ok"), key=lambda i: ops[i].ret or 0)
    step = model.step
    for i in done:
        ns = step(state, ops[i])
        if ns is not INCONSISTENT:
            return i, ns
    completed = [ops[i] for i in done]
    for i in cands:
        if ops[i].status == "info":
            for ns in _successors(model, state, ops[i]):
                if _fits_any(model, ns, completed):
                    return i, ns
    return None


def _window_start(ops: Sequence[Operation], index: dict[int, int],
                  placed: list[tuple[int, Any]], op: Operation) -> int:
    """The last step of ``placed`` (1-based; 0: none) whose operation returned before ``op``
    was invoked: real-time order lets ``op`` go after any step from there on."""
    for j in range(len(placed), 0, -1):
        other = ops[index[placed[j - 1][0]]]
        if other.status == "ok" and other.ret is not None and other.ret < op.call:
            return j
    return 0


def _insert_read(ops: Sequence[Operation], index: dict[int, int], model: Model,
                 placed: list[tuple[int, Any]], cands: list[int]) -> int | None:
    """Insert a read-only candidate after an earlier step whose state it fits (read-only, it
    changes no later state; a candidate, it may go anywhere in its real-time window), so
    that a prefix the greedy appending missed is not reported. Returns the candidate
    inserted, or None."""
    step, init = model.step, model.init
    for i in cands:
        op = ops[i]
        if op.status != "ok" or not model.read_only(op):
            continue
        start = _window_start(ops, index, placed, op)
        for j in range(len(placed) - 1, start - 1, -1):  # the state after step j
            state = placed[j - 1][1] if j else init()
            if step(state, op) is not INCONSISTENT:
                placed.insert(j, (op.id, state))
                return i
    return None


def explain_failure(ops: Sequence[Operation], model: Model, path: Path
                    ) -> tuple[list[tuple[int, Any]], int, tuple[int, ...],
                                tuple[Candidate, ...]]:
    """From the longest partial linearization the search saw: (the prefix, extended greedily
    until nothing fits; how many of its steps the search reached; the completed operations
    left out, culprit first; the candidates with the model's answer). See the module
    docstring for the rules. ``ops``: the partition's operations that can matter, in call
    order (``Partition.all_ops``)."""
    index = {op.id: i for i, op in enumerate(ops)}
    placed = unpack(path)
    # Trailing operations of unknown outcome are optional: the greedy step puts back those
    # that let a completed operation follow.
    while placed and ops[index[placed[-1][0]]].status == "info":
        placed.pop()
    searched = len(placed)
    done = [False] * len(ops)
    for op_id, _ in placed:
        done[index[op_id]] = True
    frontier = _Frontier(ops, done)
    state = placed[-1][1] if placed else model.init()
    complete = False
    for _ in range(EXTEND_STEPS_MAX):
        fit = _next_fit(model, ops, frontier.open, state)
        if fit is not None:
            i, state = fit
            placed.append((ops[i].id, state))
            frontier.place(i)
            continue
        inserted = _insert_read(ops, index, model, placed, frontier.open)
        if inserted is None:
            complete = True
            break
        frontier.place(inserted)
    culprit = frontier.earliest_return()
    if culprit is None:
        # Every completed operation is placed: that is a linearization, so "illegal" is wrong.
        raise AssertionError("search found no linearization, yet one exists: "
                             f"{[op_id for op_id, _ in placed]}")
    cands = frontier.open
    completed = sorted((i for i in cands if ops[i].status == "ok"), key=frontier.ret_of)
    if not completed or completed[0] != culprit:
        raise AssertionError(f"culprit {ops[culprit].id} is not the first candidate")
    unknown = [i for i in cands if ops[i].status != "ok"]
    completed_ops = [ops[i] for i in completed]
    judged: list[Candidate] = []
    for i in completed + unknown:  # the rejected unknown ones first, see below
        op = ops[i]
        nexts = _successors(model, state, op)
        after = _window_start(ops, index, placed, op)
        read_only = op.status == "ok" and model.read_only(op)
        if not nexts:
            judged.append(Candidate(op.id, "rejected", "", after, read_only))
        elif op.status != "ok" and not any(_fits_any(model, ns, completed_ops)
                                           for ns in nexts):
            judged.append(Candidate(op.id, "unhelpful", model.describe_state(nexts[0]), after,
                                    read_only))
        else:
            if complete:
                raise AssertionError(f"operation {op.id} fits after a maximal prefix")
            judged.append(Candidate(op.id, "allowed", model.describe_state(nexts[0]), after,
                                    read_only))
    # Of unknown outcome, those the model rejects say more than those merely unhelpful.
    judged.sort(key=lambda c: c.outcome == "unhelpful")
    chosen = set(completed)
    rest = [op.id for i, op in enumerate(ops)
            if op.status == "ok" and not done[i] and i not in chosen]
    unplaced = tuple(ops[i].id for i in completed) + tuple(rest)
    return placed, searched, unplaced, tuple(judged)
