"""Workloads: seeded generators of client operations, and how their histories are checked.

Each workload draws every choice from the ``random.Random`` it is given, in the order the
simulator asks, so a seed fixes the operations. ``OpSpec`` is plain data (function, key, value),
which lets a later shrinker replay or cut an operation sequence.

- ``register``: one compare-and-set register (read, write, cas) — model ``cas-register``.
- ``kv``: many independent keys (get, put, cas), each key retired after ``ops_per_key_max``
  operations so every partition lincheck checks stays small — model ``kv``, checked key by key.
- ``append``: appends of unique elements to lists and reads of whole lists, so a lost or
  reordered append shows directly in a read — model ``kv`` with lists.
- ``counter``: increments (``add`` of 1 to ``COUNTER_ADD_MAX``, INCRBY) and reads of one counter
  — Jepsen's counter checker (``harness.workload_checks``): each read between the acknowledged
  increments done before it and every increment attempted up to its end.
- ``set``: adds of unique elements to one set (SADD), then a final read (SMEMBERS) — Jepsen's
  set checker: acknowledged elements lost, elements never added, recovered unknown adds.
- ``queue``: enqueues of unique elements (RPUSH) and dequeues (LPOP) on FIFO queues, rotated
  like the kv keys — lincheck's ``fifo-queue`` model, queue by queue; the final ops drain
  every queue the run touched, so a lost or duplicated element shows.

After the faults, ``probe_ops`` is what proves the cluster serves again: one write, then a
read of every key the run touched (Jepsen's final reads).

The register and kv workloads write each value once: every write, put and cas writes a value
never written before in the run (and never the initial value), so lincheck decides their
histories with its zone algorithm in O(n log n), with no search however many operations crash,
and a read names the one write it saw. A cas expects one of the last ``CAS_EXPECT_RECENT``
values written to its key, so that many succeed.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import attrs

from harness.commands import WRITE_FUNCTIONS

# A counter increment draws from 1..COUNTER_ADD_MAX: positive, so the checker's bounds hold.
COUNTER_ADD_MAX = 5
# A cas expects one of this many values written last (or the initial value, before any).
CAS_EXPECT_RECENT = 3


@attrs.frozen
class OpSpec:
    f: str
    key: Any
    value: Any

    @property
    def is_write(self) -> bool:
        return self.f in WRITE_FUNCTIONS


class Workload:
    """Base of the workloads: how the history is checked and a stream of operations.

    ``checker`` names the check of the history: ``"lincheck"`` (linearizability with
    ``model``), or ``"counter"`` / ``"set"`` (``harness.workload_checks``)."""

    name = ""
    model = ""
    checker = "lincheck"
    initial: ClassVar[Any] = None
    keyed = False

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def next_op(self) -> OpSpec:
        raise NotImplementedError

    def probe_ops(self) -> list[OpSpec]:
        raise NotImplementedError


class _FreshValues(Workload):
    """Writes of values never written before: 1, 2, 3, ... (the initial value is 0 or nil);
    per key, the last ``CAS_EXPECT_RECENT`` of them, for a cas to expect."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._last_value = 0
        self._recent: dict[Any, list[Any]] = {}

    def _fresh(self, key: Any) -> int:
        self._last_value += 1
        recent = self._recent.setdefault(key, [])
        recent.append(self._last_value)
        del recent[:-CAS_EXPECT_RECENT]
        return self._last_value

    def _cas(self, key: Any) -> OpSpec:
        expected = self._rng.choice(self._recent.get(key) or [self.initial])
        return OpSpec("cas", key, [expected, self._fresh(key)])


class RegisterWorkload(_FreshValues):
    name = "register"
    model = "cas-register"

    def next_op(self) -> OpSpec:
        roll = self._rng.random()
        if roll < 0.5:
            return OpSpec("read", None, None)
        if roll < 0.75:
            return OpSpec("write", None, self._fresh(None))
        return self._cas(None)

    def probe_ops(self) -> list[OpSpec]:
        return [OpSpec("write", None, self._fresh(None)), OpSpec("read", None, None)]


