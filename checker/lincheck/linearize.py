"""The search for a linearization of one partition (the checking itself: what runs it, and
for how long, is ``lincheck.search``; what a failure shows, ``lincheck.failure``).

Wing & Gong's search, in Lowe's just-in-time form: a depth-first walk over the history's
events in order, where an operation is linearized only when something forces it, namely the
return of an operation not yet linearized, which must then be placed after some sequence of
operations open at that moment. Each return is thus a branch point whose alternatives are the
configurations (linearized set, model state) with that operation placed. The linearized set is
an int bitset over *slots* (an operation holds a slot from its call to its return, so masks
stay as small as the concurrency). Lowe's memoization: a configuration that failed at a given
return is remembered and never explored again.

Pruning, each justified where it is applied (the rules worked out before the search starts
are in ``lincheck.pruning``):

* read-only operations (``model.read_only``) of unknown outcome constrain nothing: dropped;
* so do writes (and cas) of unknown outcome whose value nothing observes, in a register-like
  model with no observed failed cas: dropped (``pruning.unobserved_writes``);
* read-only operations of known outcome are placed eagerly, as soon as the state matches them,
  and never branched on (placing one never changes the state, so placing it is never worse);
* an operation of unknown outcome (info) is never placed where it leaves the state unchanged,
  and a configuration dominates another with the same state and completed operations whose
  set of used info operations is a superset (unused info operations are pure freedom), both in
  the failure memo and among a branch point's alternatives;
* symmetry (``pruning.twins``): of two identical operations the later one is never placed
  while the earlier one is open and unplaced;
* lookahead (``model.may_reach``): a configuration where an open read can no longer become
  consistent with the operations that may still be placed before it returns is abandoned at
  once, instead of at that read's return.
* a value someone still needs is never overwritten for good (``pruning.ValueWatch``). A stale
  read is then refuted where its value is overwritten rather than thousands of operations
  later at the read itself.

Invariants: a configuration's mask holds only slots of operations open at its position, and
never the slot of one already returned; ``best`` is the longest path any node generated, and
``best_len`` its length; the memo entries this search holds are ``memo_entries``, and all of
them are given back (``release_memo``) before its memo is dropped.

Memory is bounded: the failure memo and the branch points' visited sets are the only
structures that grow with the work rather than the input. Together they hold at most
``MEMO_ENTRIES_MAX`` entries per process (the sets are counted every ``DEADLINE_CHECK_NODES``
nodes, so the bound may be passed by a few thousand entries between two counts). Beyond it
the search raises ``MemoFull``; past its deadline, ``Deadline``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence

from lincheck.history import Operation
from lincheck.models import INCONSISTENT, Model
from lincheck.pruning import ValueWatch, twins, unobserved_writes

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    from lincheck.result import Verdict

__all__ = ["MEMO_ENTRIES_MAX", "Deadline", "MemoBudget", "MemoFull", "Partition", "unpack"]

# How many search nodes run between two looks at the clock.
DEADLINE_CHECK_NODES = 256
# Beyond this many candidate ops, looking ahead for a read costs more than it saves.
REACH_OPS_MAX = 256
# Lookahead answers kept per partition, (read, state) -> hopeless; cleared when full (a cache:
# dropping it costs time, not correctness). About 0.2 KiB each.
REACH_CACHE_ENTRIES_MAX = 200_000
# Failure-memo and visited-set entries held at once by the searches of one process (about
# 0.3 KiB each): the search's only structures that grow with the work done, not the input.
MEMO_ENTRIES_MAX = 1_000_000

# A linearization under construction: a persistent list (op id, state after, parent, length).
if TYPE_CHECKING:
    Path = tuple[int, Any, Any, int] | None
    # A configuration: (linearized mask, state, state key, path).
    _Goal = tuple[int, Any, Hashable, Path]
    Outcome = tuple[Verdict, Path]
    # The ops open at a return: (open writes, open reads, info bits), each as (slot bit, op).
    OpenSet = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...], int]

# What ``open_at`` holds at a call's position: nothing is decided at a call.
_AT_CALL: OpenSet = ((), (), 0)


class Deadline(Exception):
    """The search's deadline passed."""


class MemoFull(Exception):
    """The searches of this process would hold more memo entries than their budget."""


class MemoBudget:
    """Memo entries held by the live searches of one process, against ``entries_max``."""

    def __init__(self, entries_max: int) -> None:
        if entries_max < 1:
            raise ValueError(f"memo_entries_max must be at least 1, not {entries_max}")
        self.entries = 0
        self.entries_max = entries_max


_EXHAUSTED: Any = object()  # no alternative left at a branch point


class Partition:
    """The search over one partition's operations: a depth-first walk of the history's events
    that branches only at returns, with a memo of configurations known to fail."""

    def __init__(self, ops: Sequence[Operation], model: Model, deadline: float | None,
                 budget: MemoBudget | None = None) -> None:
        self.model = model
        self.deadline = deadline
        self.budget = budget if budget is not None else MemoBudget(MEMO_ENTRIES_MAX)
        self.memo_entries = 0  # this search's share of the budget
        read_only = model.read_only
        # Every op that can matter, for the explanation of a failure; the search itself also
        # leaves out writes of unknown outcome that nothing observes (see unobserved_writes).
        self.all_ops = [op for op in sorted(ops, key=lambda o: o.call)
                        if not (op.status == "info" and read_only(op))]
        unobserved = unobserved_writes(self.all_ops, model)
        self.ops = [op for op in self.all_ops if op.id not in unobserved]
        self.is_read = [op.status == "ok" and read_only(op) for op in self.ops]
        self.is_info = [op.status == "info" for op in self.ops]
        self.twin = twins(self.ops, self.is_read)
        self.nodes = 0
        # The longest partial linearization seen so far, and its length (kept apart: compared
        # at every generated node, where unpacking the path would cost).
        self.best: Path = None
        self.best_len = 0
        self.reach_cache: dict[tuple[int, Hashable], bool] = {}
        self._prepare()
        self.values = ValueWatch(self.ops, model, self.call_pos)
        self.needs = self.values.needs  # per op, the value it needs (None: rule off)

    def grow_memo(self, entries: int) -> None:
        """Account for ``entries`` more (or, negative, fewer) memo entries held by this search."""
        self.memo_entries += entries
        budget = self.budget
        budget.entries += entries
        if entries > 0 and budget.entries > budget.entries_max:
            raise MemoFull

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
        self.open_at: list[OpenSet] = []
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
                self.open_at.append(_AT_CALL)
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
        """The search as a generator pausing every ``DEADLINE_CHECK_NODES`` nodes (so partitions can
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
                info_bits = open_at[pos][2]
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
                info_bits = open_at[fpos][2]
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
        open_writes, open_reads, info_bits = self.open_at[pos]
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
        value_lost = self.values.value_lost
        target = ops[x]
        while stack:
            mask, state, skey, path = stack.pop()
            self.nodes += 1
            if not self.nodes % DEADLINE_CHECK_NODES:
                if deadline is not None and time.monotonic() > deadline:
                    raise Deadline
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


def unpack(path: Path) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    while path is not None:
        out.append((path[0], path[1]))
        path = path[2]
    out.reverse()
    return out
