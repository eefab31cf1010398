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
from collections.abc import Callable, Hashable, Iterable, Sequence

from lincheck.edn import freeze
from lincheck.history import Operation

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple
else:
    from lincheck._records import Record as NamedTuple

__all__ = ["INCONSISTENT", "MODELS", "Model", "describe_operation", "get_model"]


class _Inconsistent:
    """The value ``step`` returns for an impossible operation (a singleton)."""

    _instance: _Inconsistent | None = None

    def __new__(cls) -> _Inconsistent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INCONSISTENT"

    def __reduce__(self) -> str:
        return "INCONSISTENT"


INCONSISTENT: Final = _Inconsistent()


def _show(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, tuple | list):
        return "[" + " ".join(_show(v) for v in value) + "]"
    if isinstance(value, frozenset | set):
        return "#{" + " ".join(sorted(_show(v) for v in value)) + "}"
    return repr(value)


def describe_operation(op: Operation) -> str:
    """Default text for an operation, e.g. ``p1 write 3``, ``p0 read → 3``, ``p2 cas [1 2] → ?``."""
    key = f"[{_show(op.key)}] " if op.key is not None else ""
    text = f"p{op.process} {key}{op.f}"
    if op.input is not None:
        text += f" {_show(op.input)}"
    if op.status == "info":
        return text + " → ?"
    if op.output is not None and op.output != op.input:
        text += f" → {_show(op.output)}"
    return text


def _never(op: Operation) -> bool:
    return False


def _accept(op: Operation) -> str | None:
    return None


class Model(NamedTuple):
    """A sequential specification; see the module docstring for the contract. (A NamedTuple
    rather than a dataclass, for start-up time: see lincheck.history.)"""

    name: str
    init: Callable[[], Any]
    step: Callable[[Any, Operation], Any]
    functions: frozenset[str]
    describe_op: Callable[[Operation], str] = describe_operation
    describe_state: Callable[[Any], str] = _show
    partition: Callable[[Sequence[Operation]], list[tuple[Any, list[Operation]]]] | None = None
    hash: Callable[[Any], Hashable] | None = None
    read_only: Callable[[Operation], bool] = _never
    step_unknown: Callable[[Any, Operation], Iterable[Any]] | None = None
    check_op: Callable[[Operation], str | None] = _accept
    part_model: Callable[[Any], Model] | None = None
    may_reach: Callable[[Any, Operation, Sequence[Operation]], bool] | None = None
    register_view: Callable[[Operation], tuple[str, Any] | None] | None = None
    append_view: Callable[[Operation], tuple[str, Any] | None] | None = None
    initial: Any = None
    droppable: Callable[[Sequence[Operation]], set[int]] | None = None


# --- register and cas-register ---------------------------------------------------------------


def _register_step(state: Any, op: Operation) -> Any:
    if op.f == "write":
        return freeze(op.input)
    if op.f == "read":
        if op.status == "info" or freeze(op.output) == state:
            return state
        return INCONSISTENT
    if op.f == "cas":
        expected, new = op.input
        if op.status == "ok" and op.output is False:
            return INCONSISTENT if freeze(expected) == state else state
        return freeze(new) if freeze(expected) == state else INCONSISTENT
    return INCONSISTENT


