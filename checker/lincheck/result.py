"""The checker's verdict, for machines (``to_json``) and people (the report modules)."""

from __future__ import annotations

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Literal, NamedTuple

    Verdict = Literal["ok", "illegal", "unknown"]
else:
    from lincheck._records import Record as NamedTuple

# What decided a partition: the search, or the zone algorithm (``lincheck.zones``: registers
# whose writes are distinct, in O(n log n)).
if TYPE_CHECKING:
    DecidedBy = Literal["search", "zones"]

# What the model said to an operation that could have gone next after the longest partial
# linearization (see ``Candidate``).
if TYPE_CHECKING:
    CandidateOutcome = Literal["rejected", "unhelpful", "allowed"]


# NamedTuples rather than dataclasses, for start-up time (see lincheck.history).


class Candidate(NamedTuple):
    """An operation that could have gone next after the longest partial linearization (it is
    not linearized, and no operation left unplaced returned before it was invoked), and why it
    did not.

    ``outcome``:
    - ``"rejected"``: the model does not allow it in the state after the linearization;
    - ``"unhelpful"``: its outcome is unknown, the model allows it (``state_after``), but no
      completed candidate fits after it either, so it was left out (it may never happen);
    - ``"allowed"``: the model allows it (``state_after``); only when the linearization was not
      extended to the end (see ``PartitionResult.longest``).
    """


    op_id: int
    outcome: CandidateOutcome
    state_after: str = ""  # the state it would lead to, for "unhelpful" and "allowed"
    # Real-time order lets it go after any of the steps ``after_step`` .. end of ``longest``
    # (0: before the first): ``after_step`` is the position of the last operation there that
    # returned before it was invoked. For a read-only one (``read_only``) that is rejected, the
    # model rejects it after every one of those steps, not only the last.
    after_step: int = 0
    read_only: bool = False


class PartitionResult(NamedTuple):
    """The verdict on one independent part of the history (one key, for a key-value model)."""

    key: Any  # the partition's key, or None when the history was checked whole
    verdict: Verdict
    operation_ids: tuple[int, ...]  # every operation of this partition
    # The longest partial linearization (op ids, in order) and the model state after each op
    # (as text). For "ok" a whole linearization. Otherwise the longest prefix the search saw
    # anywhere (its first ``longest_searched`` ops); for "illegal" then extended greedily
    # until no remaining operation fits (``lincheck.failure`` documents exactly how).
    longest: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    # For "illegal": the completed operations left out of ``longest``. The first is the culprit
    # the reports highlight: of those left out, the one that returned first (every order that
    # extends ``longest`` must place it before anything invoked after it returned). Then the
    # other completed candidates, then the rest in invocation order. For "unknown": empty.
    unplaced: tuple[int, ...] = ()
    seconds: float = 0.0
    # For "illegal": every operation that could have gone next after ``longest``, with the
    # model's answer (the culprit first). Empty when not computed (e.g. a hand-made result).
    candidates: tuple[Candidate, ...] = ()
    longest_searched: int = 0  # how many of ``longest``'s first ops the search itself reached
    reason: str = ""  # "unknown": why the search stopped; "illegal" by zones: the condition
    decided_by: DecidedBy = "search"


class Result:
    """The verdict on a whole history. Immutable."""

    __slots__ = ("model", "partitions", "reason", "seconds", "stats", "verdict")
    verdict: Verdict
    model: str
    partitions: tuple[PartitionResult, ...]
    seconds: float
    reason: str  # e.g. "deadline of 10 s reached" for unknown
    stats: dict[str, Any]

    def __init__(self, verdict: Verdict, model: str,
                 partitions: tuple[PartitionResult, ...] = (), seconds: float = 0.0,
                 reason: str = "", stats: dict[str, Any] | None = None) -> None:
        for name, value in (("verdict", verdict), ("model", model), ("partitions", partitions),
                            ("seconds", seconds), ("reason", reason),
                            ("stats", {} if stats is None else stats)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a Result")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a Result")

    def _fields(self) -> tuple[Any, ...]:
        return (self.verdict, self.model, self.partitions, self.seconds, self.reason,
                self.stats)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # stats is a dict

    def __repr__(self) -> str:
        return (f"Result(verdict={self.verdict!r}, model={self.model!r}, "
                f"partitions={self.partitions!r}, seconds={self.seconds!r}, "
                f"reason={self.reason!r}, stats={self.stats!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Result, self._fields())

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def first_failure(self) -> PartitionResult | None:
        for part in self.partitions:
            if part.verdict == "illegal":
                return part
        return None