class _RotatingKeys(Workload):
    """Operations spread over ``keys_active`` keys; a key that had ``ops_per_key_max``
    operations is retired and a fresh one takes its place (Jepsen's independent keys)."""

    keyed = True
    keys_active = 5
    ops_per_key_max = 40

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._active = list(range(self.keys_active))
        self._next_key = self.keys_active
        self._ops_on: dict[int, int] = dict.fromkeys(self._active, 0)

    def _pick_key(self) -> int:
        slot = self._rng.randrange(len(self._active))
        key = self._active[slot]
        self._ops_on[key] += 1
        if self._ops_on[key] >= self.ops_per_key_max:
            self._active[slot] = self._next_key
            self._ops_on[self._next_key] = 0
            self._next_key += 1
        return key

    def keys_used(self) -> list[int]:
        return [key for key, count in self._ops_on.items() if count]

    def _final_reads(self) -> list[OpSpec]:
        return [OpSpec("get", key, None) for key in self.keys_used()]


class KvWorkload(_RotatingKeys, _FreshValues):
    name = "kv"
    model = "kv"
    initial: ClassVar[Any] = 0

    def next_op(self) -> OpSpec:
        key = self._pick_key()
        roll = self._rng.random()
        if roll < 0.4:
            return OpSpec("get", key, None)
        if roll < 0.7:
            return OpSpec("put", key, self._fresh(key))
        return self._cas(key)

    def probe_ops(self) -> list[OpSpec]:
        key = self._pick_key()
        return [OpSpec("put", key, self._fresh(key)), *self._final_reads()]


class AppendWorkload(_RotatingKeys):
    name = "append"
    model = "kv"
    initial: ClassVar[Any] = []

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._element = 0  # every appended element is unique in the run

    def _append(self, key: int) -> OpSpec:
        self._element += 1
        return OpSpec("append", key, self._element)

    def next_op(self) -> OpSpec:
        key = self._pick_key()
        if self._rng.random() < 0.5:
            return OpSpec("get", key, None)
        return self._append(key)

    def probe_ops(self) -> list[OpSpec]:
        return [self._append(self._pick_key()), *self._final_reads()]


class CounterWorkload(Workload):
    name = "counter"
    checker = "counter"
    initial: ClassVar[Any] = 0

    def _add(self) -> OpSpec:
        return OpSpec("add", None, self._rng.randint(1, COUNTER_ADD_MAX))

    def next_op(self) -> OpSpec:
        if self._rng.random() < 0.5:
            return OpSpec("read", None, None)
        return self._add()

    def probe_ops(self) -> list[OpSpec]:
        return [self._add(), OpSpec("read", None, None)]


class SetWorkload(Workload):
    name = "set"
    checker = "set"
    initial: ClassVar[Any] = []

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._element = 0  # every added element is unique in the run

    def next_op(self) -> OpSpec:
        self._element += 1
        return OpSpec("add", None, self._element)

    def probe_ops(self) -> list[OpSpec]:
        return [self.next_op(), OpSpec("read", None, None)]


class QueueWorkload(_RotatingKeys):
    name = "queue"
    model = "fifo-queue"
    # Fewer operations per queue than per kv key: a dequeue of unknown outcome may have taken
    # any head away or none, so a queue's search grows fast with them (live runs under pause
    # and kill leave many); 40 per queue left lincheck undecided after 60 s on live runs.
    ops_per_key_max = 12

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._element = 0  # every enqueued element is unique in the run
        self._balance: dict[int, int] = {}  # key -> enqueues minus dequeues generated

    def _enqueue(self, key: int) -> OpSpec:
        self._element += 1
        self._balance[key] = self._balance.get(key, 0) + 1
        return OpSpec("enqueue", key, self._element)

    def next_op(self) -> OpSpec:
        key = self._pick_key()
        if self._rng.random() < 0.5:
            self._balance[key] = self._balance.get(key, 0) - 1
            return OpSpec("dequeue", key, None)
        return self._enqueue(key)

    def probe_ops(self) -> list[OpSpec]:
        """One enqueue, then enough dequeues to drain every queue and see it empty (a
        dequeue that failed during the run leaves its element: one more than the balance)."""
        ops = [self._enqueue(self._pick_key())]
        for key in self.keys_used():
            ops += [OpSpec("dequeue", key, None)] * (max(self._balance.get(key, 0), 0) + 1)
        return ops


WORKLOAD_CLASSES: dict[str, type[Workload]] = {
    "register": RegisterWorkload,
    "kv": KvWorkload,
    "append": AppendWorkload,
    "counter": CounterWorkload,
    "set": SetWorkload,
    "queue": QueueWorkload,
}


def make_workload(name: str, rng: random.Random) -> Workload:
    return WORKLOAD_CLASSES[name](rng)
