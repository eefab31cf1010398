"""Registers whose written values are distinct, decided without search (Gibbons & Korach, 1997).

When every write of a register writes a value no other write writes, and none writes the
initial value, each read names the one write it saw (the read mapping is known), and
linearizability reduces to interval arithmetic over *clusters*: a value's write together with
the reads that returned it (the initial value's cluster has a virtual write before everything).
For a cluster take ``f``, the earliest return among its operations, and ``s``, the latest
call. If ``f < s`` its *forward zone* is ``[f, s]``: its write is placed before ``f`` and its
last read after ``s``, so the register holds that value all through the zone. Otherwise its
*backward zone* is ``(s, f)``: every operation of the cluster is open through it, and the
cluster can be placed at any one point of it. The history is linearizable if and only if:

1. no read returned before the write of its value was invoked (nor read a value never written);
2. no two forward zones intersect (the register would hold two values at once);
3. no backward zone lies inside a forward zone (its cluster can go neither before that zone,
   since one of its operations was invoked inside it, nor after, since one returned inside it).

Operations of unknown outcome (``info``): a read constrains nothing and is left out; a write
whose value nobody read is left out too (for a plain register, a write nobody observed can be
dropped from any linearization without changing what a read returns); a write whose value
was read must have taken effect, at some point after its call: it counts as returning after
every event of the history.

When the conditions hold, ``decide`` builds a linearization (each operation at a point inside
its interval: a forward cluster's write just before ``f`` and its reads from there, a backward
cluster's operations together at a free point of its zone) and replays it through the model,
so an "ok" always carries a witness that has been checked. ``O(n log n)`` for ``n`` operations.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lincheck.history import Operation
from lincheck.models import INCONSISTENT, Model

__all__ = ["ZoneDecision", "decide"]

# Offsets that place operations between the integer event indexes: a forward cluster's write
# just before its zone, its reads after the write and after their own calls; a backward
# cluster half-way between two events.
_WRITE_BEFORE_ZONE = 0.3
_READ_BEFORE_ZONE = 0.2
_READ_AFTER_CALL = 0.1
_BACKWARD_POINT = 0.5


@dataclass(frozen=True, slots=True)
class ZoneDecision:
    """The zone algorithm's verdict on one partition.

    ``order``: for "ok", a linearization (every completed operation, and the writes of unknown
    outcome that were read) with the model state after each; empty for "illegal".
    ``reason``: for "illegal", the condition that fails, in words.
    """

    verdict: Literal["ok", "illegal"]
    order: tuple[tuple[Operation, Any], ...] = ()
    reason: str = ""


@dataclass(slots=True)
class _Cluster:
    value: Any
    write: Operation | None  # None: the initial value's virtual write
    reads: list[Operation]
    first_ret: float = 0.0  # f: the earliest return among its operations
    last_call: float = 0.0  # s: the latest call among its operations
    point: float = 0.0  # backward clusters: where all of it is placed


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
    precondition fails: the model gives no ``register_view``, an operation is not a plain
    read or write, or two writes (or a write and the initial value) share a value."""
    view = model.register_view
    if view is None:
        return None
    if not ops:
        return ZoneDecision("ok")  # e.g. a key whose only operations were reads of no outcome
    initial = model.init()
    if not _plain(initial):
        return None
    writes: dict[Any, Operation] = {}
    reads: list[tuple[Operation, Any]] = []
    for op in ops:
        seen = view(op)
        if seen is None:
            return None
        kind, value = seen
        if kind == "read":
            if op.status == "ok":
                if not _plain(value):
                    return None
                reads.append((op, value))
            continue
        if not _plain(value) or value == initial or value in writes:
            return None
        writes[value] = op
    return _decide(ops, model, initial, writes, reads)


