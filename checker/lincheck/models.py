"""Models: the sequential specifications histories are checked against.

A ``Model`` is data plus pure functions. To define one, give at least::

    Model(name="counter",
          init=lambda: 0,
          step=counter_step,                # (state, op) -> new state, or INCONSISTENT
          functions=frozenset({"add", "read"}))

``step(state, op)`` applies one ``Operation`` and returns the new state, or the sentinel
``INCONSISTENT`` when the operation's observed output is impossible in ``state``. It must not
mutate ``state`` nor raise for any state and any operation that ``check_op`` accepts. States must be
hashable and compare equal when equivalent (or give ``hash``, mapping a state to a hashable key:
states with equal keys are treated as the same). ``op.input`` is the invocation's value and
``op.output`` the completion's. For ``op.status == "info"`` the output is unknown (``None``):
``step`` returns the state as if the operation took effect with some output; when that state
is not determined (a dequeue of an unknown element), give ``step_unknown(state, op)`` yielding
every possible state instead.

Optional fields, each a pure function:

``partition(ops) -> [(key, ops)]``  independent parts, checked separately (P-compositionality;
    correct only if the model's operations on different parts never interact).
``read_only(op) -> bool``  True when the op can never change any state (a read, an observed
    failed cas). The search places such ops eagerly and drops them when of unknown outcome; a
    wrong True makes verdicts wrong, so when in doubt leave the default (never).
``part_model(key) -> Model``  the model one partition is checked with, when simpler than the
    whole (``kv``: one key's value instead of a mapping of every key).
``may_reach(state, target, ops) -> bool``  False only when no sequence of ``ops`` applied to
    ``state`` can make the read-only ``target`` consistent (for an append-only string that no
    longer prefixes the value read). Lets the search give up on hopeless orders early.
``check_op(op) -> str | None``  a message when the op's value has the wrong shape for the model.
``register_view(op) -> (kind, value) | None``  for a model that is a register on the ops it is
    given: ``("read", output)``, ``("write", input)`` or ``("cas", (expected, new))`` for a cas
    that succeeded or whose outcome is unknown, values frozen; None for any other op (an
    observed failed cas). With it, a partition whose writes write distinct values is decided by
    ``lincheck.zones`` in O(n log n) instead of the search. A wrong answer makes verdicts
    wrong: give it only for semantics exactly those of ``cas-register``.
``append_view(op) -> ("append", element) | ("read", value) | None``  likewise for a list
    that only grows at its end: what an op appends (its input) or reads (its output),
    frozen; None for any other op. Appends of distinct elements are then decided the same way.
``droppable(ops) -> set of op ids``  ops of unknown outcome that a linearization may always
    leave out, because without them every other op still sees what it saw (a queue's crashed
    enqueue of an element no dequeue returned). The search drops them: each otherwise
    multiplies the orders it tries. A wrong answer makes verdicts wrong.
``describe_op(op)`` and ``describe_state(state)``  short text for reports.

``get_model(name, initial)`` builds a built-in model; ``initial`` is its ``--initial`` JSON value
(``None``: the model's default). Built-ins and their operations (``input`` → ``output``):

``register``        write v; read → v.  Initial default nil.
``cas-register``    as register, plus cas [expected new]; an ok cas whose output is ``false``
                    records that the comparison was seen to fail.
``kv``              per key: get → v; put v; append v (strings concatenate, other values
                    collect into a list); cas [expected new]; delete (back to the initial value).
                    Keys are independent (partitioned). Every key starts as ``initial`` (default
                    ``""``: a key never written reads as ``""``, as in Porcupine, so a null
                    read matches only a null put); a JSON object gives per-key initial values.
``multi-register``  txn [[f k v] ...] with f "r" (read; nil constrains nothing) or "w" (write),
                    applied atomically. Initial: every register nil, or an object of them.
``mutex``           acquire; release.  Initial default: free.
``set``             add v; read → collection of all elements.
``unordered-queue`` enqueue v; dequeue → v (any element), dequeue → nil observes empty.
``fifo-queue``      enqueue v; dequeue → v (the oldest), dequeue → nil observes empty.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

from lincheck.edn import freeze
from lincheck.history import Operation
from lincheck.model_spec import INCONSISTENT, Model, constant, describe_operation
from lincheck.models_registers import cas_register, kv, multi_register, register

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

# The contract's types (lincheck.model_spec) and the register models
# (lincheck.models_registers) are found here, with the other built-ins and the registry.
__all__ = ["INCONSISTENT", "MODELS", "Model", "cas_register", "describe_operation", "fifo_queue",
           "get_model", "kv", "multi_register", "mutex", "register", "set_model",
           "unordered_queue"]


def _mutex_step(held: bool, op: Operation) -> Any:
    if op.f == "acquire":
        return INCONSISTENT if held else True
    return False if held else INCONSISTENT


def _describe_mutex(held: Any) -> str:
    return "held" if held else "free"


def mutex(initial: Any = None) -> Model:
    return Model("mutex", functools.partial(constant, bool(initial)), _mutex_step,
                 frozenset({"acquire", "release"}), describe_state=_describe_mutex,
                 initial=initial)


# --- set -------------------------------------------------------------------------------------


def _set_step(state: frozenset[Any], op: Operation) -> Any:
    if op.f == "add":
        return state | {freeze(op.input)}
    if op.status == "info":
        return state
    out = op.output
    if isinstance(out, list | tuple | set | frozenset) and frozenset(
            freeze(v) for v in out) == state:
        return state
    return INCONSISTENT


def _set_read_only(op: Operation) -> bool:
    return op.f == "read"


def set_model(initial: Any = None) -> Model:
    start = frozenset(freeze(v) for v in (initial or ()))
    return Model("set", functools.partial(constant, start), _set_step,
                 frozenset({"add", "read"}), read_only=_set_read_only, initial=initial)


# --- queues ----------------------------------------------------------------------------------


def _dequeue_sees_empty(op: Operation) -> bool:
    return op.f == "dequeue" and op.status == "ok" and op.output is None


def _bag_add(bag: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    return tuple(sorted((*bag, value), key=repr))


def _bag_remove(bag: tuple[Any, ...], value: Any) -> Any:
    for i, v in enumerate(bag):
        if v == value:
            return bag[:i] + bag[i + 1:]
    return INCONSISTENT


def _bag_step(bag: tuple[Any, ...], op: Operation) -> Any:
    if op.f == "enqueue":
        return _bag_add(bag, freeze(op.input))
    if op.output is None:  # ok: observed empty; info: handled by _bag_unknown
        return bag if not bag and op.status == "ok" else INCONSISTENT
    return _bag_remove(bag, freeze(op.output))


def _bag_unknown(bag: tuple[Any, ...], op: Operation) -> Iterable[Any]:
    if op.f == "enqueue":
        yield _bag_add(bag, freeze(op.input))
        return
    for value in dict.fromkeys(bag):  # each distinct element once
        yield _bag_remove(bag, value)


def _fifo_step(queue: tuple[Any, ...], op: Operation) -> Any:
    if op.f == "enqueue":
        return (*queue, freeze(op.input))
    if op.status == "info":
        return queue[1:] if queue else INCONSISTENT
    if op.output is None:
        return queue if not queue else INCONSISTENT
    return queue[1:] if queue and queue[0] == freeze(op.output) else INCONSISTENT


def _unobserved_enqueues(ops: Sequence[Operation]) -> set[int]:
    """Enqueues of unknown outcome whose element no dequeue returned. Leaving one out of a
    linearization (with the crashed dequeue that took its element, if any) changes no other
    op's output: while the element is queued, no dequeue that returned something reached it
    (it would have returned it) and no dequeue saw the queue empty; once a crashed dequeue
    took it, the states are the same again. Holds for FIFO and unordered queues alike."""
    try:
        returned = {freeze(op.output) for op in ops
                    if op.f == "dequeue" and op.status == "ok" and op.output is not None}
        return {op.id for op in ops if op.f == "enqueue" and op.status == "info"
                and freeze(op.input) not in returned}
    except TypeError:  # an unhashable element: keep every op
        return set()


def _start_sequence(initial: Any) -> tuple[Any, ...]:
    return tuple(freeze(v) for v in (initial or ()))


def unordered_queue(initial: Any = None) -> Model:
    start = tuple(sorted(_start_sequence(initial), key=repr))
    return Model("unordered-queue", functools.partial(constant, start), _bag_step,
                 frozenset({"enqueue", "dequeue"}), read_only=_dequeue_sees_empty,
                 step_unknown=_bag_unknown, initial=initial, droppable=_unobserved_enqueues)


def fifo_queue(initial: Any = None) -> Model:
    return Model("fifo-queue", functools.partial(constant, _start_sequence(initial)), _fifo_step,
                 frozenset({"enqueue", "dequeue"}), read_only=_dequeue_sees_empty,
                 initial=initial, droppable=_unobserved_enqueues)


MODELS: dict[str, Callable[[Any], Model]] = {
    "register": register,
    "cas-register": cas_register,
    "kv": kv,
    "multi-register": multi_register,
    "mutex": mutex,
    "set": set_model,
    "unordered-queue": unordered_queue,
    "fifo-queue": fifo_queue,
}
_ALIASES = {"key-value": "kv", "queue": "unordered-queue", "fifo": "fifo-queue"}


def get_model(name: str, initial: Any = None) -> Model:
    """The built-in model ``name`` starting from ``initial`` (``None``: the model's default)."""
    factory = MODELS.get(_ALIASES.get(name, name))
    if factory is None:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    if name in ("set", "unordered-queue", "fifo-queue", "queue", "fifo") and not isinstance(
            initial, list | type(None)):
        raise ValueError(f"initial value of model {name!r} must be a JSON array, "
                         f"not {initial!r}")
    return factory(initial)
