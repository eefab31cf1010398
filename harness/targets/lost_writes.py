"""Acknowledged writes lost: what the final reads of a register or kv run say of every write.

The register and kv workloads write each value once, so a read names the one write it saw.
After the faults are healed and the cluster has converged, the runner reads every key once
more (the *final reads*, invoked from history event ``final_from`` on). For a key whose final
read returned the value of write U (or the initial value: no write), an acknowledged write W of
that key is *lost* when

- W completed (``ok``) before the final read was invoked, and
- U completed before W was invoked (or the key reads as never written),

because then W is after U in real time and before the read, so a linearizable service must
show W's value or a later one; showing U's means W's effect was undone after it was
acknowledged. A cas counts as a write when it answered ``ok`` with success. Writes of unknown
outcome (``info``) are never lost: they may legitimately not have happened; a final read whose
value was written by one proves nothing (it may have taken effect after any W). Values that no
write produced are lincheck's to flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lincheck import Event

from harness.checks import Check
from harness.workload_checks import Op, operations

# Lost writes named one by one in the check's violations, at most.
NAMED_MAX = 50


def _written(op: Op) -> tuple[bool, Any]:
    """Whether ``op`` writes a value, and which."""
    if op.f in ("write", "put"):
        return True, op.value
    if op.f == "cas" and isinstance(op.value, list | tuple) and len(op.value) == 2:
        succeeded = op.outcome != "ok" or op.output is True
        return succeeded, op.value[1]
    return False, None


def check_lost_writes(events: Sequence[Event], final_from: int, initial: Any) -> Check:
    keys = {e.index: e.key for e in events}
    writer: dict[tuple[Any, Any], Op] = {}
    writes: dict[Any, list[Op]] = {}
    finals: dict[Any, Op] = {}
    for op in operations(events):
        key = keys[op.invoked]
        writes_value, value = _written(op)
        if writes_value and op.outcome != "fail":
            writer[(key, value)] = op
            writes.setdefault(key, []).append(op)
        if (op.f in ("read", "get") and op.outcome == "ok" and op.invoked >= final_from
                and (key not in finals or op.completed > finals[key].completed)):
            finals[key] = op
    if not finals:
        return Check("lost-writes", None, "no final read completed: lost writes unknown")
    lost: list[str] = []
    for key, final in sorted(finals.items(), key=lambda item: str(item[0])):
        seen = writer.get((key, final.output))
        if final.output != initial and (seen is None or seen.outcome != "ok"):
            continue  # a value of unknown write time, or of no write (lincheck's finding)
        for w in writes.get(key, []):
            if w.outcome != "ok" or w is seen or w.completed >= final.invoked:
                continue
            if seen is None or seen.completed < w.invoked:
                lost.append(_line(key, w, final, seen))
    checked = f"final reads of {len(finals)} key(s)"
    if lost:
        return Check("lost-writes", False, f"{len(lost)} acknowledged writes lost ({checked})",
                     tuple(lost[:NAMED_MAX]))
    return Check("lost-writes", True, f"no acknowledged write lost ({checked})")


def _line(key: Any, w: Op, final: Op, seen: Op | None) -> str:
    where = "" if key is None else f"key {key}: "
    source = ("the initial value" if seen is None else
              f"{final.output!r}, whose write (line {seen.line}) was acknowledged before this "
              "one began")
    return (f"{where}write of {_value(w)!r} (p{w.process}, line {w.line}) was acknowledged at "
            f"line {int(w.completed) + 1}, but the final read (line {final.line}) saw {source}")


def _value(op: Op) -> Any:
    return op.value[1] if op.f == "cas" else op.value