def _decide(ops: Sequence[Operation], model: Model, initial: Any,
            writes: dict[Any, Operation], reads: list[tuple[Operation, Any]]) -> ZoneDecision:
    describe = model.describe_op
    # Returns after every event: where a write of unknown outcome that was read "returns".
    never = float(max(max(op.call, op.ret or 0) for op in ops) + 1)
    clusters: dict[Any, _Cluster] = {initial: _Cluster(initial, None, [])}
    for value, op in writes.items():
        clusters[value] = _Cluster(value, op, [])
    for r, value in reads:
        cluster = clusters.get(value)
        if cluster is None:
            return ZoneDecision("illegal", reason=(
                f"{describe(r)} returned {model.describe_state(value)}, a value that is "
                "neither the initial one nor written by any operation"))
        writer = cluster.write
        if writer is not None and r.ret is not None and r.ret < writer.call:
            return ZoneDecision("illegal", reason=f"{describe(r)} returned before "
                                                  f"{describe(writer)} was invoked")
        cluster.reads.append(r)
    forward: list[_Cluster] = []
    backward: list[_Cluster] = []
    for cluster in clusters.values():
        w = cluster.write
        if w is None:
            if not cluster.reads:
                continue
            first_ret, last_call = -1.0, float(max(r.call for r in cluster.reads))
        else:
            if w.status != "ok" and not cluster.reads:
                continue  # a write of unknown outcome nobody read: it may never have happened
            rets = [float(r.ret) for r in cluster.reads if r.ret is not None]
            first_ret = min([float(w.ret) if w.status == "ok" and w.ret is not None
                             else never, *rets])
            last_call = float(max([w.call, *(r.call for r in cluster.reads)]))
        cluster.first_ret, cluster.last_call = first_ret, last_call
        (forward if first_ret < last_call else backward).append(cluster)
    forward.sort(key=lambda c: c.first_ret)
    for a, b in itertools.pairwise(forward):
        if b.first_ret < a.last_call:
            return ZoneDecision("illegal", reason=(
                f"values {model.describe_state(a.value)} and {model.describe_state(b.value)} "
                "would both have to be held at once (their forward zones overlap)"))
    starts = [c.first_ret for c in forward]
    for cluster in backward:
        i = bisect.bisect_left(starts, cluster.last_call) - 1
        if i >= 0 and cluster.first_ret < forward[i].last_call:
            return ZoneDecision("illegal", reason=(
                f"value {model.describe_state(cluster.value)} can be neither before nor after "
                f"value {model.describe_state(forward[i].value)} (its backward zone lies "
                "inside that value's forward zone)"))
        # A free point of the zone: just after its latest call, or after the forward zone
        # holding that point (the zones are disjoint, so one jump suffices).
        point = cluster.last_call + _BACKWARD_POINT
        if i >= 0 and point <= forward[i].last_call + _READ_AFTER_CALL:
            point = forward[i].last_call + _BACKWARD_POINT
        if point >= cluster.first_ret:
            raise AssertionError(f"no free point in the backward zone of {cluster.value!r}")
        cluster.point = point
    return ZoneDecision("ok", order=_witness(model, forward, backward))


def _witness(model: Model, forward: list[_Cluster], backward: list[_Cluster]
             ) -> tuple[tuple[Operation, Any], ...]:
    """Each operation at a point inside its interval, in point order, replayed through the
    model: a linearization, or an AssertionError (the conditions were wrongly judged)."""
    placed: list[tuple[float, int, int, int, Operation]] = []
    for n, cluster in enumerate(forward):
        if cluster.write is not None:
            placed.append((cluster.first_ret - _WRITE_BEFORE_ZONE, n, 0, 0, cluster.write))
        for r in cluster.reads:
            at = max(r.call + _READ_AFTER_CALL, cluster.first_ret - _READ_BEFORE_ZONE)
            placed.append((at, n, 1, r.call, r))
    for n, cluster in enumerate(backward, start=len(forward)):
        if cluster.write is not None:
            placed.append((cluster.point, n, 0, 0, cluster.write))
        placed.extend((cluster.point, n, 1, r.call, r) for r in cluster.reads)
    placed.sort(key=lambda p: p[:4])
    state = model.init()
    order: list[tuple[Operation, Any]] = []
    for at, _, _, _, op in placed:
        if not op.call < at < (op.ret if op.status == "ok" and op.ret is not None
                               else float("inf")):
            raise AssertionError(f"operation {op.id} placed at {at} outside its interval")
        state = model.step(state, op)
        if state is INCONSISTENT:
            raise AssertionError(f"the zone witness does not replay at operation {op.id}")
        order.append((op, state))
    return tuple(order)
