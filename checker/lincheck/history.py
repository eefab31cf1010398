"""History data: raw events as read from a file, and client operations paired from them.

Vocabulary from Jepsen: a client process *invokes* an operation, which then completes *ok*
(it happened), *fail* (it did not happen) or *info* (unknown: it may take effect at any point
after its invocation, or never; the process never invokes again). An invocation still open at
the end of the history counts as info. Events of the ``nemesis`` process are fault events: they
are kept for the report's timeline and left out of the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: frozenset[str] = frozenset(("invoke", "ok", "fail", "info"))
NEMESIS = "nemesis"


@dataclass(frozen=True, slots=True)
class Event:
    """One record of a history file, in file order."""

    index: int  # position in the history (0-based), the order the checker uses
    process: int | str
    type: EventType
    f: str
    value: Any = None
    key: Any = None
    time: float | None = None  # wall or virtual seconds, when the file records it
    line: int | None = None  # 1-based line in the source file, for error messages


@dataclass(frozen=True, slots=True)
class Operation:
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


@dataclass(slots=True)
class History:
    """A validated history: client operations plus the nemesis events, and where it came from."""

    operations: list[Operation]
    nemesis: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # every event, for the report's timeline
    source: str = "<memory>"


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
