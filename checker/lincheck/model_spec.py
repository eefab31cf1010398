"""The model contract's types: ``Model``, the ``INCONSISTENT`` verdict of a step, and the
default wording of operations and states. What each field means, and how to write a model, is
documented in ``lincheck.models``, which also holds the built-in models.

Invariants: ``INCONSISTENT`` is a singleton (compared with ``is``, and so after pickling);
``show_value`` renders any value on one line, EDN-like (``nil``, ``[1 2]``, ``#{...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

from lincheck.history import Operation

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple
else:
    from lincheck._records import Record as NamedTuple

__all__ = ["INCONSISTENT", "Model", "constant", "describe_operation", "show_value"]


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


def show_value(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, tuple | list):
        return "[" + " ".join(show_value(v) for v in value) + "]"
    if isinstance(value, frozenset | set):
        return "#{" + " ".join(sorted(show_value(v) for v in value)) + "}"
    return repr(value)


def describe_operation(op: Operation) -> str:
    """Default text for an operation, e.g. ``p1 write 3``, ``p0 read → 3``, ``p2 cas [1 2] → ?``."""
    key = f"[{show_value(op.key)}] " if op.key is not None else ""
    text = f"p{op.process} {key}{op.f}"
    if op.input is not None:
        text += f" {show_value(op.input)}"
    if op.status == "info":
        return text + " → ?"
    if op.output is not None and op.output != op.input:
        text += f" → {show_value(op.output)}"
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
    describe_state: Callable[[Any], str] = show_value
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


def constant(value: Any) -> Any:
    """``value`` itself: a model's ``init`` is ``functools.partial(constant, start)``."""
    return value
