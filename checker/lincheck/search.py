"""The linearizability search.

The history is split into independent partitions (``model.partition``, P-compositionality) and
each is searched on its own; partitions take turns in growing slices so that an easy illegal
one is found before a hard one is ground through, and the first illegal one decides. With much
work and several partitions they go to forked worker processes instead.

Within a partition the search is Wing & Gong's, in Lowe's just-in-time form: a depth-first
walk over the history's events in order, where an operation is linearized only when something
forces it, namely the return of an operation not yet linearized, which must then be placed after
some sequence of operations open at that moment. Each return is thus a branch point whose
alternatives are the configurations (linearized set, model state) with that operation placed.
The linearized set is an int bitset over *slots* (an operation holds a slot from its call to its
return, so masks stay as small as the concurrency). Lowe's memoization: a configuration that
failed at a given return is remembered and never explored again.

Pruning, each justified where it is applied:

* read-only operations (``model.read_only``) of unknown outcome constrain nothing: dropped;
* read-only operations of known outcome are placed eagerly, as soon as the state matches them,
  and never branched on (placing one never changes the state, so placing it is never worse);
* an operation of unknown outcome (info) is never placed where it leaves the state unchanged,
  and a configuration dominates another with the same state and completed operations whose
  set of used info operations is a superset (unused info operations are pure freedom), both in
  the failure memo and among a branch point's alternatives;
* symmetry: of two identical operations (same f, input, output, status and key) where one is
  called earlier and returns earlier, the later one is never placed while the earlier one is
  open and unplaced (swapping them in any linearization keeps it valid);
* lookahead (``model.may_reach``): a configuration where an open read can no longer become
  consistent with the operations that may still be placed before it returns is abandoned at
  once, instead of at that read's return.

A partition is illegal when every alternative fails; the operation reported as the first that
could not be placed is the one at the latest point where the search got stuck.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from lincheck.edn import freeze
from lincheck.history import History, Operation
from lincheck.models import INCONSISTENT, Model
from lincheck.result import PartitionResult, Result, Verdict
from lincheck.validate import validate_functions

__all__ = ["check", "check_partition"]

# How many search nodes run between two looks at the clock.
DEADLINE_CHECK_NODES = 256
# Partitions take turns: first slices of this many pauses (DEADLINE_CHECK_NODES nodes each),
# each round this many times longer.
SLICE_PAUSES_FIRST = 16
SLICE_GROWTH = 4
# Beyond this many candidate ops, looking ahead for a read costs more than it saves.
REACH_OPS_MAX = 256
# Parallel processes pay off only when there is this much work to share out.
PARALLEL_OPERATIONS_MIN = 20_000
PARALLEL_PARTITIONS_MIN = 4
PARALLEL_WORKERS_MAX = 8

# A linearization under construction: a persistent list (op id, state after, parent, length).
Path = tuple[int, Any, Any, int] | None


# A configuration: (linearized mask, state, state key, path).
_Goal = tuple[int, Any, Hashable, Path]
Outcome = tuple[Verdict, Path, int | None]


class _Deadline(Exception):
    pass


_EXHAUSTED: Any = object()  # no alternative left at a branch point


def _signature(op: Operation) -> Hashable | None:
    try:
        sig = (op.f, freeze(op.input), freeze(op.output), op.status, op.key)
        hash(sig)
        return sig
    except TypeError:
        return None


def _twins(ops: Sequence[Operation], skip: Sequence[bool]) -> list[int]:
    """For each op, the index of an identical op called and returned earlier (or -1)."""
    groups: dict[Hashable, list[int]] = {}
    twin = [-1] * len(ops)
    for i, op in enumerate(ops):  # ops are in call order
        if skip[i]:
            continue
        sig = _signature(op)
        if sig is None:
            continue
        earlier = groups.setdefault(sig, [])
        ret = op.ret if op.status == "ok" else None
        for j in reversed(earlier):
            other = ops[j].ret if ops[j].status == "ok" else None
            if ret is None or (other is not None and other < ret):
                twin[i] = j
                break
        earlier.append(i)
    return twin


class _Partition:
    """The search over one partition's operations: a depth-first walk of the history's events
    that branches only at returns, with a memo of configurations known to fail."""

    def __init__(self, ops: Sequence[Operation], model: Model, deadline: float | None) -> None:
        self.model = model
        self.deadline = deadline
        read_only = model.read_only
        self.ops = [op for op in sorted(ops, key=lambda o: o.call)
                    if not (op.status == "info" and read_only(op))]
        self.is_read = [op.status == "ok" and read_only(op) for op in self.ops]
        self.is_info = [op.status == "info" for op in self.ops]
        self.twin = _twins(self.ops, self.is_read)
        self.nodes = 0
        self.best: Path = None
        self.failed_at = -1  # deepest event position where no configuration could go on
        self.failed_op = -1
        self._prepare()

    def _prepare(self) -> None:
        """Lay out the events, give each op a slot (a bit) for the time it is open, and
        record which ops are open at each return."""
        ops = self.ops
        never = float("inf")
        self.ret_of = [op.ret if op.status == "ok" and op.ret is not None else never
                       for op in ops]
        events: list[tuple[int, int]] = []
        for i, op in enumerate(ops):
            events.append((op.call, i))
            if op.status == "ok":
                if op.ret is None or op.ret <= op.call:
                    raise AssertionError(f"operation {op.id} returns before it is called")
                events.append((op.ret, ~i))
        events.sort()
        self.events = events
        self.bit = [0] * len(ops)
        # For each read-only op, the ops that may still be placed before it (None: too many to
        # be worth looking at): the model's may_reach uses them to spot hopeless states early.
        self.reach: list[tuple[Operation, ...] | None] = [None] * len(ops)
        free: list[int] = []
        used = 0
        writes: list[tuple[int, int]] = []
        reads: list[tuple[int, int]] = []
        info_bits = 0
        # Per event position: (open writes, open reads, info bits) at that moment.
        self.open_at: list[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...], int]
                           | None] = []
        for _, code in events:
            if code >= 0:
                slot = free.pop() if free else used
                used = max(used, slot + 1)
                bit = 1 << slot
                self.bit[code] = bit
                if self.is_read[code]:
                    reads.append((bit, code))
                    if self.model.may_reach is not None:
                        self.reach[code] = self._reach_ops(code, [ops[j] for _, j in writes])
                else:
                    writes.append((bit, code))
                    if self.is_info[code]:
                        info_bits |= bit
                self.open_at.append(None)
                continue
            x = ~code
            self.open_at.append((tuple(writes), tuple(reads), info_bits))
            bit = self.bit[x]
            free.append(bit.bit_length() - 1)
            if self.is_read[x]:
                reads.remove((bit, x))
            else:
                writes.remove((bit, x))

    def _reach_ops(self, r: int, open_now: list[Operation]) -> tuple[Operation, ...] | None:
        ops = self.ops
        ret = ops[r].ret
        found = open_now
        j = r + 1
        while j < len(ops) and ret is not None and ops[j].call < ret:
            if not self.is_read[j]:
                found.append(ops[j])
                if len(found) > REACH_OPS_MAX:
                    return None
            j += 1
        return tuple(found)

    def doomed(self, mask: int, state: Any, open_reads: Sequence[tuple[int, int]]) -> bool:
        """True when some open read not yet placed can never be satisfied from ``state``."""
        may_reach = self.model.may_reach
        if may_reach is None:
            return False
        ops = self.ops
        reach = self.reach
        for rbit, r in open_reads:
            if not mask & rbit:
                cands = reach[r]
                if cands is not None and not may_reach(state, ops[r], cands):
                    return True
        return False

    def run(self) -> Outcome:
        """Returns the verdict, a (longest) linearization, and the op that could not be placed."""
        for _ in self.steps():
            pass
        return self.outcome

    def steps(self) -> Iterator[None]:
        """The search as a generator pausing every ``PAUSE_NODES`` nodes (so partitions can
        take turns); on exhaustion, ``self.outcome`` holds what ``run`` returns."""
        ops = self.ops
        model = self.model
        step = model.step
        hashf: Callable[[Any], Hashable] | None = model.hash
        events = self.events
        n = len(events)
        bits = self.bit
        is_read = self.is_read
        open_at = self.open_at
        state = model.init()
        skey = hashf(state) if hashf is not None else state
        mask = 0
        path: Path = None
        pos = 0
        # Failed configurations at a return: (position, completed mask, state key) ->
        # info masks with which it failed (a superset of used info ops fails too).
        failed: dict[tuple[int, int, Hashable], list[int]] = {}
        frames: list[tuple[int, int, Hashable, Iterator[_Goal | None]]] = []
        best = None
        best_len = 0
        while True:
            # Walk forward: calls are deterministic, a return either is already placed or
            # opens a branch point.
            blocked = False
            while pos < n:
                code = events[pos][1]
                if code >= 0:
                    if is_read[code]:
                        if step(state, ops[code]) is not INCONSISTENT:
                            mask |= bits[code]
                            plen = path[3] + 1 if path else 1
                            path = (ops[code].id, state, path, plen)
                        elif self.doomed(mask, state, ((bits[code], code),)):
                            # This read can never be satisfied: it is what cannot be placed.
                            if pos > self.failed_at:
                                self.failed_at, self.failed_op = pos, code
                            blocked = True
                            break
                    pos += 1
                    continue
                x = ~code
                xbit = bits[x]
                if mask & xbit:
                    mask &= ~xbit
                    pos += 1
                    continue
                info_bits = open_at[pos][2]  # type: ignore[index]
                key = (pos, mask & ~info_bits, skey)
                im = mask & info_bits
                lst = failed.get(key)
                if lst is not None and any(e & ~im == 0 for e in lst):
                    blocked = True
                    break
                if path is not None and path[3] > best_len:
                    best, best_len = path, path[3]
                frames.append((pos, mask, skey, self.place(pos, x, mask, state, skey, path)))
                blocked = True
                break
            if not blocked:
                self.outcome: Outcome = ("ok", path, None)
                return
            # Take the next alternative of the innermost branch point; exhausted ones fail.
            while frames:
                fpos, fmask, fkey, alternatives = frames[-1]
                goal = next(alternatives, _EXHAUSTED)
                if goal is None:
                    yield None  # a pause requested by the branch point's search
                    continue
                if goal is not _EXHAUSTED:
                    mask, state, skey, path = goal
                    pos = fpos + 1
                    break
                frames.pop()
                info_bits = open_at[fpos][2]  # type: ignore[index]
                failed.setdefault((fpos, fmask & ~info_bits, fkey), []).append(
                    fmask & info_bits)
                if fpos > self.failed_at:
                    self.failed_at, self.failed_op = fpos, ~events[fpos][1]
            else:
                if self.best is None or (best is not None and best[3] > self.best[3]):
                    self.best = best
                self.outcome = ("illegal", self.best, ops[self.failed_op].id)
                return

    def place(self, pos: int, x: int, mask0: int, state0: Any, skey0: Hashable,
              path0: Path) -> Iterator[tuple[int, Any, Hashable, Path] | None]:
        """Every configuration in which op ``x`` is linearized, reachable from the given one by
        placing open operations before it only as needed (``x``'s bit cleared); ``None`` now
        and then, as a pause."""
        ops = self.ops
        is_info = self.is_info
        twin = self.twin
        ret_of = self.ret_of
        bits = self.bit
        model = self.model
        step = model.step
        step_unknown = model.step_unknown
        hashf = model.hash
        open_writes, open_reads, info_bits = self.open_at[pos]  # type: ignore[misc]
        now = self.events[pos][0]
        xbit = bits[x]
        not_info = ~info_bits
        deadline = self.deadline
        goals: dict[tuple[int, Hashable], list[int]] = {}
        seen: dict[tuple[int, Hashable], list[int]] = {(mask0 & not_info, skey0): [
            mask0 & info_bits]}
        stack: list[tuple[int, Any, Hashable, Path]] = [(mask0, state0, skey0, path0)]
        best = self.best
        may_reach = model.may_reach if self.is_read[x] else None
        check_doom = model.may_reach is not None
        target = ops[x]
        while stack:
            mask, state, skey, path = stack.pop()
            self.nodes += 1
            if not self.nodes % DEADLINE_CHECK_NODES:
                if deadline is not None and time.monotonic() > deadline:
                    raise _Deadline
                yield None
            if may_reach is not None and not may_reach(
                    state, target, [ops[i] for bit, i in open_writes if not mask & bit]):
                continue
            if check_doom and self.doomed(mask, state, open_reads):
                continue
            plen = path[3] if path else 0
            children: list[tuple[int, Any, Hashable, Path]] = []
            for bit, i in open_writes:
                if mask & bit:
                    continue
                tw = twin[i]
                if tw >= 0 and ret_of[tw] > now and not mask & bits[tw]:
                    continue  # its identical, earlier twin is open and goes first
                op = ops[i]
                info = is_info[i]
                if info and step_unknown is not None:
                    succs: Any = step_unknown(state, op)
                else:
                    succs = (step(state, op),)
                for ns in succs:
                    if ns is INCONSISTENT:
                        continue
                    nk = hashf(ns) if hashf is not None else ns
                    if info and nk == skey:
                        continue  # an unknown op that changes nothing: never worth placing
                    nm = mask | bit
                    nlen = plen + 1
                    np: Path = (op.id, ns, path, nlen)
                    for rbit, r in open_reads:
                        if not nm & rbit and step(ns, ops[r]) is not INCONSISTENT:
                            nm |= rbit
                            nlen += 1
                            np = (ops[r].id, ns, np, nlen)
                    if nm & xbit:
                        gkey = (nm & not_info & ~xbit, nk)
                        im = nm & info_bits
                        lst = goals.get(gkey)
                        if lst is None:
                            goals[gkey] = [im]
                        elif any(e & ~im == 0 for e in lst):
                            continue
                        else:
                            lst.append(im)
                        if best is None or nlen > best[3]:
                            best = self.best = np
                        if check_doom and self.doomed(nm, ns, open_reads):
                            continue
                        yield nm & ~xbit, ns, nk, np
                        continue
                    key = (nm & not_info, nk)
                    im = nm & info_bits
                    lst = seen.get(key)
                    if lst is None:
                        seen[key] = [im]
                    elif any(e & ~im == 0 for e in lst):
                        continue
                    else:
                        lst.append(im)
                    children.append((nm, ns, nk, np))
            if children:
                children.reverse()  # explore in the order of the open list
                stack.extend(children)
            if path is not None and (best is None or path[3] > best[3]):
                best = self.best = path


def _unpack(path: Path) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    while path is not None:
        out.append((path[0], path[1]))
        path = path[2]
    out.reverse()
    return out


def check_partition(key: Any, ops: Sequence[Operation], model: Model,
                    deadline: float | None = None) -> PartitionResult:
    """Search one independent partition; verdict "unknown" when ``deadline`` (a
    ``time.monotonic()`` instant) passes first."""
    job = _Job(key, ops, model, deadline)
    while job.advance(None) is None:
        pass
    return job.result()


class _Job:
    """One partition's search, advanced a slice at a time."""

    def __init__(self, key: Any, ops: Sequence[Operation], model: Model,
                 deadline: float | None) -> None:
        self.key = key
        self.ops = ops
        self.seconds = 0.0
        self.model = model.part_model(key) if model.part_model is not None else model
        self.search = _Partition(ops, self.model, deadline)
        self.steps = self.search.steps()
        self.verdict: Verdict | None = None

    def advance(self, pauses: int | None) -> Verdict | None:
        """Run for up to ``pauses`` pauses (None: to the end); the verdict once known."""
        started = time.monotonic()
        try:
            for n, _ in enumerate(self.steps, start=1):
                if pauses is not None and n >= pauses:
                    return None
            self.verdict = self.search.outcome[0]
        except _Deadline:
            self.verdict = "unknown"
        finally:
            self.seconds += time.monotonic() - started
        return self.verdict

    def result(self) -> PartitionResult:
        ids = tuple(sorted(op.id for op in self.ops))
        if self.verdict is None or self.verdict == "unknown":
            # Unfinished: report the longest partial linearization found so far.
            placed = _unpack(self.search.best)
            return PartitionResult(key=self.key, verdict="unknown", operation_ids=ids,
                                   longest=tuple(i for i, _ in placed),
                                   states=tuple(self.model.describe_state(s) for _, s in placed),
                                   seconds=self.seconds)
        _, path, failed = self.search.outcome
        placed = _unpack(path)
        longest = tuple(i for i, _ in placed)
        states = tuple(self.model.describe_state(s) for _, s in placed)
        unplaced: tuple[int, ...] = ()
        if self.verdict == "illegal" and failed is not None:
            done = set(longest)
            rest = [op.id for op in sorted(self.ops, key=lambda o: o.call)
                    if op.status == "ok" and op.id not in done and op.id != failed]
            unplaced = (failed, *rest)
        return PartitionResult(key=self.key, verdict=self.verdict, operation_ids=ids,
                               longest=longest, states=states, unplaced=unplaced,
                               seconds=self.seconds)


def _check_serial(parts: list[tuple[Any, list[Operation]]], model: Model,
                  deadline: float | None) -> tuple[list[PartitionResult], int]:
    """Check partitions taking turns with growing slices, so that an easy illegal partition
    is found before a hard one is ground through; stop at the first illegal one. Returns the
    results in partition order and how many partitions were left unfinished."""
    jobs = [_Job(key, ops, model, deadline) for key, ops in parts]
    pending = list(range(len(jobs)))
    pauses = SLICE_PAUSES_FIRST
    while pending:
        unfinished: list[int] = []
        for idx in pending:
            only = len(pending) == 1 and not unfinished
            verdict = jobs[idx].advance(None if only else pauses)
            if verdict is None:
                unfinished.append(idx)
            elif verdict != "ok":  # illegal decides; unknown means the deadline passed
                left = [j for j in pending if jobs[j].verdict is None]
                return [job.result() for job in jobs], len(left)
        pending = unfinished
        pauses *= SLICE_GROWTH
    return [job.result() for job in jobs], 0


# Work handed to forked workers through inheritance rather than pickling (models hold functions).
_FORK_WORK: tuple[list[tuple[Any, list[Operation]]], Model, float | None] | None = None


def _fork_worker(index: int) -> PartitionResult:  # runs in a worker process
    if _FORK_WORK is None:
        raise AssertionError("worker started without work")
    parts, model, deadline = _FORK_WORK
    key, ops = parts[index]
    return check_partition(key, ops, model, deadline)


def _want_parallel(parts: list[tuple[Any, list[Operation]]], parallel: bool | None) -> int:
    """How many worker processes to use (0: check in this process)."""
    if parallel is False or len(parts) < 2:
        return 0
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if parallel is None:
        total = sum(len(ops) for _, ops in parts)
        if cpus < 2 or total < PARALLEL_OPERATIONS_MIN or len(parts) < PARALLEL_PARTITIONS_MIN:
            return 0
    return max(1, min(cpus, PARALLEL_WORKERS_MAX, len(parts)))


def _check_parallel(parts: list[tuple[Any, list[Operation]]], model: Model,
                    deadline: float | None, workers: int) -> list[PartitionResult]:
    global _FORK_WORK
    _FORK_WORK = (parts, model, deadline)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            chunk = max(1, len(parts) // (workers * 8))
            return list(pool.map(_fork_worker, range(len(parts)), chunksize=chunk))
    finally:
        _FORK_WORK = None


def check(history: History, model: Model, timeout: float | None = None, *,
          parallel: bool | None = None) -> Result:
    """Check ``history`` against ``model``: verdict "ok", "illegal", or "unknown" when
    ``timeout`` seconds pass first. ``parallel``: None decides by the amount of work.
    Raises ``HistoryError`` naming the line of an operation the model does not know."""
    started = time.monotonic()
    validate_functions(history, model)
    deadline = None if timeout is None else started + timeout
    ops = history.operations
    parts = model.partition(ops) if model.partition is not None else [(None, list(ops))]
    workers = _want_parallel(parts, parallel)
    results: list[PartitionResult]
    unchecked = 0
    if workers:
        results = _check_parallel(parts, model, deadline, workers)
    else:
        results, unchecked = _check_serial(parts, model, deadline)
    verdicts = {r.verdict for r in results}
    verdict: Verdict = ("illegal" if "illegal" in verdicts
                        else "unknown" if "unknown" in verdicts else "ok")
    reason = ""
    if verdict == "unknown":
        reason = f"deadline of {timeout:g} s reached before the search finished"
    elif verdict == "illegal":
        first = next(r for r in results if r.verdict == "illegal")
        where = f" (key {first.key!r})" if first.key is not None else ""
        reason = f"operation {first.unplaced[0]} cannot be placed{where}"
        if unchecked:
            reason += f"; {unchecked} other partitions were not checked to the end"
    dropped = sum(1 for op in ops if op.status == "info" and model.read_only(op))
    stats = {"operations": len(ops), "partitions": len(results), "workers": workers,
             "partitions_unchecked": unchecked, "info_reads_dropped": dropped}
    return Result(verdict=verdict, model=model.name, partitions=tuple(results),
                  seconds=time.monotonic() - started, reason=reason, stats=stats)
