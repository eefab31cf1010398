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
* so do writes (and cas) of unknown outcome whose value nothing observes, in a register-like
  model with no observed failed cas: dropped (``_unobserved_writes`` says why that is sound);
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
* a value someone still needs is never overwritten for good (register-like models, see
  ``_Partition.value_lost``): an operation is not placed where it moves the register off a
  value that an op not placed yet needs (a read of it, an ok cas expecting it) when no op not
  placed yet may write that value again. A stale read is then refuted where its value is
  overwritten rather than thousands of operations later at the read itself. A cas of unknown
  outcome that alone writes a value a completed op needs counts as needing its expected
  value (it must have happened), up chains of such cas.

A partition is illegal when every alternative fails. What the report then shows:

* **longest**: the longest partial linearization (a sequence of operations that respects
  real-time order and that the model accepts step by step) the search saw anywhere: at any
  node of any branch point, counting every child it generated, pruned or not. Eager reads
  count; operations of unknown outcome that would change nothing are never placed, so never
  counted. Trailing operations of unknown outcome are then dropped (they are optional) and the
  prefix is extended greedily: completed operations first (earliest return first), an
  operation of unknown outcome only when a completed one fits after it; when nothing can be
  appended, a read-only completed candidate is inserted after an earlier step whose state it
  fits, if its real-time window allows (it changes no later state); until nothing fits (at
  most ``EXTEND_STEPS_MAX`` steps). The result is *maximal*, not *maximum*: no operation
  that must happen can be appended to it, nor a read-only one inserted, but another order
  might be longer (finding the longest is as hard as the check itself). ``longest_searched``
  says how many of its first steps the search itself reached.
* **candidates**: the operations that could go next after it: not linearized, and invoked
  before every completed operation left out had returned. Each one with the model's answer
  in the state after ``longest``: rejected, or (unknown outcome) allowed but no completed
  candidate fits after it either.
* **culprit** (first of ``unplaced``): of the completed operations left out, the one that
  returned first. Every order extending ``longest`` must place it before any operation
  invoked after that return: it is the one the search was forced to place and could not, as
  in Knossos and Porcupine. It is always a candidate, so the model rejects it there.

Memory is bounded: the failure memo and the branch points' visited sets are the only
structures that grow with the work rather than the input. Together they hold at most
``MEMO_ENTRIES_MAX`` entries per process (the sets are counted every ``DEADLINE_CHECK_NODES``
nodes, so the bound may be passed by a few thousand entries between two counts). Beyond it
the partition is "unknown" with that reason, its memory is released, and other partitions go
on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterator, Sequence

from lincheck.edn import freeze
from lincheck.history import History, Operation
from lincheck.models import INCONSISTENT, Model
from lincheck.result import Candidate, PartitionResult, Result
from lincheck.validate import validate_functions
from lincheck.zones import decide as decide_by_zones

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    from lincheck.result import DecidedBy, Verdict

__all__ = ["check", "check_partition"]

# How many search nodes run between two looks at the clock.
DEADLINE_CHECK_NODES = 256
# Partitions take turns: first slices of this many pauses (DEADLINE_CHECK_NODES nodes each),
# each round this many times longer.
SLICE_PAUSES_FIRST = 16
SLICE_GROWTH = 4
# Beyond this many candidate ops, looking ahead for a read costs more than it saves.
REACH_OPS_MAX = 256
# Branch points whose open ops are kept indexed by value (``_Partition.value_lost``); each
# holds about as much as the open ops there. Cleared when full: a cache.
OPEN_INDEX_POSITIONS_MAX = 4096
# Lookahead answers kept per partition, (read, state) -> hopeless; cleared when full (a cache:
# dropping it costs time, not correctness). About 0.2 KiB each.
REACH_CACHE_ENTRIES_MAX = 200_000
# Failure-memo and visited-set entries held at once by the searches of one process (about
# 0.3 KiB each): the search's only structures that grow with the work done, not the input.
MEMO_ENTRIES_MAX = 1_000_000
# Steps appended greedily to the longest partial linearization of an illegal partition.
EXTEND_STEPS_MAX = 100_000
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

