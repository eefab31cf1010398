"""Validation: pair invocations with completions into operations, rejecting malformed histories.

Every rejection is a ``HistoryError`` whose text is one line naming the source and line.
The pairing rules (Jepsen's):

- a client process has at most one open operation: invoking while the previous one is open is
  an error, and so is a completion (ok / fail / info) with no open invocation, or one whose
  ``f`` differs from its invocation's;
- ``fail`` means the operation did not happen: it becomes no operation at all;
- ``info`` means its outcome is unknown: the operation gets ``status="info"``, ``ret=None`` and
  no output. Jepsen never lets that process invoke again; the checker does not depend on it
  (an info operation may take effect any time after its invocation, whoever invokes next);
- an invocation still open at the end of the history is treated like ``info``;
- events of the ``nemesis`` process are fault events: kept in ``History.nemesis``, not paired
  strictly (a nemesis may log completions only).

Two dialects adjust this for the data they come from:

- ``"jepsen"`` (EDN histories, Knossos' rule): an ok ``read`` whose value is nil constrains
  nothing; it becomes an operation of unknown outcome (``status="info"``) that keeps its ``ret``;
- ``"porcupine-etcd"``: ``:fail :cas`` is an observation that the comparison failed, so it is an
  ok cas whose ``output`` is ``False``; ``:fail :read`` (a timed-out read) is a read of unknown
  outcome (``status="info"``, ``ret`` kept). ``:ok :read nil`` is a real read of the absent key.
"""

from __future__ import annotations

from collections.abc import Iterable

from lincheck.history import NEMESIS, Event, History, HistoryError, Operation

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Literal

    from lincheck.models import Model

    Dialect = Literal["plain", "jepsen", "porcupine-etcd"]


def _where(ev: Event) -> str:
    return f"line {ev.line}" if ev.line is not None else f"event {ev.index}"


def build_history(events: Iterable[Event], source: str, dialect: Dialect = "plain") -> History:
    """Pair ``events`` (in history order) into a validated ``History``."""
    all_events = list(events)
    open_ops: dict[int | str, Event] = {}
    nemesis: list[Event] = []
    # (invocation, completion or None, status, output)
    pairs: list[tuple[Event, Event | None, Literal["ok", "info"], Any]] = []
    for ev in all_events:
        p = ev.process
        if p == NEMESIS:
            nemesis.append(ev)
            continue
        if ev.type == "invoke":
            if p in open_ops:
                raise HistoryError(
                    source, ev.line,
                    f"process {p!r} invokes {ev.f!r} while its {open_ops[p].f!r} from "
                    f"{_where(open_ops[p])} is still open")
            open_ops[p] = ev
            continue
        inv = open_ops.pop(p, None)
        if inv is None:
            raise HistoryError(source, ev.line,
                               f"{ev.type} completion of {ev.f!r} by process {p!r} "
                               "with no open invocation")
        if ev.f != inv.f:
            raise HistoryError(source, ev.line,
                               f"completion f {ev.f!r} differs from its invocation's f "
                               f"{inv.f!r} at {_where(inv)}")
        if inv.key is not None and ev.key is not None and inv.key != ev.key:
            raise HistoryError(source, ev.line,
                               f"completion key {ev.key!r} differs from its invocation's key "
                               f"{inv.key!r} at {_where(inv)}")
        if ev.type == "ok":
            if dialect == "jepsen" and ev.f == "read" and ev.value is None:
                pairs.append((inv, ev, "info", None))
            else:
                pairs.append((inv, ev, "ok", ev.value))
        elif ev.type == "fail":
            if dialect == "porcupine-etcd" and ev.f == "cas":
                pairs.append((inv, ev, "ok", False))
            elif dialect == "porcupine-etcd" and ev.f == "read":
                pairs.append((inv, ev, "info", None))
            # otherwise: it did not happen, so it is no operation
        else:  # info
            pairs.append((inv, None, "info", None))
    for inv in open_ops.values():
        pairs.append((inv, None, "info", None))
    pairs.sort(key=lambda t: t[0].index)
    operations = [
        Operation(
            id=i, process=inv.process, f=inv.f, input=inv.value, output=output,
            call=inv.index, ret=None if done is None else done.index, status=status,
            key=inv.key if inv.key is not None else (done.key if done is not None else None),
            call_time=inv.time, ret_time=None if done is None else done.time,
            call_line=inv.line, ret_line=None if done is None else done.line,
        )
        for i, (inv, done, status, output) in enumerate(pairs)
    ]
    return History(operations=operations, nemesis=nemesis, events=all_events, source=source)


def validate_functions(history: History, model: Model) -> None:
    """Reject an operation the model does not know (its ``f``, or its value's shape per
    ``model.check_op``), naming its line."""
    known = model.functions
    # Events first: a failed operation of an unknown function is no operation, but still wrong.
    found = [(ev.f, ev.line) for ev in history.events if ev.process != NEMESIS]
    found += [(op.f, op.call_line) for op in history.operations]
    for f, line in found:
        if f not in known:
            names = ", ".join(sorted(known))
            raise HistoryError(history.source, line,
                               f"unknown function {f!r} for model {model.name!r} "
                               f"(known: {names})")
    for op in history.operations:
        problem = model.check_op(op)
        if problem is not None:
            raise HistoryError(history.source, op.call_line, problem)


def require_operations(history: History) -> None:
    """Reject a history with no client operation: an empty file (or one the reader found
    nothing in, such as a log of another format) is linearizable by definition, so passing it
    would let garbage through. The CLI's ``--allow-empty`` skips this."""
    if history.operations or any(ev.process != NEMESIS for ev in history.events):
        return
    found = f" (only {len(history.nemesis)} nemesis events)" if history.nemesis else ""
    raise HistoryError(history.source, None,
                       f"no operations in the history{found}; an empty history proves "
                       "nothing (pass --allow-empty to accept it)")
