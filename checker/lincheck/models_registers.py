"""The built-in models of registers and maps of them: ``register``, ``cas-register``, ``kv``
and ``multi-register`` (what their operations mean is in ``lincheck.models``' docstring).

Invariants: every state is frozen (``lincheck.edn.freeze``), so that equal states compare and
hash equal; ``register_view`` and ``append_view`` are given only where the model's semantics
are exactly a register's (a list's) on the ops seen, since ``lincheck.zones`` and the search's
pruning trust them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from lincheck.edn import freeze
from lincheck.history import Operation
from lincheck.model_spec import INCONSISTENT, Model, constant, show_value

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cas_register", "kv", "multi_register", "register"]


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
    return Model("register", functools.partial(constant, freeze(initial)), _register_step,
                 frozenset({"read", "write"}), read_only=_register_read_only,
                 may_reach=_register_may_reach, register_view=_register_view, initial=initial)


def cas_register(initial: Any = None) -> Model:
    return Model("cas-register", functools.partial(constant, freeze(initial)), _register_step,
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
        return show_value(state)
    return "{" + ", ".join(sorted(f"{show_value(k)} {show_value(v)}" for k, v in state)) + "}"


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
    return Model("kv", functools.partial(constant, initial),
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
