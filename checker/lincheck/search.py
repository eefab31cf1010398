"""The check of a history (``check``): partitions, and which of them runs when, for how long
and where. The search itself is ``lincheck.linearize`` (with its pruning rules in
``lincheck.pruning``), the explanation of a failure ``lincheck.failure``, the worker
processes ``lincheck.workers``.

The history is split into independent partitions (``model.partition``, P-compositionality).
Each one is decided by the zone algorithm (``lincheck.zones``) when its precondition holds,
else searched. Partitions take turns in growing slices (``SLICE_PAUSES_FIRST`` pauses of
``linearize.DEADLINE_CHECK_NODES`` nodes, then ``SLICE_GROWTH`` times more each round) so
that an easy illegal one is found before a hard one is ground through, and the first illegal
one decides. With much work and several partitions they go to forked worker processes
instead.

Invariants: a partition's verdict is "unknown" exactly when its search stopped early (the
deadline, the memo budget, memory, or another partition found illegal first), and its
``reason`` then says which; the searches of one process share one memo budget, and a
finished search gives its entries back before the next slice runs; the check is "illegal"
if any partition is, else "unknown" if any is, else "ok".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

from lincheck.history import History, Operation
from lincheck.linearize import MEMO_ENTRIES_MAX, Deadline, MemoBudget, MemoFull, Partition, unpack
from lincheck.models import Model
from lincheck.result import PartitionResult, Result
from lincheck.validate import validate_functions
from lincheck.zones import decide as decide_by_zones

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    from lincheck.result import DecidedBy, Verdict

__all__ = ["MEMO_ENTRIES_MAX", "check", "check_partition"]

# Partitions take turns: first slices of this many pauses (linearize.DEADLINE_CHECK_NODES
# nodes each), each round this many times longer.
SLICE_PAUSES_FIRST = 16
SLICE_GROWTH = 4
# The zone algorithm (lincheck.zones) decides a partition whose writes are distinct without
# search; False forces the search everywhere (benchmarks compare the two).
ZONES_ENABLED = True
# An illegal verdict of the zone algorithm is explained from the longest partial
# linearization the search finds in this many seconds at most.
ZONE_EXPLAIN_SECONDS = 1.0
# Parallel processes pay off only when there is this much work to share out.
PARALLEL_OPERATIONS_MIN = 20_000
PARALLEL_PARTITIONS_MIN = 4
PARALLEL_WORKERS_MAX = 8


def check_partition(key: Any, ops: Sequence[Operation], model: Model,
                    deadline: float | None = None, *,
                    memo_entries_max: int = MEMO_ENTRIES_MAX) -> PartitionResult:
    """Search one independent partition; verdict "unknown" when ``deadline`` (a
    ``time.monotonic()`` instant) passes first, or the memo would exceed
    ``memo_entries_max`` entries."""
    job = _Job(key, ops, model, deadline, MemoBudget(memo_entries_max))
    while job.advance(None) is None:
        pass
    return job.result()


class _Job:
    """One partition's check: the zone algorithm when its precondition holds, else the search,
    advanced a slice at a time."""

    def __init__(self, key: Any, ops: Sequence[Operation], model: Model,
                 deadline: float | None, budget: MemoBudget) -> None:
        self.key = key
        self.ops = ops
        self.seconds = 0.0
        self.deadline = deadline
        self.model = model.part_model(key) if model.part_model is not None else model
        self.search = Partition(ops, self.model, deadline, budget)
        self.steps: Iterator[None] | None = self.search.steps()
        self.verdict: Verdict | None = None
        self.stopped_by = ""  # "deadline" or "memo" when the search stopped undecided
        self.decided_by: DecidedBy = "search"
        started = time.monotonic()
        self.zone = (decide_by_zones(self.search.all_ops, self.model) if ZONES_ENABLED
                     else None)
        if self.zone is not None:
            self.verdict, self.decided_by, self.steps = self.zone.verdict, "zones", None
        self.seconds += time.monotonic() - started

    def advance(self, pauses: int | None) -> Verdict | None:
        """Run for up to ``pauses`` pauses (None: to the end); the verdict once known."""
        if self.steps is None:
            return self.verdict
        started = time.monotonic()
        try:
            for n, _ in enumerate(self.steps, start=1):
                if pauses is not None and n >= pauses:
                    return None
            self.verdict = self.search.outcome[0]
        except Deadline:
            self.verdict, self.stopped_by = "unknown", "deadline"
        except MemoFull:
            self.verdict, self.stopped_by = "unknown", "memo"
        except MemoryError:
            # The memo bound is per process and approximate: if the machine runs out first,
            # the verdict is unknown, not a crash (the generator's memo is freed just below).
            self.verdict, self.stopped_by = "unknown", "memory"
        finally:
            self.seconds += time.monotonic() - started
        # The generator has ended (or raised): its memo is garbage, give back its entries.
        self.steps = None
        self.search.release_memo()
        return self.verdict

    def _explain_zones(self) -> PartitionResult:
        """The result of a partition the zone algorithm decided. For "illegal", the search
        runs for at most ``ZONE_EXPLAIN_SECONDS`` to find a long partial linearization to
        show (from which the explanation is built as usual); it must not find a
        linearization."""
        zone = self.zone
        assert zone is not None
        ids = tuple(sorted(op.id for op in self.ops))
        describe = self.model.describe_state
        if zone.verdict == "ok":
            return PartitionResult(key=self.key, verdict="ok", operation_ids=ids,
                                   longest=tuple(op.id for op, _ in zone.order),
                                   states=tuple(describe(s) for _, s in zone.order),
                                   seconds=self.seconds, longest_searched=len(zone.order),
                                   decided_by="zones")
        started = time.monotonic()
        limit = started + ZONE_EXPLAIN_SECONDS
        search = self.search
        search.deadline = limit if self.deadline is None else min(limit, self.deadline)
        try:
            for _ in search.steps():
                pass
            if search.outcome[0] == "ok":
                raise AssertionError("the zone algorithm found the partition illegal, yet the "
                                     "search found a linearization")
        except (Deadline, MemoFull):
            pass  # explain from the longest prefix the search saw
        finally:
            search.release_memo()
        from lincheck.failure import explain_failure  # only an illegal partition needs it

        placed, searched, unplaced, cands = explain_failure(search.all_ops, self.model,
                                                            search.best)
        self.seconds += time.monotonic() - started
        return PartitionResult(key=self.key, verdict="illegal", operation_ids=ids,
                               longest=tuple(i for i, _ in placed),
                               states=tuple(describe(s) for _, s in placed),
                               unplaced=unplaced, seconds=self.seconds, candidates=cands,
                               longest_searched=searched, decided_by="zones",
                               reason=zone.reason)

    def result(self) -> PartitionResult:
        if self.zone is not None:
            return self._explain_zones()
        ids = tuple(sorted(op.id for op in self.ops))
        describe = self.model.describe_state
        if self.verdict == "ok":
            placed = unpack(self.search.outcome[1])
            return PartitionResult(key=self.key, verdict="ok", operation_ids=ids,
                                   longest=tuple(i for i, _ in placed),
                                   states=tuple(describe(s) for _, s in placed),
                                   seconds=self.seconds, longest_searched=len(placed))
        if self.verdict == "illegal":
            from lincheck.failure import explain_failure  # only an illegal partition needs it

            placed, searched, unplaced, cands = explain_failure(
                self.search.all_ops, self.model, self.search.best)
            return PartitionResult(key=self.key, verdict="illegal", operation_ids=ids,
                                   longest=tuple(i for i, _ in placed),
                                   states=tuple(describe(s) for _, s in placed),
                                   unplaced=unplaced, seconds=self.seconds, candidates=cands,
                                   longest_searched=searched)
        # Unfinished: the longest partial linearization found so far.
        placed = unpack(self.search.best)
        reason = {
            "deadline": "the deadline passed before the search finished",
            "memo": (f"the search would hold more than {self.search.budget.entries_max:,} "
                     "memo entries (memo_entries_max)"),
            "memory": ("the search ran out of memory before it reached its memo bound "
                       "(memo_entries_max)"),
        }.get(self.stopped_by, "not checked to the end: another partition was illegal")
        return PartitionResult(key=self.key, verdict="unknown", operation_ids=ids,
                               longest=tuple(i for i, _ in placed),
                               states=tuple(describe(s) for _, s in placed),
                               seconds=self.seconds, longest_searched=len(placed),
                               reason=reason)


def _check_serial(parts: list[tuple[Any, list[Operation]]], model: Model,
                  deadline: float | None, memo_entries_max: int
                  ) -> tuple[list[PartitionResult], int]:
    """Check partitions taking turns with growing slices, so that an easy illegal partition
    is found before a hard one is ground through; stop at the first illegal one, or when the
    deadline passes. Returns the results in partition order and how many partitions were left
    unfinished. A partition whose memo outgrows the budget is left undecided, and the others
    go on with the memory it gave back."""
    budget = MemoBudget(memo_entries_max)
    jobs = [_Job(key, ops, model, deadline, budget) for key, ops in parts]
    pending = list(range(len(jobs)))
    pauses = SLICE_PAUSES_FIRST
    while pending:
        unfinished: list[int] = []
        for idx in pending:
            only = len(pending) == 1 and not unfinished
            verdict = jobs[idx].advance(None if only else pauses)
            if verdict is None:
                unfinished.append(idx)
            elif verdict == "illegal" or jobs[idx].stopped_by == "deadline":
                left = [j for j in pending if jobs[j].verdict is None]
                return [job.result() for job in jobs], len(left)
        pending = unfinished
        pauses *= SLICE_GROWTH
    return [job.result() for job in jobs], 0


def _want_parallel(parts: list[tuple[Any, list[Operation]]], parallel: bool | None) -> int:
    """How many worker processes to use (0: check in this process)."""
    if parallel is False or len(parts) < 2:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if parallel is None:
        total = sum(len(ops) for _, ops in parts)
        if cpus < 2 or total < PARALLEL_OPERATIONS_MIN or len(parts) < PARALLEL_PARTITIONS_MIN:
            return 0
    # Imported only here: multiprocessing costs a per-file CLI run more than a small check.
    from lincheck.workers import can_fork

    if not can_fork():
        return 0
    return max(1, min(cpus, PARALLEL_WORKERS_MAX, len(parts)))


def _check_parallel(parts: list[tuple[Any, list[Operation]]], model: Model,
                    deadline: float | None, workers: int,
                    memo_entries_max: int) -> list[PartitionResult]:
    from lincheck.workers import run_forked

    def work(index: int) -> PartitionResult:  # runs in a worker process
        key, ops = parts[index]
        return check_partition(key, ops, model, deadline, memo_entries_max=memo_entries_max)

    return run_forked(work, len(parts), workers)


def _unknown_reason(results: list[PartitionResult], timeout: float | None) -> str:
    """Why the check is undecided, in one line: the deadline, or the memo limit (and where)."""
    memo = [r for r in results if r.verdict == "unknown" and "memo_entries_max" in r.reason]
    if memo:
        keys = "" if memo[0].key is None else (
            f" in key {memo[0].key!r}" + (f" and {len(memo) - 1} more" if len(memo) > 1 else ""))
        text = f"{memo[0].reason}{keys}; it stopped rather than use more memory"
        if timeout is not None and any("deadline" in r.reason for r in results):
            text += f"; the deadline of {timeout:g} s passed too"
        return text
    if timeout is not None:
        return f"deadline of {timeout:g} s reached before the search finished"
    return "the search stopped before it finished"


def check(history: History, model: Model, timeout: float | None = None, *,
          parallel: bool | None = None, memo_entries_max: int = MEMO_ENTRIES_MAX) -> Result:
    """Check ``history`` against ``model``: verdict "ok", "illegal", or "unknown" when
    ``timeout`` seconds pass first or the search would hold more than ``memo_entries_max``
    memo entries (about 0.3 KiB each; per worker process when ``parallel``). ``parallel``:
    None decides by the amount of work. Raises ``HistoryError`` naming the line of an
    operation the model does not know."""
    started = time.monotonic()
    validate_functions(history, model)
    if memo_entries_max < 1:
        raise ValueError(f"memo_entries_max must be at least 1, not {memo_entries_max}")
    deadline = None if timeout is None else started + timeout
    ops = history.operations
    parts = model.partition(ops) if model.partition is not None else [(None, list(ops))]
    workers = _want_parallel(parts, parallel)
    results: list[PartitionResult]
    unchecked = 0
    if workers:
        results = _check_parallel(parts, model, deadline, workers, memo_entries_max)
    else:
        results, unchecked = _check_serial(parts, model, deadline, memo_entries_max)
    verdicts = {r.verdict for r in results}
    verdict: Verdict = ("illegal" if "illegal" in verdicts
                        else "unknown" if "unknown" in verdicts else "ok")
    reason = ""
    if verdict == "unknown":
        reason = _unknown_reason(results, timeout)
    elif verdict == "illegal":
        first = next(r for r in results if r.verdict == "illegal")
        where = f" (key {first.key!r})" if first.key is not None else ""
        reason = f"operation {first.unplaced[0]} cannot be placed{where}"
        if unchecked:
            reason += f"; {unchecked} other partitions were not checked to the end"
    dropped = sum(1 for op in ops if op.status == "info" and model.read_only(op))
    stats = {"operations": len(ops), "partitions": len(results), "workers": workers,
             "partitions_unchecked": unchecked, "info_reads_dropped": dropped,
             "decided_by": {way: sum(1 for r in results if r.decided_by == way
                                     and r.verdict != "unknown")
                            for way in ("zones", "search")}}
    return Result(verdict=verdict, model=model.name, partitions=tuple(results),
                  seconds=time.monotonic() - started, reason=reason, stats=stats)
