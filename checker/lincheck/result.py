"""The checker's verdict, for machines (``to_json``) and people (the report modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["ok", "illegal", "unknown"]


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The verdict on one independent part of the history (one key, for a key-value model)."""

    key: Any  # the partition's key, or None when the history was checked whole
    verdict: Verdict
    operation_ids: tuple[int, ...]  # every operation of this partition
    # The longest sequence of operations (ids, in linearization order) found consistent with the
    # model, and the model state after each of them (described as text for the report).
    longest: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    # For "illegal": operations that could not be placed after ``longest`` (the first is the one
    # the report highlights). For "unknown": empty.
    unplaced: tuple[int, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    model: str
    partitions: tuple[PartitionResult, ...] = ()
    seconds: float = 0.0
    reason: str = ""  # e.g. "deadline of 10 s reached" for unknown
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def first_failure(self) -> PartitionResult | None:
        for part in self.partitions:
            if part.verdict == "illegal":
                return part
        return None
