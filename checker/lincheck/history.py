"""History data: raw events as read from a file, and client operations paired from them.

Vocabulary from Jepsen: a client process *invokes* an operation, which then completes *ok*
(it happened), *fail* (it did not happen) or *info* (unknown: it may take effect at any point
after its invocation, or never; the process never invokes again). An invocation still open at
the end of the history counts as info. Events of the ``nemesis`` process are fault events: they
are kept for the report's timeline and left out of the check.
"""

from __future__ import annotations

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Literal, NamedTuple

    EventType = Literal["invoke", "ok", "fail", "info"]
else:
    from lincheck._records import Record as NamedTuple
EVENT_TYPES: frozenset[str] = frozenset(("invoke", "ok", "fail", "info"))
NEMESIS = "nemesis"


# Records are NamedTuples, not dataclasses: importing dataclasses (and with it inspect) and
# building each class costs a per-file ``lincheck check`` process about a quarter of what
# lincheck adds to the interpreter's start-up. Immutable, compact, compared by value.


class Event(NamedTuple):
    """One record of a history file, in file order."""

    # The field shadows tuple.index (fine at run time: the field is what callers want).
    index: int  # type: ignore[assignment]  # 0-based position: the order the checker uses
    process: int | str
    type: EventType
    f: str
    value: Any = None
    key: Any = None
    time: float | None = None  # wall or virtual seconds, when the file records it
    line: int | None = None  # 1-based line in the source file, for error messages


class Operation(NamedTuple):
    """A client operation: an invocation and its completion, as the checker sees it.

    ``call`` and ``ret`` are event indexes: the operation took effect, if at all, somewhere in
    the open interval between them. An operation of unknown outcome has ``status`` ``"info"``:
    it may take effect any time after ``call``, or never, and ``ret`` is ``None``, except for a
    read that completed without telling its value (a Jepsen EDN read of nil, a porcupine-etcd
    ``:fail :read``): it keeps its ``ret`` for display, and constrains nothing.
    ``input`` is what the client asked for (the invocation's value) and ``output`` what it
    observed (the completion's value; ``None`` when unknown). Formats normalise values so that a
    model sees the same shapes whatever file they came from.
    """

    id: int  # dense 0..n-1 within its History
    process: int | str
    f: str
    input: Any
    output: Any
    call: int
    ret: int | None
    status: Literal["ok", "info"]
    key: Any = None
    call_time: float | None = None
    ret_time: float | None = None
    call_line: int | None = None
    ret_line: int | None = None


class History:
    """A validated history: client operations plus the nemesis events, and where it came from.

    ``events`` holds every event, for the report's timeline."""

    __slots__ = ("events", "nemesis", "operations", "source")

    def __init__(self, operations: list[Operation], nemesis: list[Event] | None = None,
                 events: list[Event] | None = None, source: str = "<memory>") -> None:
        self.operations = operations
        self.nemesis = [] if nemesis is None else nemesis
        self.events = [] if events is None else events
        self.source = source

    def __repr__(self) -> str:
        return (f"History(operations={self.operations!r}, nemesis={self.nemesis!r}, "
                f"events={self.events!r}, source={self.source!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return (self.operations, self.nemesis, self.events, self.source) == (
            other.operations, other.nemesis, other.events, other.source)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


class HistoryError(ValueError):
    """Malformed history. ``str()`` is one line naming the file and line."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.reason = message
        # A file name may hold a line break; the message must stay one line all the same.
        shown = source if source.isprintable() else repr(source)[1:-1]
        where = f"{shown}:{line}" if line is not None else shown
        super().__init__(f"{where}: {message}")