# A linearization under construction: a persistent list (op id, state after, parent, length).
if TYPE_CHECKING:
    Path = tuple[int, Any, Any, int] | None
    # A configuration: (linearized mask, state, state key, path).
    _Goal = tuple[int, Any, Hashable, Path]
    Outcome = tuple[Verdict, Path]


class _Deadline(Exception):
    pass


class _MemoFull(Exception):
    pass


class _MemoBudget:
    """Memo entries held by the live searches of one process, against ``entries_max``."""

    def __init__(self, entries_max: int) -> None:
        if entries_max < 1:
            raise ValueError(f"memo_entries_max must be at least 1, not {entries_max}")
        self.entries = 0
        self.entries_max = entries_max


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


def _unobserved_writes(ops: Sequence[Operation], model: Model) -> set[int]:
    """Ids of the writes and cas of unknown outcome whose new value no read returned and no
    cas expected, for a register-like model (``model.register_view``) in a partition with no
    observed failed cas. Such an op may be left out of any linearization: the values it
    leaves until the next write are observed by no one, so without it every operation still
    sees what it saw (a failed cas would not: it observes a value it was not, hence the
    condition). Crashed writes of values nobody read are common, and each one otherwise
    multiplies the orders the search tries. A model may say which ops it can drop itself
    (``model.droppable``: a queue's crashed enqueues of elements no dequeue returned)."""
    if model.droppable is not None:
        return model.droppable(ops)
    view = model.register_view
    if view is None:
        return set()
    seen: list[tuple[Operation, str, Any]] = []
    for op in ops:
        kind = view(op)
        if kind is None:
            return set()  # an observed failed cas, or an op this rule does not know
        seen.append((op, *kind))
    try:
        observed = {value for op, kind, value in seen if kind == "read" and op.status == "ok"}
        observed |= {value[0] for _, kind, value in seen if kind == "cas"}
        return {op.id for op, kind, value in seen if op.status == "info" and (
            (kind == "write" and value not in observed)
            or (kind == "cas" and value[1] not in observed))}
    except TypeError:  # an unhashable value
        return set()