def _pair_shaped(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2


def _cas_failed_or_trivial(op: Operation) -> bool:
    if op.status == "ok" and op.output is False:
        return True
    return _pair_shaped(op.input) and freeze(op.input[0]) == freeze(op.input[1])


def _register_read_only(op: Operation) -> bool:
    return op.f == "read" or (op.f == "cas" and _cas_failed_or_trivial(op))


def _register_may_reach(state: Any, target: Operation, ops: Sequence[Operation]) -> bool:
    if target.f not in ("read", "get"):
        return True
    want = freeze(target.output)
    if want == state:
        return True
    for op in ops:
        if op.f in ("write", "put") and freeze(op.input) == want:
            return True
        if op.f in ("cas", "append", "delete"):
            return True  # rarely worth modelling exactly: stay conservative
    return False


def _register_view(op: Operation) -> tuple[str, Any] | None:
    if op.f == "read":
        return "read", freeze(op.output)
    if op.f == "write":
        return "write", freeze(op.input)
    if op.f == "cas" and _pair_shaped(op.input) and not (
            op.status == "ok" and op.output is False):
        return "cas", (freeze(op.input[0]), freeze(op.input[1]))
    return None  # an observed failed comparison tells what the value was not: no read mapping


def _register_check(op: Operation) -> str | None:
    if op.f == "cas" and not _pair_shaped(op.input):
        return f"cas value must be [expected new], not {op.input!r}"
    return None


def _const(value: Any) -> Any:
    return value


def _cas_may_reach(state: Any, target: Operation, ops: Sequence[Operation]) -> bool:
    if target.f != "read":
        return True
    want = freeze(target.output)
    if want == state:
        return True
    for op in ops:
        if op.f == "write" and freeze(op.input) == want:
            return True
        if op.f == "cas" and _pair_shaped(op.input) and freeze(op.input[1]) == want:
            return True
    return False


def register(initial: Any = None) -> Model:
    return Model("register", functools.partial(_const, freeze(initial)), _register_step,
                 frozenset({"read", "write"}), read_only=_register_read_only,
                 may_reach=_register_may_reach, register_view=_register_view, initial=initial)


def cas_register(initial: Any = None) -> Model:
    return Model("cas-register", functools.partial(_const, freeze(initial)), _register_step,
                 frozenset({"read", "write", "cas"}), read_only=_register_read_only,
                 check_op=_register_check, may_reach=_cas_may_reach,
                 register_view=_register_view, initial=initial)


# --- mappings held as frozensets of (key, value) pairs -----------------------------------------

if TYPE_CHECKING:
    Mapping_ = frozenset[tuple[Any, Any]]


def _lookup(state: Mapping_, key: Any, default: Callable[[Any], Any]) -> Any:
    for k, v in state:
        if k == key:
            return v
    return default(key)


def _assign(state: Mapping_, key: Any, value: Any) -> Mapping_:
    return frozenset([(k, v) for k, v in state if k != key] + [(key, value)])


def _initial_lookup(initial: Any, fallback: Any, key: Any) -> Any:
    if isinstance(initial, dict):
        for k, v in initial.items():
            if freeze(k) == key:
                return freeze(v)
        return fallback
    return fallback if initial is None else freeze(initial)


def _describe_mapping(state: Any) -> str:
    if not isinstance(state, frozenset):
        return _show(state)
    return "{" + ", ".join(sorted(f"{_show(k)} {_show(v)}" for k, v in state)) + "}"


# --- kv --------------------------------------------------------------------------------------

_KV_ALIASES = {"read": "get", "write": "put"}


def _append(current: Any, value: Any) -> Any:
    if isinstance(value, str) and isinstance(current, str):
        return current + value
    if isinstance(current, tuple):
        return (*current, freeze(value))
    if current is None or current == "":
        return value if isinstance(value, str) else (freeze(value),)
    return INCONSISTENT  # appending to a value that is neither a string nor a list


def _kv_step(initial_of: Callable[[Any], Any], state: Mapping_, op: Operation) -> Any:
    f = _KV_ALIASES.get(op.f, op.f)
    current = _lookup(state, op.key, initial_of)
    if f == "get":
        if op.status == "info" or freeze(op.output) == current:
            return state
        return INCONSISTENT
    if f == "put":
        return _assign(state, op.key, freeze(op.input))
    if f == "append":
        new = _append(current, op.input)
        return INCONSISTENT if new is INCONSISTENT else _assign(state, op.key, new)
    if f == "delete":
        return _assign(state, op.key, initial_of(op.key))
    if f == "cas":
        expected, new = op.input
        if op.status == "ok" and op.output is False:
            return INCONSISTENT if freeze(expected) == current else state
        if freeze(expected) != current:
            return INCONSISTENT
        return _assign(state, op.key, freeze(new))
    return INCONSISTENT


def _kv_read_only(op: Operation) -> bool:
    f = _KV_ALIASES.get(op.f, op.f)
    return f == "get" or (f == "cas" and _cas_failed_or_trivial(op))


def _kv_value_step(initial: Any, current: Any, op: Operation) -> Any:
    """The kv step on one key's value (the model of a single partition)."""
    f = _KV_ALIASES.get(op.f, op.f)
    if f == "get":
        if op.status == "info" or freeze(op.output) == current:
            return current
        return INCONSISTENT
    if f == "put":
        return freeze(op.input)
    if f == "append":
        return _append(current, op.input)
    if f == "delete":
        return initial
    if f == "cas":
        expected, new = op.input
        if op.status == "ok" and op.output is False:
            return INCONSISTENT if freeze(expected) == current else current
        return freeze(new) if freeze(expected) == current else INCONSISTENT
    return INCONSISTENT


def _kv_may_reach(current: Any, target: Operation, ops: Sequence[Operation]) -> bool:
    if _KV_ALIASES.get(target.f, target.f) != "get":
        return True
    want = freeze(target.output)
    if want == current:
        return True
    if any(_KV_ALIASES.get(op.f, op.f) != "append" for op in ops):
        return True  # a put, cas or delete can set anything
    # Only appends remain: the value only grows at its end.
    if isinstance(current, str) and isinstance(want, str):
        return len(want) > len(current) and want.startswith(current)
    if isinstance(current, tuple) and isinstance(want, tuple):
        return len(want) > len(current) and want[:len(current)] == current
    return bool(ops)


def _kv_register_view(op: Operation) -> tuple[str, Any] | None:
    f = _KV_ALIASES.get(op.f, op.f)
    if f == "get":
        return "read", freeze(op.output)
    if f == "put":
        return "write", freeze(op.input)
    if f == "cas":
        return _register_view(op)
    return None  # append and delete: the value they leave depends on the value before


def _kv_append_view(op: Operation) -> tuple[str, Any] | None:
    f = _KV_ALIASES.get(op.f, op.f)
    if f == "get":
        return "read", freeze(op.output)
    if f == "append":
        return "append", freeze(op.input)
    return None


def _kv_key_model(initial_of: Callable[[Any], Any], functions: frozenset[str], key: Any) -> Model:
    initial = initial_of(key)
    return Model("kv", functools.partial(_const, initial),
                 functools.partial(_kv_value_step, initial), functions,
                 read_only=_kv_read_only, check_op=_register_check, may_reach=_kv_may_reach,
                 register_view=_kv_register_view, append_view=_kv_append_view)


def _by_key(ops: Sequence[Operation]) -> list[tuple[Any, list[Operation]]]:
    groups: dict[Any, list[Operation]] = {}
    for op in ops:
        groups.setdefault(op.key, []).append(op)
    return list(groups.items())


def _empty_mapping() -> Mapping_:
    return frozenset()


def kv(initial: Any = None) -> Model:
    initial_of = functools.partial(_initial_lookup, initial, "")
    functions = frozenset({"get", "put", "append", "cas", "delete", "read", "write"})
    return Model("kv", _empty_mapping, functools.partial(_kv_step, initial_of), functions,
                 describe_state=_describe_mapping, partition=_by_key, read_only=_kv_read_only,
                 check_op=_register_check,
                 part_model=functools.partial(_kv_key_model, initial_of, functions),
                 initial=initial)


# --- multi-register --------------------------------------------------------------------------

_MICRO = {"r": "r", "read": "r", "w": "w", "write": "w"}


def _txn_shaped(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(m, list | tuple) and len(m) == 3 and m[0] in _MICRO for m in value)


def _txn_check(op: Operation) -> str | None:
    for value in (op.input, op.output):
        if value is not None and not _txn_shaped(value):
            return f"txn value must be a list of [r|w key value], not {value!r}"
    if op.input is not None and op.output is not None:
        # A completion reports the invoked transaction with its reads filled in (Jepsen): the
        # same micro-operations on the same keys. Anything else is not a record of that
        # transaction, and the search relies on it (a read-only txn stays read-only).
        asked = [(_MICRO[m[0]], freeze(m[1])) for m in op.input]
        done = [(_MICRO[m[0]], freeze(m[1])) for m in op.output]
        if asked != done:
            return (f"txn completion {op.output!r} does not match its invocation {op.input!r} "
                    "(same micro-operations on the same keys expected)")
    return None


def _multi_step(initial_of: Callable[[Any], Any], state: Mapping_, op: Operation) -> Any:
    ops = op.output if op.status == "ok" and op.output is not None else op.input
    for f, k, v in ops:
        key = freeze(k)
        if _MICRO[f] == "w":
            state = _assign(state, key, freeze(v))
        elif op.status == "ok" and v is not None and freeze(v) != _lookup(state, key,
                                                                            initial_of):
            return INCONSISTENT
    return state


def _multi_read_only(op: Operation) -> bool:
    return all(_MICRO.get(m[0]) == "r" for m in op.input)


def multi_register(initial: Any = None) -> Model:
    initial_of = functools.partial(_initial_lookup, initial, None)
    return Model("multi-register", _empty_mapping, functools.partial(_multi_step, initial_of),
                 frozenset({"txn"}), describe_state=_describe_mapping,
                 read_only=_multi_read_only, check_op=_txn_check, initial=initial)


# --- mutex -----------------------------------------------------------------------------------


def _mutex_step(held: bool, op: Operation) -> Any:
    if op.f == "acquire":
        return INCONSISTENT if held else True
    return False if held else INCONSISTENT


def _describe_mutex(held: Any) -> str:
    return "held" if held else "free"


def mutex(initial: Any = None) -> Model:
    return Model("mutex", functools.partial(_const, bool(initial)), _mutex_step,
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
    return Model("set", functools.partial(_const, start), _set_step,
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
    return Model("unordered-queue", functools.partial(_const, start), _bag_step,
                 frozenset({"enqueue", "dequeue"}), read_only=_dequeue_sees_empty,
                 step_unknown=_bag_unknown, initial=initial, droppable=_unobserved_enqueues)


def fifo_queue(initial: Any = None) -> Model:
    return Model("fifo-queue", functools.partial(_const, _start_sequence(initial)), _fifo_step,
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
