"""Pruning rules of the search (``lincheck.linearize``) that are worked out before it starts,
from the partition's operations alone. Each one only removes orders that cannot lead to a
linearization the search would otherwise find, or that another order it does explore stands in
for; none may ever turn "ok" into "illegal" (tests/lincheck/test_properties.py checks the
verdicts against a brute-force oracle with and without them).

* symmetry (``twins``): of two identical operations (same f, input, output, status and key)
  where one is called earlier and returns earlier, the later one is never placed while the
  earlier one is open and unplaced; swapping them in any linearization keeps it valid.
* unobserved writes (``unobserved_writes``): a write or cas of unknown outcome whose value
  nobody observes may be left out altogether (a register-like model with no observed failed
  cas; or the model's own ``droppable``).
* a value someone still needs (``ValueWatch.value_lost``, register-like models): an operation
  is not placed where it moves the register off a value that an op not placed yet needs, when
  no op not placed yet may write that value again.

Invariants: ``twins(ops, skip)[i]`` is -1 or an index ``j < i`` of an op identical to op ``i``
that returned no later; ``unobserved_writes`` returns ids of ``info`` ops only; a
``ValueWatch`` whose ``needs`` is None never prunes anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from lincheck.edn import freeze
from lincheck.history import Operation
from lincheck.models import Model

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

    # Per value: the (slot bit, op index) of the open ops needing it, and of those writing it.
    OpenByValue = tuple[dict[Any, list[tuple[int, int]]], dict[Any, list[tuple[int, int]]]]

__all__ = ["ValueWatch", "twins", "unobserved_writes"]

# Branch points whose open ops are kept indexed by value (``ValueWatch.value_lost``); each
# holds about as much as the open ops there. Cleared when full: a cache.
OPEN_INDEX_POSITIONS_MAX = 4096

_NOTHING: Any = object()  # an op that needs (or writes) no value


def _signature(op: Operation) -> Hashable | None:
    try:
        sig = (op.f, freeze(op.input), freeze(op.output), op.status, op.key)
        hash(sig)
        return sig
    except TypeError:
        return None


def twins(ops: Sequence[Operation], skip: Sequence[bool]) -> list[int]:
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


def unobserved_writes(ops: Sequence[Operation], model: Model) -> set[int]:
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


class ValueWatch:
    """The rule "a value someone still needs is never overwritten for good" for one
    partition: ``ops`` in call order, ``call_pos[i]`` the event position of op ``i``'s call."""

    def __init__(self, ops: Sequence[Operation], model: Model, call_pos: Sequence[int]) -> None:
        self.ops = ops
        self.model = model
        self.call_pos = call_pos
        # Per op, the value it needs the register to hold and the value it may write (None:
        # the rule does not apply to this partition).
        self.needs: list[Any] | None = None
        self.writes: list[Any] = []
        # Per branch point (event position), built on first use: value -> the (bit, op) of
        # the open ops needing it, and of those that may write it (at most
        # OPEN_INDEX_POSITIONS_MAX positions at once).
        self.open_values: dict[int, OpenByValue] = {}
        self.last_need_call: dict[Any, int] = {}
        self.last_write_call: dict[Any, int] = {}
        self._prepare()

    def _prepare(self) -> None:
        """For a register-like model (``model.register_view``): per op, the value it needs the
        register to hold (an ok read's output, an ok cas's expected value) and the value it
        may write; per value, the last call position of an op needing it and of one writing
        it. ``value_lost`` uses them. Left unset (None) when some op is neither (an append, a
        delete) or a value is unhashable: the rule then never applies."""
        view = self.model.register_view
        if view is None:
            return
        nothing = _NOTHING
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
        write it again. Sound for registers only (see ``_prepare``); it spots a stale read
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
                       ) -> OpenByValue:
        needs, writes = self.needs, self.writes
        assert needs is not None
        needers: dict[Any, list[tuple[int, int]]] = {}
        writers: dict[Any, list[tuple[int, int]]] = {}
        for bit, i in (*open_reads, *open_writes):
            if needs[i] is not _NOTHING:
                needers.setdefault(needs[i], []).append((bit, i))
        for bit, i in open_writes:
            if writes[i] is not _NOTHING:
                writers.setdefault(writes[i], []).append((bit, i))
        return needers, writers