class _Partition:
    """The search over one partition's operations: a depth-first walk of the history's events
    that branches only at returns, with a memo of configurations known to fail."""

    def __init__(self, ops: Sequence[Operation], model: Model, deadline: float | None,
                 budget: _MemoBudget | None = None) -> None:
        self.model = model
        self.deadline = deadline
        self.budget = budget if budget is not None else _MemoBudget(MEMO_ENTRIES_MAX)
        self.memo_entries = 0  # this search's share of the budget
        read_only = model.read_only
        # Every op that can matter, for the explanation of a failure; the search itself also
        # leaves out writes of unknown outcome that nothing observes (see _unobserved_writes).
        self.all_ops = [op for op in sorted(ops, key=lambda o: o.call)
                        if not (op.status == "info" and read_only(op))]
        unobserved = _unobserved_writes(self.all_ops, model)
        self.ops = [op for op in self.all_ops if op.id not in unobserved]
        self.is_read = [op.status == "ok" and read_only(op) for op in self.ops]
        self.is_info = [op.status == "info" for op in self.ops]
        self.twin = _twins(self.ops, self.is_read)
        self.nodes = 0
        # The longest partial linearization seen so far, and its length (kept apart: compared
        # at every generated node, where unpacking the path would cost).
        self.best: Path = None
        self.best_len = 0
        self.reach_cache: dict[tuple[int, Hashable], bool] = {}
        self._prepare()
        self._prepare_values()

    def grow_memo(self, entries: int) -> None:
        """Account for ``entries`` more (or, negative, fewer) memo entries held by this search."""
        self.memo_entries += entries
        budget = self.budget
        budget.entries += entries
        if entries > 0 and budget.entries > budget.entries_max:
            raise _MemoFull

    def release_memo(self) -> None:
        """Give this search's memo entries back to the budget (its memo is being dropped)."""
        self.budget.entries -= self.memo_entries
        self.memo_entries = 0

    def note(self, path: Path) -> None:
        """Keep ``path`` if it is the longest partial linearization seen so far."""
        if path is not None and path[3] > self.best_len:
            self.best, self.best_len = path, path[3]

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
        self.call_pos = [0] * len(ops)
        for position, (_, code) in enumerate(events):
            if code >= 0:
                self.call_pos[code] = position
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

    def _prepare_values(self) -> None:
        """For a register-like model (``model.register_view``): per op, the value it needs the
        register to hold (an ok read's output, an ok cas's expected value) and the value it
        may write; per value, the last call position of an op needing it and of one writing
        it. ``value_lost`` uses them. Left unset (None) when some op is neither (an append, a
        delete) or a value is unhashable: the rule then never applies."""
        self.needs: list[Any] | None = None
        self.writes: list[Any] = []
        # Per branch point (event position), built on first use: value -> the (bit, op) of
        # the open ops needing it, and of those that may write it (at most
        # OPEN_INDEX_POSITIONS_MAX positions at once).
        self.open_values: dict[int, tuple[dict[Any, list[tuple[int, int]]],
                                          dict[Any, list[tuple[int, int]]]]] = {}
        self.last_need_call: dict[Any, int] = {}
        self.last_write_call: dict[Any, int] = {}
        view = self.model.register_view
        if view is None:
            return
        nothing: Any = _EXHAUSTED  # needs or writes no value
        needs = [nothing] * len(self.ops)
        writes = [nothing] * len(self.ops)
        unsure_cas: dict[int, Any] = {}  # cas of unknown outcome -> the value it expects
        try:
            for i, op in enumerate(self.ops):
                kind = view(op)
                if kind is None:
                    if self.model.read_only(op):
                        continue  # an observed failed cas: writes nothing, needs no one value
                    return
                what, value = kind
                if what == "read":
                    needs[i] = value
                elif what == "write":
                    writes[i] = value
                elif what == "cas":
                    writes[i] = value[1]
                    if op.status == "ok":
                        needs[i] = value[0]
                    else:
                        unsure_cas[i] = value[0]
                else:
                    return
                call = self.call_pos[i]
                if needs[i] is not nothing:
                    self.last_need_call[needs[i]] = call
                if writes[i] is not nothing:
                    self.last_write_call[writes[i]] = call
            self._needs_by_proxy(needs, writes, unsure_cas, nothing)
        except TypeError:  # an unhashable value
            self.last_need_call.clear()
            self.last_write_call.clear()
            return
        self.needs, self.writes = needs, writes

    def _needs_by_proxy(self, needs: list[Any], writes: list[Any],
                        unsure_cas: dict[int, Any], nothing: Any) -> None:
        """A cas of unknown outcome that is the only op writing a value some completed op
        needs (and not the initial value) must take effect after all, while that op is not
        placed (no other way leads to the value): it needs its expected value as much as a
        completed cas does. Up chains of such cas, to a fixpoint."""
        initial = self.model.init()
        writers: dict[Any, int] = {}
        for value in writes:
            if value is not nothing:
                writers[value] = writers.get(value, 0) + 1
        needed = {value for value in needs if value is not nothing}
        changed = True
        while changed:
            changed = False
            for i, expected in unsure_cas.items():
                new = writes[i]
                if (needs[i] is not nothing or writers[new] != 1 or new not in needed
                        or new == initial):
                    continue
                needs[i] = expected
                needed.add(expected)
                call = self.call_pos[i]
                if self.last_need_call.get(expected, -1) < call:
                    self.last_need_call[expected] = call
                changed = True

    def value_lost(self, value: Any, mask: int, pos: int,
                   open_writes: Sequence[tuple[int, int]],
                   open_reads: Sequence[tuple[int, int]]) -> bool:
        """True when leaving ``value`` (the register's state) at event ``pos`` with the ops of
        ``mask`` placed is hopeless: an op not placed yet needs the register to hold ``value``
        (a later or open read of it, an ok cas expecting it) and no op not placed yet may
        write it again. Sound for registers only (``_prepare_values``); it spots a stale read
        where the value is overwritten, not where the read comes, thousands of operations
        later, which is what makes an illegal crash-heavy history cheap to refute."""
        try:
            needed = self.last_need_call.get(value, -1) > pos
        except TypeError:  # an unhashable state: no op needs it
            return False
        by_value = self.open_values.get(pos)
        if by_value is None:
            if len(self.open_values) >= OPEN_INDEX_POSITIONS_MAX:
                self.open_values.clear()  # a cache: rebuilt on demand
            by_value = self.open_values[pos] = self._open_by_value(open_writes, open_reads)
        if not needed:
            for bit, _ in by_value[0].get(value, ()):
                if not mask & bit:
                    break
            else:
                return False
        if self.last_write_call.get(value, -1) > pos:
            return False
        return all(mask & bit for bit, _ in by_value[1].get(value, ()))

    def _open_by_value(self, open_writes: Sequence[tuple[int, int]],
                       open_reads: Sequence[tuple[int, int]]
                       ) -> tuple[dict[Any, list[tuple[int, int]]],
                                  dict[Any, list[tuple[int, int]]]]:
        needs, writes = self.needs, self.writes
        assert needs is not None
        needers: dict[Any, list[tuple[int, int]]] = {}
        writers: dict[Any, list[tuple[int, int]]] = {}
        for bit, i in (*open_reads, *open_writes):
            if needs[i] is not _EXHAUSTED:
                needers.setdefault(needs[i], []).append((bit, i))
        for bit, i in open_writes:
            if writes[i] is not _EXHAUSTED:
                writers.setdefault(writes[i], []).append((bit, i))
        return needers, writers

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

    def doomed(self, mask: int, state: Any, skey: Hashable,
               open_reads: Sequence[tuple[int, int]]) -> bool:
        """True when some open read not yet placed can never be satisfied from ``state``."""
        may_reach = self.model.may_reach
        if may_reach is None:
            return False
        ops = self.ops
        reach = self.reach
        cache = self.reach_cache
        for rbit, r in open_reads:
            if not mask & rbit:
                cands = reach[r]
                if cands is None:
                    continue
                # The answer depends on the read and the state only (its candidates are
                # fixed): the same pair comes back at node after node.
                ckey = (r, skey)
                hopeless = cache.get(ckey)
                if hopeless is None:
                    if len(cache) >= REACH_CACHE_ENTRIES_MAX:
                        cache.clear()
                    hopeless = cache[ckey] = not may_reach(state, ops[r], cands)
                if hopeless:
                    return True
        return False

    def run(self) -> Outcome:
        """Returns the verdict and, for "ok", a linearization (else see ``self.best``)."""
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
                        elif self.doomed(mask, state, skey, ((bits[code], code),)):
                            # This read can never be satisfied from here: give up this branch.
                            self.note(path)
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
                self.note(path)
                lst = failed.get(key)
                if lst is not None and any(e & ~im == 0 for e in lst):
                    blocked = True
                    break
                frames.append((pos, mask, skey, self.place(pos, x, mask, state, skey, path)))
                blocked = True
                break
            if not blocked:
                self.note(path)
                self.outcome: Outcome = ("ok", path)
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
                self.grow_memo(1)
            else:
                self.outcome = ("illegal", self.best)
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
        # A local copy of the best length, refreshed after every yield (deeper branch points
        # run meanwhile and may have found longer ones).
        best_len = self.best_len
        made = flushed = 0  # memo entries (seen and goals) added, and those accounted for
        may_reach = model.may_reach if self.is_read[x] else None
        check_doom = model.may_reach is not None
        watch_values = self.needs is not None
        value_lost = self.value_lost
        target = ops[x]
        while stack:
            mask, state, skey, path = stack.pop()
            self.nodes += 1
            if not self.nodes % DEADLINE_CHECK_NODES:
                if deadline is not None and time.monotonic() > deadline:
                    raise _Deadline
                self.grow_memo(made)
                flushed += made
                made = 0
                yield None
                best_len = self.best_len
            if may_reach is not None and not may_reach(
                    state, target, [ops[i] for bit, i in open_writes if not mask & bit]):
                continue
            if check_doom and self.doomed(mask, state, skey, open_reads):
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
                    if watch_values and nk != skey and value_lost(
                            state, mask | bit, pos, open_writes, open_reads):
                        continue  # it overwrites a value someone still needs, for good
                    nm = mask | bit
                    nlen = plen + 1
                    np: Path = (op.id, ns, path, nlen)
                    for rbit, r in open_reads:
                        if not nm & rbit and step(ns, ops[r]) is not INCONSISTENT:
                            nm |= rbit
                            nlen += 1
                            np = (ops[r].id, ns, np, nlen)
                    if nlen > best_len:
                        self.best, self.best_len = np, nlen
                        best_len = nlen
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
                        made += 1
                        if check_doom and self.doomed(nm, ns, nk, open_reads):
                            continue
                        yield nm & ~xbit, ns, nk, np
                        best_len = self.best_len
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
                    made += 1
                    children.append((nm, ns, nk, np))
            if children:
                children.reverse()  # explore in the order of the open list
                stack.extend(children)
        self.grow_memo(-flushed)  # this branch point's sets die with it


