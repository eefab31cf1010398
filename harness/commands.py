"""The one place that knows how a workload operation maps onto ``raftlib.kv`` and back.

The object under test is raftlib's real KV state machine (``raftlib.kv.KvStateMachine``) with
its exactly-once sessions. A simulated client turns an operation into a KV op here (as a RESP
client turns it into ``SET``/``CAS``/``APPEND`` arguments); the simulated node wraps it into a
``Request(session, seq, now_ms, op)`` log command, exactly as ``raftlib.service`` does; reads
are ``KvStateMachine.get`` at a ReadIndex point. Values travel as ASCII decimal bytes:

- ``register``: one key, ``REGISTER_KEY``; write = SET, cas = CAS, read = GET. The model's
  initial value ``None`` is the absent key (writes never store ``None``).
- ``kv``: key ``k<n>``; put = SET, cas = CAS, get = GET. The model's initial value ``0`` is the
  absent key, so a CAS expecting 0 becomes CAS-if-absent; this needs that no put or cas ever
  stores 0 (the workload draws values from 1 up; ``write_op`` refuses otherwise).
- ``append``: key ``k<n>``; each element ``e`` is appended as ``b"e,"``, so a read of the bytes
  ``b"3,7,"`` is the list ``[3, 7]``: a lost, duplicated or reordered append shows directly.
- ``counter``: one key, ``b"counter"``; add n = INCRBY n, read = GET (absent: 0).
- ``set``: one key, ``b"set"``; add e = SADD e, read = SMEMBERS (the sorted elements).
- ``queue``: key ``q<n>``; enqueue e = RPUSH e, dequeue = LPOP (nil: the queue was empty).

``add`` means INCRBY in the counter and SADD in the set, so the functions that build ops or
read values take the workload's name (``workload=``; the first three need none).
"""

from __future__ import annotations

from typing import Any

from raftlib.kv.commands import Append, Cas, Incr, KvError, LPop, Op, Result, RPush, SAdd, Set
from raftlib.kv.machine import KvStateMachine

WRITE_FUNCTIONS = frozenset({"write", "put", "cas", "append", "add", "enqueue", "dequeue"})
READ_FUNCTIONS = frozenset({"read", "get"})
REGISTER_KEY = b"register"
# The workloads whose one object has a key of its own name.
SINGLE_KEY_WORKLOADS = frozenset({"counter", "set"})
# A value read back longer than this is not one the workloads wrote (a harness bug).
VALUE_BYTES_MAX = 1 << 20


class CommandError(ValueError):
    """An operation or a value read back that this mapping cannot represent (one line)."""


def key_bytes(key: Any, workload: str = "") -> bytes:
    if workload in SINGLE_KEY_WORKLOADS:
        return workload.encode("ascii")
    if key is None:
        return REGISTER_KEY
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return (b"q%d" if workload == "queue" else b"k%d") % key
    raise CommandError(f"key must be None (the register) or an int >= 0, got {key!r}")


def _number(value: Any, what: str) -> bytes:
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    raise CommandError(f"{what} must be an int, got {value!r}")


def write_op(f: str, key: Any, value: Any, initial: Any, *, workload: str = "") -> Op:
    """The KV op of a write; ``initial`` is the model's value of an absent key."""
    k = key_bytes(key, workload)
    if f == "add" and workload == "counter":
        return Incr(k, int(_number(value, "counter add")))
    if f == "add" and workload == "set":
        return SAdd(k, (_number(value, "set element"),))
    if f == "enqueue":
        return RPush(k, (_number(value, "queue element"),))
    if f == "dequeue":
        return LPop(k)
    if f in ("write", "put"):
        if value == initial:
            raise CommandError(f"{f} of the initial value {initial!r} cannot be told from absent")
        return Set(k, _number(value, f"{f} value"))
    if f == "cas":
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise CommandError(f"cas value must be [expected, new], got {value!r}")
        expected, new = value
        if new == initial:
            raise CommandError(f"cas to the initial value {initial!r} cannot be told from absent")
        want = None if expected == initial else _number(expected, "cas expected")
        return Cas(k, want, _number(new, "cas new"))
    if f == "append":
        return Append(k, _number(value, "append element") + b",")
    raise CommandError(f"only writes go through the log, not {f!r}")


def read_state(machine: KvStateMachine, key: bytes, workload: str = "") -> Any:
    """What a read of ``key`` sees in ``machine`` (GET, or SMEMBERS in the set workload)."""
    return machine.smembers(key) if workload == "set" else machine.get(key)


def read_value(raw: Any, initial: Any, *, workload: str = "") -> Any:
    """What a read of ``raw`` (``None``: absent key) means in the workload's model."""
    if workload == "set":
        if not (isinstance(raw, list) and all(isinstance(m, bytes) for m in raw)):
            raise CommandError(f"a set read answered {raw!r}, not a list of members")
        try:
            return sorted(int(m) for m in raw)
        except ValueError as exc:
            raise CommandError(f"set member is not one the workload added: {exc}") from None
    if not (raw is None or isinstance(raw, bytes)):
        raise CommandError(f"a read answered {raw!r}, not a value")
    if raw is None:
        return list(initial) if isinstance(initial, list) else initial
    if len(raw) > VALUE_BYTES_MAX:
        raise CommandError(f"value of {len(raw)} bytes exceeds {VALUE_BYTES_MAX}")
    try:
        if isinstance(initial, list):
            if raw and not raw.endswith(b","):
                raise ValueError("an append list ends with ','")
            return [int(part) for part in raw.split(b",")[:-1]]
        return int(raw)
    except ValueError as exc:
        raise CommandError(f"value {raw[:40]!r} is not one the workload wrote: {exc}") from None


def write_output(f: str, value: Any, result: Result) -> tuple[str, Any]:
    """The history outcome and output of a write the state machine answered with ``result``:
    ``ok`` (a CAS's output is its verdict), or ``error`` with the KvError code."""
    if isinstance(result, KvError):
        return "error", result.code
    if f == "dequeue":
        if result is None:
            return "ok", None  # the queue was empty
        if not (isinstance(result, bytes) and result.isdigit()):
            raise CommandError(f"dequeue answered {result!r}, not an element enqueued")
        return "ok", int(result)
    if f == "cas":
        if not isinstance(result, bool):
            raise CommandError(f"cas answered {result!r}, not a verdict")
        return "ok", result
    return "ok", value
