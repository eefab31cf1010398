"""Registers whose written values are distinct, decided without search (after Gibbons &
Korach, 1997, extended to compare-and-set).

When every write (and every cas's new value) writes a value no other writes, and none writes
the initial value, the register holds each value during one unbroken stretch of any
linearization, and each read or cas names the write it saw. A successful ``cas a b`` reads
``a`` and writes ``b`` at one instant, so the stretch of ``b`` follows that of ``a`` at once:
values linked by cas form a *chain* (the initial value heads one; each plain write heads
another) whose stretches are contiguous and in a fixed order. The operations of one chain are
its writes and cas, and the reads of its values.

Conditions, each necessary, together sufficient (a linearization is built from them):

1. every read and cas observes a value that is the initial one or written by some operation,
   and no value is consumed by two cas;
2. a chain's operations can be ordered alone: placing the writer of each of its values after
   the call of every operation of the previous value, and before the return of every
   operation of its own value (the prefix maximum of the one must stay below the other);
   a cas must not depend on itself (expect a value only it writes, or one written by a
   cas that expects its new value...);
3. for a chain take ``f``, the earliest return among its operations, and ``s``, the latest
   call. If ``f < s`` its *forward zone* ``[f, s]`` is covered by the chain's stretch: no two
   forward zones may intersect (the register would hold two values at once);
4. otherwise its *backward zone* is ``(s, f)``: every operation of the chain is open through
   it, and the chain can go at any one point of it, but not at a point inside another chain's
   forward zone, so that backward zone must not lie inside a forward zone.

Operations of unknown outcome (``info``): a read constrains nothing and is left out; a write or
cas whose value no operation that must happen observes is left out too (removing it leaves
every other operation observing what it did); one whose value is observed must have taken
effect, after its call, and counts as returning after every event of the history.

The linearization: chains in the order of their zones (a backward one at a free point of its
zone), each in the order of condition 2. ``decide`` checks it against real-time order and
replays it through the model, so an "ok" carries a witness that has been checked.
``O(n log n)`` for ``n`` operations.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from lincheck.history import Operation
from lincheck.models import INCONSISTENT, Model

# Run time needs nothing from typing (importing it costs a per-file run): see _records.
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any, Literal, NamedTuple
else:
    from lincheck._records import Record as NamedTuple

__all__ = ["ZoneDecision", "decide"]

# Where a backward chain goes, between two integer event indexes; how far past its zone a
# forward chain's placement may reach (less than half the gap between two events).
_BACKWARD_POINT = 0.5
_ZONE_MARGIN = 0.3


class ZoneDecision(NamedTuple):
    """The zone algorithm's verdict on one partition.

    ``order``: for "ok", a linearization (every completed operation, and those of unknown
    outcome that must have taken effect) with the model state after each; empty for "illegal".
    ``reason``: for "illegal", the condition that fails, in words.
    """

    verdict: Literal["ok", "illegal"]
    order: tuple[tuple[Operation, Any], ...] = ()
    reason: str = ""


class _Value:
    """One value's stretch: the operation that wrote it (None: the initial value), and the
    reads that returned it."""

    __slots__ = ("reads", "value", "writer")

    def __init__(self, value: Any, writer: Operation | None) -> None:
        self.value = value
        self.writer = writer
        self.reads: list[Operation] = []


class _Chain:
    __slots__ = ("anchor", "first_ret", "last_call", "ordered", "values")

    def __init__(self, values: list[_Value]) -> None:
        self.values = values
        self.ordered: list[Operation] = []  # condition 2's order
        self.first_ret = 0.0  # f
        self.last_call = 0.0  # s
        self.anchor = 0.0  # where it goes: f for a forward chain, a free point for a backward


class _Illegal(Exception):
    pass


def _plain(value: Any) -> bool:
    """Hashable and equal to itself (a NaN is not), so distinctness means what the model's
    equality means."""
    try:
        hash(value)
    except TypeError:
        return False
    return bool(value == value)


def decide(ops: Sequence[Operation], model: Model) -> ZoneDecision | None:
    """The verdict on ``ops`` (one partition) by the zone algorithm, or None when its
    precondition fails: the model gives neither ``register_view`` nor ``append_view``, an
    operation is not a plain read, write or successful cas (or list append and read), or two
    writes (or a write and the initial value) share a value."""
    if model.register_view is None and model.append_view is None:
        return None
    if not ops:
        return ZoneDecision("ok")  # e.g. a key whose only operations were reads of no outcome
    initial = model.init()
    if not _plain(initial):
        return None
    try:
        views = _register_views(ops, model)
        if views is None:
            views = _append_views(ops, model, initial)
        if views is None:
            return None
        writers: dict[Any, Operation] = {}
        reads: list[tuple[Operation, Any]] = []
        cas: list[tuple[Operation, Any, Any]] = []  # (op, expected, new)
        for op, kind, value in views:
            if kind == "read":
                if op.status == "ok":
                    if not _plain(value):
                        return None
                    reads.append((op, value))
                continue
            new = value
            if kind == "cas":
                expected, new = value
                if not _plain(expected):
                    return None
                cas.append((op, expected, new))
            if not _plain(new) or new == initial or new in writers:
                return None
            writers[new] = op
        return ZoneDecision("ok", order=_decide(ops, model, initial, writers, reads, cas))
    except _Illegal as why:
        return ZoneDecision("illegal", reason=str(why))


def _register_views(ops: Sequence[Operation], model: Model
                    ) -> list[tuple[Operation, str, Any]] | None:
    view = model.register_view
    if view is None:
        return None
    views = []
    for op in ops:
        seen = view(op)
        if seen is None:
            return None
        views.append((op, *seen))
    return views


def _append_views(ops: Sequence[Operation], model: Model, initial: Any
                  ) -> list[tuple[Operation, str, Any]] | None:
    """Appends of distinct elements, seen as cas: the longest read gives the order of the
    appends it holds, so appending its i-th element is ``cas P(i-1) P(i)`` where ``P(i)`` is
    the value after its first ``i`` elements (every read returns one of them, or the history
    is illegal). Completed appends no read holds go after, earliest return first (as good an
    order as any: nothing observes them, and an earlier deadline first is the order in which
    the most can be placed); appends of unknown outcome no read holds are left out.

    Elements are list items, or strings appended to a string when no appended string is a
    prefix of another (then a concatenation splits into them in one way only). None unless
    every op is such an append or a read."""
    view = model.append_view
    if view is None:
        return None
    appends: dict[Any, Operation] = {}
    read_views: list[tuple[Operation, str, Any]] = []
    for op in ops:
        seen = view(op)
        if seen is None:
            return None
        kind, value = seen
        if kind == "append":
            if not _plain(value) or value in appends:
                return None
            appends[value] = op
        elif op.status == "ok":
            read_views.append((op, kind, value))
    texts = [isinstance(x, str) for x in appends]
    if any(texts):
        if not all(texts) or not isinstance(initial, str) or not _prefix_free(list(appends)):
            return None
        order = _split_text(read_views, initial, appends, model)
    else:
        order = _split_list(read_views, initial, appends, model)
    held = set(order)
    late = sorted((op for x, op in appends.items() if x not in held and op.status == "ok"),
                  key=lambda op: op.ret if op.ret is not None else 0)
    views = list(read_views)
    state = initial
    for op in [appends[x] for x in order] + late:
        after = model.step(state, op)
        if after is INCONSISTENT:
            return None  # the model refuses the append itself: leave it to the search
        views.append((op, "cas", (state, after)))
        state = after
    return views


def _split_list(read_views: list[tuple[Operation, str, Any]], initial: Any,
                appends: dict[Any, Operation], model: Model) -> list[Any]:
    """The elements of the longest list read, after the initial ones, in order."""
    base: tuple[Any, ...] = initial if isinstance(initial, tuple) else ()
    lists = [value for _, _, value in read_views if isinstance(value, tuple)]
    longest: tuple[Any, ...] = max(lists, key=len, default=base)
    if longest[:len(base)] != base:
        raise _Illegal(f"a read returned {model.describe_state(longest)}, which does not start "
                       f"with the initial value {model.describe_state(initial)}")
    order = list(longest[len(base):])
    if len(set(order)) != len(order) or any(x not in appends for x in order):
        raise _Illegal(f"a read returned {model.describe_state(longest)}: an element twice, "
                       "or one no operation appended")
    return order


def _prefix_free(texts: list[str]) -> bool:
    """No string is a prefix of another (in sorted order, a prefix comes just before a
    string that starts with it)."""
    ordered = sorted(texts)
    return all(not b.startswith(a) for a, b in itertools.pairwise(ordered))


def _split_text(read_views: list[tuple[Operation, str, Any]], initial: str,
                appends: dict[Any, Operation], model: Model) -> list[str]:
    """The appended strings the longest string read is made of, after the initial value, in
    order: one way only, the appended strings being prefix-free."""
    texts = [value for _, _, value in read_views if isinstance(value, str)]
    longest: str = max(texts, key=len, default=initial)
    if not longest.startswith(initial):
        raise _Illegal(f"a read returned {model.describe_state(longest)}, which does not start "
                       f"with the initial value {model.describe_state(initial)}")
    lengths = sorted({len(x) for x in appends})
    order: list[str] = []
    used: set[str] = set()
    at = len(initial)
    while at < len(longest):
        found = next((longest[at:at + n] for n in lengths if longest[at:at + n] in appends),
                     None)
        if found is None or found in used:
            raise _Illegal(f"a read returned {model.describe_state(longest)}, which is not the "
                           "initial value followed by distinct appended strings")
        order.append(found)
        used.add(found)
        at += len(found)
    return order


def _decide(ops: Sequence[Operation], model: Model, initial: Any,
            writers: dict[Any, Operation], reads: list[tuple[Operation, Any]],
            cas: list[tuple[Operation, Any, Any]]) -> tuple[tuple[Operation, Any], ...]:
    show, describe = model.describe_state, model.describe_op
    expects = {op.id: expected for op, expected, _ in cas}
    values: dict[Any, _Value] = {initial: _Value(initial, None)}
    for value, op in writers.items():
        values[value] = _Value(value, op)
    for op, value in reads:
        if value not in values:
            raise _Illegal(f"{describe(op)} returned {show(value)}, a value that is neither "
                           "the initial one nor written by any operation")
        values[value].reads.append(op)
    needed = _needed(writers, reads, cas, expects)
    successor: dict[Any, tuple[Operation, Any]] = {}  # expected -> (cas, new)
    for op, expected, new in cas:
        if op.id not in needed:
            continue
        if expected not in values:
            raise _Illegal(f"{describe(op)} expected {show(expected)}, a value that is "
                           "neither the initial one nor written by any operation")
        other = successor.get(expected)
        if other is not None:
            raise _Illegal(f"{describe(other[0])} and {describe(op)} both took effect on "
                           f"{show(expected)}, which is written once")
        successor[expected] = (op, new)
    chains = []
    for head in values.values():
        if head.writer is not None and head.writer.id in expects:
            continue  # written by a cas: inside the chain of the value it expected
        if head.writer is not None and head.writer.id not in needed:
            continue  # a write of unknown outcome nobody observed: it may never have happened
        chain = _Chain([head])
        while chain.values[-1].value in successor:
            chain.values.append(values[successor[chain.values[-1].value][1]])
        if head.writer is None and not head.reads and len(chain.values) == 1:
            continue  # the initial value, never observed
        chains.append(chain)
    never = float(max(max(op.call, op.ret or 0) for op in ops) + 1)
    for chain in chains:
        _order_chain(chain, never, show, describe)
    order = _place(chains, show)
    missing = (needed | {op.id for op, _ in reads}) - {op.id for op in order}
    if missing:
        # Following what each cas expected back from one left out never reaches the initial
        # value or a plain write: it goes round a cycle of cas (or one expecting its own new
        # value), none of which can be the first to take effect.
        first = min((op for op in ops if op.id in missing and op.id in expects),
                    key=lambda op: op.call)
        raise _Illegal(f"{describe(first)} expected {show(expects[first.id])}, which only "
                       "a cas that depends on it writes")
    return _witness(model, order)


def _needed(writers: dict[Any, Operation], reads: list[tuple[Operation, Any]],
            cas: list[tuple[Operation, Any, Any]], expects: dict[int, Any]) -> set[int]:
    """Ids of the writes and cas that must have taken effect: the completed ones, and those
    of unknown outcome whose value an operation that must happen observed."""
    needed = {op.id for op in writers.values() if op.status == "ok"}
    observed = [value for _, value in reads]
    observed += [expected for op, expected, _ in cas if op.status == "ok"]
    while observed:
        value = observed.pop()
        writer = writers.get(value)
        if writer is None or writer.id in needed:
            continue
        needed.add(writer.id)
        if writer.id in expects:
            observed.append(expects[writer.id])
    return needed


def _order_chain(chain: _Chain, never: float, show: Any, describe: Any) -> None:
    """Condition 2: order the chain alone (writer of each value at the prefix maximum of its
    lower bounds, plus one half; its reads after their calls and after it), or raise."""
    keyed: list[tuple[float, int, int, int, Operation]] = []
    low = float("-inf")  # the prefix maximum of the lower bounds
    low_op: Operation | None = None
    previous: list[Operation] = []
    for i, stretch in enumerate(chain.values):
        w = stretch.writer
        for op in ([w] if w is not None else []) + previous:
            if op.call > low:
                low, low_op = float(op.call), op
        high, high_op = never, w
        if w is not None and w.status == "ok" and w.ret is not None:
            high = float(w.ret)
        for r in stretch.reads:
            if r.ret is not None and r.ret < high:
                high, high_op = float(r.ret), r
        if low >= high:
            assert low_op is not None and high_op is not None
            raise _Illegal(f"value {show(stretch.value)} cannot be written in time: "
                           f"{describe(low_op)} was invoked after {describe(high_op)} "
                           "returned")
        at = low + _BACKWARD_POINT if w is not None else float("-inf")
        if w is not None:
            keyed.append((at, i, 0, w.call, w))
        keyed.extend((max(r.call + _BACKWARD_POINT, at), i, 1, r.call, r)
                     for r in stretch.reads)
        previous = stretch.reads
    keyed.sort(key=lambda k: k[:4])
    chain.ordered = [k[4] for k in keyed]
    rets = [float(op.ret) for op in chain.ordered if op.status == "ok" and op.ret is not None]
    # The initial value's virtual write returned before everything.
    chain.first_ret = -1.0 if chain.values[0].writer is None else min(rets, default=never)
    chain.last_call = float(max(op.call for op in chain.ordered))


def _place(chains: list[_Chain], show: Any) -> list[Operation]:
    """Conditions 3 and 4, and the chains' order: forward ones by zone, each backward one at
    a free point of its zone."""
    forward = sorted((c for c in chains if c.first_ret < c.last_call),
                     key=lambda c: c.first_ret)
    backward = [c for c in chains if not c.first_ret < c.last_call]
    for a, b in itertools.pairwise(forward):
        if b.first_ret < a.last_call:
            raise _Illegal(f"values {show(a.values[0].value)} and {show(b.values[0].value)} "
                           "would both have to be held at once (their forward zones overlap)")
    starts = [c.first_ret for c in forward]
    for chain in forward:
        chain.anchor = chain.first_ret
    for chain in backward:
        i = bisect.bisect_left(starts, chain.last_call) - 1
        if i >= 0 and chain.first_ret < forward[i].last_call:
            raise _Illegal(f"value {show(chain.values[0].value)} can be neither before nor "
                           f"after value {show(forward[i].values[0].value)} (its backward "
                           "zone lies inside that value's forward zone)")
        # A free point of the zone: just after its latest call, or after the forward zone
        # holding that point (the forward zones are disjoint, so one jump suffices).
        point = chain.last_call + _BACKWARD_POINT
        if i >= 0 and point <= forward[i].last_call + _ZONE_MARGIN:
            point = forward[i].last_call + _BACKWARD_POINT
        if point >= chain.first_ret:
            raise AssertionError(f"no free point in the backward zone of {chain.values[0]!r}")
        chain.anchor = point
    everything = sorted(chains, key=lambda c: c.anchor)
    return [op for chain in everything for op in chain.ordered]


def _witness(model: Model, order: list[Operation]) -> tuple[tuple[Operation, Any], ...]:
    """``order`` checked against real-time order and replayed through the model: a
    linearization, or an AssertionError (the conditions were wrongly judged)."""
    latest_call = -1
    state = model.init()
    out: list[tuple[Operation, Any]] = []
    for op in order:
        if op.status == "ok" and op.ret is not None and op.ret < latest_call:
            raise AssertionError(f"the zone witness puts operation {op.id} after one invoked "
                                 "after it returned")
        latest_call = max(latest_call, op.call)
        state = model.step(state, op)
        if state is INCONSISTENT:
            raise AssertionError(f"the zone witness does not replay at operation {op.id}")
        out.append((op, state))
    return tuple(out)