def _unpack(path: Path) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    while path is not None:
        out.append((path[0], path[1]))
        path = path[2]
    out.reverse()
    return out


class _Frontier:
    """Which operations may go next after a partial linearization: those not placed that were
    invoked before the earliest return among completed operations not placed (placing any
    other would put it after an operation that returned before it was invoked)."""

    def __init__(self, ops: Sequence[Operation], done: list[bool]) -> None:
        self.ops = ops  # in call order
        self.done = done
        self.by_ret = sorted((i for i, op in enumerate(ops) if op.status == "ok"),
                             key=self.ret_of)
        self.first = 0  # by_ret[:first] are all placed
        self.admitted = 0  # ops[:admitted] were invoked before the earliest open return
        self.open: list[int] = []  # the candidates, in call order
        self._admit()

    def ret_of(self, i: int) -> int:
        ret = self.ops[i].ret
        if ret is None:
            raise AssertionError(f"completed operation {self.ops[i].id} has no return")
        return ret

    def earliest_return(self) -> int | None:
        """The completed operation not placed that returned first (None: all are placed)."""
        by_ret, done = self.by_ret, self.done
        while self.first < len(by_ret) and done[by_ret[self.first]]:
            self.first += 1
        return by_ret[self.first] if self.first < len(by_ret) else None

    def _admit(self) -> None:
        first = self.earliest_return()
        limit = float("inf") if first is None else self.ret_of(first)
        ops = self.ops
        while self.admitted < len(ops) and ops[self.admitted].call < limit:
            if not self.done[self.admitted]:
                self.open.append(self.admitted)
            self.admitted += 1

    def place(self, i: int) -> None:
        self.done[i] = True
        self.open.remove(i)
        self._admit()


