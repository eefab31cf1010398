"""A brute-force linearizability oracle for tiny histories: the definition, nothing clever.

It tries every order of the operations that respects real time (an operation that returned
before another was called comes first), including or leaving out each operation of unknown
outcome, and applies the model with no partitioning, no memo and no pruning. Exponential: the
property tests use it to judge the real search on histories of a handful of operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lincheck.history import History, Operation
from lincheck.models import INCONSISTENT, Model

if TYPE_CHECKING:
    from lincheck.result import Verdict

# Beyond this many operations the oracle would take far too long to be of use.
BRUTE_OPERATIONS_MAX = 12


def _successors(model: Model, state: Any, op: Operation) -> list[Any]:
    if op.status == "info" and model.step_unknown is not None:
        found = list(model.step_unknown(state, op))
    else:
        found = [model.step(state, op)]
    return [s for s in found if s is not INCONSISTENT]


def brute_force_check(history: History, model: Model) -> Verdict:
    """"ok" when some real-time-respecting order of the operations (info ones optional) is
    accepted by the model, else "illegal"."""
    ops = list(history.operations)
    if len(ops) > BRUTE_OPERATIONS_MAX:
        raise ValueError(f"brute force handles at most {BRUTE_OPERATIONS_MAX} operations, "
                         f"not {len(ops)}")
    never = float("inf")

    def ret(op: Operation) -> float:
        return op.ret if op.status == "ok" and op.ret is not None else never

    def search(state: Any, placed: frozenset[int]) -> bool:
        if all(op.id in placed for op in ops if op.status == "ok"):
            return True
        # An op may go next when every op that returned before its call is already placed,
        # counting only ok ops (an info op may be left out, so it never has to come first).
        for op in ops:
            if op.id in placed:
                continue
            if any(o.id not in placed and o.status == "ok" and ret(o) < op.call for o in ops):
                continue
            for nxt in _successors(model, state, op):
                if search(nxt, placed | {op.id}):
                    return True
        return False

    return "ok" if search(model.init(), frozenset()) else "illegal"