def _successors(model: Model, state: Any, op: Operation) -> list[Any]:
    """The states ``op`` may lead to from ``state`` (none: the model rejects it there)."""
    if op.status == "info" and model.step_unknown is not None:
        nexts = list(model.step_unknown(state, op))
    else:
        nexts = [model.step(state, op)]
    return [ns for ns in nexts if ns is not INCONSISTENT]


def _fits_any(model: Model, state: Any, ops: Sequence[Operation]) -> bool:
    step = model.step
    return any(step(state, op) is not INCONSISTENT for op in ops)


def _next_fit(model: Model, ops: Sequence[Operation], cands: list[int],
              state: Any) -> tuple[int, Any] | None:
    """The candidate to append greedily, and the state after it: a completed one that the
    model accepts (earliest return first), else one of unknown outcome after which some
    completed one fits. None when nothing more fits."""
    done = sorted((i for i in cands if ops[i].status == "ok"), key=lambda i: ops[i].ret or 0)
    step = model.step
    for i in done:
        ns = step(state, ops[i])
        if ns is not INCONSISTENT:
            return i, ns
    completed = [ops[i] for i in done]
    for i in cands:
        if ops[i].status == "info":
            for ns in _successors(model, state, ops[i]):
                if _fits_any(model, ns, completed):
                    return i, ns
    return None


def _window_start(ops: Sequence[Operation], index: dict[int, int],
                  placed: list[tuple[int, Any]], op: Operation) -> int:
    """The last step of ``placed`` (1-based; 0: none) whose operation returned before ``op``
    was invoked: real-time order lets ``op`` go after any step from there on."""
    for j in range(len(placed), 0, -1):
        other = ops[index[placed[j - 1][0]]]
        if other.status == "ok" and other.ret is not None and other.ret < op.call:
            return j
    return 0


def _insert_read(ops: Sequence[Operation], index: dict[int, int], model: Model,
                 placed: list[tuple[int, Any]], cands: list[int]) -> int | None:
    """Insert a read-only candidate after an earlier step whose state it fits (read-only, it
    changes no later state; a candidate, it may go anywhere in its real-time window), so
    that a prefix the greedy appending missed is not reported. Returns the candidate
    inserted, or None."""
    step, init = model.step, model.init
    for i in cands:
        op = ops[i]
        if op.status != "ok" or not model.read_only(op):
            continue
        start = _window_start(ops, index, placed, op)
        for j in range(len(placed) - 1, start - 1, -1):  # the state after step j
            state = placed[j - 1][1] if j else init()
            if step(state, op) is not INCONSISTENT:
                placed.insert(j, (op.id, state))
                return i
    return None


def _explain_failure(ops: Sequence[Operation], model: Model, path: Path
                     ) -> tuple[list[tuple[int, Any]], int, tuple[int, ...],
                                tuple[Candidate, ...]]:
    """From the longest partial linearization the search saw: (the prefix, extended greedily
    until nothing fits; how many of its steps the search reached; the completed operations
    left out, culprit first; the candidates with the model's answer). See the module
    docstring for the rules."""
    index = {op.id: i for i, op in enumerate(ops)}
    placed = _unpack(path)
    # Trailing operations of unknown outcome are optional: the greedy step puts back those
    # that let a completed operation follow.
    while placed and ops[index[placed[-1][0]]].status == "info":
        placed.pop()
    searched = len(placed)
    done = [False] * len(ops)
    for op_id, _ in placed:
        done[index[op_id]] = True
    frontier = _Frontier(ops, done)
    state = placed[-1][1] if placed else model.init()
    complete = False
    for _ in range(EXTEND_STEPS_MAX):
        fit = _next_fit(model, ops, frontier.open, state)
        if fit is not None:
            i, state = fit
            placed.append((ops[i].id, state))
            frontier.place(i)
            continue
        inserted = _insert_read(ops, index, model, placed, frontier.open)
        if inserted is None:
            complete = True
            break
        frontier.place(inserted)
    culprit = frontier.earliest_return()
    if culprit is None:
        # Every completed operation is placed: that is a linearization, so "illegal" is wrong.
        raise AssertionError("search found no linearization, yet one exists: "
                             f"{[op_id for op_id, _ in placed]}")
    cands = frontier.open
    completed = sorted((i for i in cands if ops[i].status == "ok"), key=frontier.ret_of)
    if not completed or completed[0] != culprit:
        raise AssertionError(f"culprit {ops[culprit].id} is not the first candidate")
    unknown = [i for i in cands if ops[i].status != "ok"]
    completed_ops = [ops[i] for i in completed]
    judged: list[Candidate] = []
    for i in completed + unknown:  # the rejected unknown ones first, see below
        op = ops[i]
        nexts = _successors(model, state, op)
        after = _window_start(ops, index, placed, op)
        read_only = op.status == "ok" and model.read_only(op)
        if not nexts:
            judged.append(Candidate(op.id, "rejected", "", after, read_only))
        elif op.status != "ok" and not any(_fits_any(model, ns, completed_ops)
                                           for ns in nexts):
            judged.append(Candidate(op.id, "unhelpful", model.describe_state(nexts[0]), after,
                                    read_only))
        else:
            if complete:
                raise AssertionError(f"operation {op.id} fits after a maximal prefix")
            judged.append(Candidate(op.id, "allowed", model.describe_state(nexts[0]), after,
                                    read_only))
    # Of unknown outcome, those the model rejects say more than those merely unhelpful.
    judged.sort(key=lambda c: c.outcome == "unhelpful")
    chosen = set(completed)
    rest = [op.id for i, op in enumerate(ops)
            if op.status == "ok" and not done[i] and i not in chosen]
    unplaced = tuple(ops[i].id for i in completed) + tuple(rest)
    return placed, searched, unplaced, tuple(judged)


def check_partition(key: Any, ops: Sequence[Operation], model: Model,
                    deadline: float | None = None, *,
                    memo_entries_max: int = MEMO_ENTRIES_MAX) -> PartitionResult:
    """Search one independent partition; verdict "unknown" when ``deadline`` (a
    ``time.monotonic()`` instant) passes first, or the memo would exceed
    ``memo_entries_max`` entries."""
    job = _Job(key, ops, model, deadline, _MemoBudget(memo_entries_max))
    while job.advance(None) is None:
        pass
    return job.result()


class _Job:
    """One partition's check: the zone algorithm when its precondition holds, else the search,
    advanced a slice at a time."""

    def __init__(self, key: Any, ops: Sequence[Operation], model: Model,
                 deadline: float | None, budget: _MemoBudget) -> None:
        self.key = key
        self.ops = ops
        self.seconds = 0.0
        self.deadline = deadline
        self.model = model.part_model(key) if model.part_model is not None else model
        self.search = _Partition(ops, self.model, deadline, budget)
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
        except _Deadline:
            self.verdict, self.stopped_by = "unknown", "deadline"
        except _MemoFull:
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
        except (_Deadline, _MemoFull):
            pass  # explain from the longest prefix the search saw
        finally:
            search.release_memo()
        placed, searched, unplaced, cands = _explain_failure(search.all_ops, self.model,
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
            placed = _unpack(self.search.outcome[1])
            return PartitionResult(key=self.key, verdict="ok", operation_ids=ids,
                                   longest=tuple(i for i, _ in placed),
                                   states=tuple(describe(s) for _, s in placed),
                                   seconds=self.seconds, longest_searched=len(placed))
        if self.verdict == "illegal":
            placed, searched, unplaced, cands = _explain_failure(
                self.search.all_ops, self.model, self.search.best)
            return PartitionResult(key=self.key, verdict="illegal", operation_ids=ids,
                                   longest=tuple(i for i, _ in placed),
                                   states=tuple(describe(s) for _, s in placed),
                                   unplaced=unplaced, seconds=self.seconds, candidates=cands,
                                   longest_searched=searched)
        # Unfinished: the longest partial linearization found so far.
        placed = _unpack(self.search.best)
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
    budget = _MemoBudget(memo_entries_max)
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


# Work handed to forked workers through inheritance rather than pickling (models hold functions).
_FORK_WORK: tuple[list[tuple[Any, list[Operation]]], Model, float | None, int] | None = None


def _fork_worker(index: int) -> PartitionResult:  # runs in a worker process
    if _FORK_WORK is None:
        raise AssertionError("worker started without work")
    parts, model, deadline, memo_entries_max = _FORK_WORK
    key, ops = parts[index]
    return check_partition(key, ops, model, deadline, memo_entries_max=memo_entries_max)


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
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return max(1, min(cpus, PARALLEL_WORKERS_MAX, len(parts)))


def _check_parallel(parts: list[tuple[Any, list[Operation]]], model: Model,
                    deadline: float | None, workers: int,
                    memo_entries_max: int) -> list[PartitionResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _FORK_WORK
    _FORK_WORK = (parts, model, deadline, memo_entries_max)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            chunk = max(1, len(parts) // (workers * 8))
            return list(pool.map(_fork_worker, range(len(parts)), chunksize=chunk))
    finally:
        _FORK_WORK = None


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
