"""Hypothesis strategies for histories: recorded from real sequential objects, and mutated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

Draw = Callable[[st.SearchStrategy[Any]], Any]
VALUES = (0, 1, 2)


@dataclass(frozen=True)
class Spec:
    """A real sequential object: draws an operation, and applies it to a Python state."""

    model: str
    initial: Any
    start: Callable[[], Any]
    gen: Callable[[Draw], tuple[str, Any, Any]]  # -> (f, input, key)
    # (state, f, input, key, draw) -> (new state, output, happened)
    apply: Callable[[Any, str, Any, Any, Draw], tuple[Any, Any, bool]]


def _reg_gen(draw: Draw, cas: bool) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("read", "write", "cas") if cas else ("read", "write")))
    if f == "write":
        return f, draw(st.sampled_from(VALUES)), None
    if f == "cas":
        return f, [draw(st.sampled_from(VALUES)), draw(st.sampled_from(VALUES))], None
    return f, None, None


def _reg_apply(s: Any, f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "read":
        return s, s, True
    if f == "write":
        return v, v, True
    if s == v[0]:
        return v[1], v, True
    return s, v, False  # a failed cas did not happen


def _kv_gen(draw: Draw) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("get", "put", "append")))
    key = draw(st.sampled_from(("a", "b")))
    if f == "get":
        return f, None, key
    return f, draw(st.sampled_from(("x", "y"))), key


def _kv_apply(s: dict[str, str], f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "get":
        return s, s.get(k, ""), True
    new = dict(s)
    new[k] = v if f == "put" else s.get(k, "") + v
    return new, v, True


def _kv_list_gen(draw: Draw) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("get", "append")))
    key = draw(st.sampled_from(("a", "b")))
    return f, (None if f == "get" else draw(st.sampled_from(VALUES))), key


def _kv_list_apply(s: dict[str, Any], f: str, v: Any, k: Any,
                   draw: Draw) -> tuple[Any, Any, bool]:
    """Appends of numbers: a key never appended to reads as "" (the kv model's initial)."""
    if f == "get":
        current = s.get(k, "")
        return s, (list(current) if isinstance(current, tuple) else current), True
    new = dict(s)
    new[k] = (*s.get(k, ()), v)
    return new, v, True


def _kv_text_apply(s: dict[str, str], f: str, v: Any, k: Any,
                   draw: Draw) -> tuple[Any, Any, bool]:
    """Appends of strings, as Porcupine's kv test data has them (distinct: ``<n>``)."""
    if f == "get":
        return s, s.get(k, ""), True
    new = dict(s)
    new[k] = s.get(k, "") + v
    return new, v, True


def _kv_text_gen(draw: Draw) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("get", "append")))
    key = draw(st.sampled_from(("a", "b")))
    return f, (None if f == "get" else draw(st.sampled_from(("x", "y")))), key


def _mutex_gen(draw: Draw) -> tuple[str, Any, Any]:
    return draw(st.sampled_from(("acquire", "release"))), None, None


def _mutex_apply(held: bool, f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "acquire":
        return (True, None, True) if not held else (held, None, False)
    return (False, None, True) if held else (held, None, False)


def _set_gen(draw: Draw) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("add", "read")))
    return f, (draw(st.sampled_from(VALUES)) if f == "add" else None), None


def _set_apply(s: frozenset[int], f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "add":
        return s | {v}, v, True
    return s, sorted(s), True


def _queue_gen(draw: Draw) -> tuple[str, Any, Any]:
    f = draw(st.sampled_from(("enqueue", "dequeue")))
    return f, (draw(st.sampled_from(VALUES)) if f == "enqueue" else None), None


def _fifo_apply(q: tuple[int, ...], f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "enqueue":
        return (*q, v), v, True
    if not q:
        return q, None, True
    return q[1:], q[0], True


def _bag_apply(q: tuple[int, ...], f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    if f == "enqueue":
        return (*q, v), v, True
    if not q:
        return q, None, True
    i = draw(st.integers(0, len(q) - 1))
    return q[:i] + q[i + 1:], q[i], True


def _txn_gen(draw: Draw) -> tuple[str, Any, Any]:
    n = draw(st.integers(1, 2))
    micro = []
    for _ in range(n):
        if draw(st.booleans()):
            micro.append(["r", draw(st.sampled_from(("x", "y"))), None])
        else:
            micro.append(["w", draw(st.sampled_from(("x", "y"))), draw(st.sampled_from(VALUES))])
    return "txn", micro, None


def _txn_apply(s: dict[str, int], f: str, v: Any, k: Any, draw: Draw) -> tuple[Any, Any, bool]:
    new = dict(s)
    out = []
    for mf, key, val in v:
        if mf == "w":
            new[key] = val
            out.append([mf, key, val])
        else:
            out.append([mf, key, new.get(key)])
    return new, out, True


SPECS: dict[str, Spec] = {
    "register": Spec("register", None, lambda: None, lambda d: _reg_gen(d, False), _reg_apply),
    "cas-register": Spec("cas-register", None, lambda: None, lambda d: _reg_gen(d, True),
                         _reg_apply),
    "kv": Spec("kv", None, dict, _kv_gen, _kv_apply),
    "kv-append": Spec("kv", None, dict, _kv_list_gen, _kv_list_apply),
    "kv-append-text": Spec("kv", None, dict, _kv_text_gen, _kv_text_apply),
    "mutex": Spec("mutex", None, lambda: False, _mutex_gen, _mutex_apply),
    "set": Spec("set", None, frozenset, _set_gen, _set_apply),
    "fifo-queue": Spec("fifo-queue", None, tuple, _queue_gen, _fifo_apply),
    "unordered-queue": Spec("unordered-queue", None, tuple, _queue_gen, _bag_apply),
    "multi-register": Spec("multi-register", None, dict, _txn_gen, _txn_apply),
}


# Models whose histories can be drawn with distinct written values (``distinct=True``), the
# precondition of the zone algorithm (lincheck.zones), and how each writes.
DISTINCT_WRITE = {"register": "write", "cas-register": "write", "kv": "put",
                  "kv-append": "append", "kv-append-text": "append"}
# Distinct values start here, clear of VALUES and of every model's initial value.
DISTINCT_FIRST = 100


def _distinct_value(model: str, n: int) -> Any:
    if model == "kv-append-text":
        return f"<{n}>"  # no such string is a prefix of another
    return f"v{n}" if model == "kv" else n


@st.composite
def recorded_history(draw: Draw, model: str, ops_max: int = 6,
                     processes_max: int = 3, distinct: bool = False) -> list[dict[str, Any]]:
    """Events of a concurrent history recorded from a real sequential object: each operation
    takes effect at one instant between its invocation and completion; some crash (info,
    taking effect or not) and some never complete. ``distinct``: every operation that is
    not a read writes a value written by no other (a plain write, see ``DISTINCT_WRITE``, or
    for cas-register a cas, of the current value mostly)."""
    spec = SPECS[model]
    if distinct and model not in DISTINCT_WRITE:
        raise ValueError(f"no distinct-value histories for model {model!r}")
    state = spec.start()
    threads = draw(st.integers(1, processes_max))
    proc = list(range(threads))  # current process id of each thread
    next_proc = threads
    # thread -> [f, input, key, linearized?, output, happened?]
    pending: dict[int, list[Any]] = {}
    events: list[dict[str, Any]] = []
    written: list[Any] = []  # distinct values invoked so far
    started = 0
    for _ in range(ops_max * 4):
        actions = []
        idle = [t for t in range(threads) if t not in pending]
        if idle and started < ops_max:
            actions.append("invoke")
        if any(not p[3] for p in pending.values()):
            actions.append("take-effect")
        if any(p[3] for p in pending.values()):
            actions.append("complete")
        if pending:
            actions.append("crash")
        if not actions:
            break
        # Crashes are rarer than the rest, so most operations complete.
        weighted = [a for a in actions for _ in range(1 if a == "crash" else 4)]
        action = draw(st.sampled_from(weighted))
        if action == "invoke":
            t = draw(st.sampled_from(idle))
            f, value, key = spec.gen(draw)
            if distinct and f not in ("read", "get"):
                new = _distinct_value(model, DISTINCT_FIRST + started)
                if f == "cas":
                    # Expect the current value mostly, so that many cas succeed.
                    value = [draw(st.sampled_from([state, state, None, *written[-2:]])), new]
                else:
                    f, value = DISTINCT_WRITE[model], new
                written.append(new)
            pending[t] = [f, value, key, False, None, False]
            ev: dict[str, Any] = {"process": proc[t], "type": "invoke", "f": f, "value": value}
            if key is not None:
                ev["key"] = key
            events.append(ev)
            started += 1
        elif action == "take-effect":
            t = draw(st.sampled_from(sorted(t for t, p in pending.items() if not p[3])))
            p = pending[t]
            state, p[4], p[5] = spec.apply(state, p[0], p[1], p[2], draw)
            p[3] = True
        elif action == "complete":
            t = draw(st.sampled_from(sorted(t for t, p in pending.items() if p[3])))
            p = pending.pop(t)
            ev = {"process": proc[t], "type": "ok" if p[5] else "fail", "f": p[0],
                  "value": p[4]}
            if p[2] is not None:
                ev["key"] = p[2]
            events.append(ev)
        else:
            t = draw(st.sampled_from(sorted(pending)))
            p = pending.pop(t)
            if not p[3] and draw(st.booleans()):
                state, _, _ = spec.apply(state, p[0], p[1], p[2], draw)  # took effect unseen
            ev = {"process": proc[t], "type": "info", "f": p[0], "value": p[1]}
            if p[2] is not None:
                ev["key"] = p[2]
            events.append(ev)
            proc[t] = next_proc  # a crashed process never invokes again
            next_proc += 1
    return events


@st.composite
def mutated_history(draw: Draw, model: str, ops_max: int = 6, processes_max: int = 3,
                    distinct: bool = False) -> list[dict[str, Any]]:
    """A recorded history with one corruption: a completion's value changed, a fail turned into
    an ok, an ok into an info, or two adjacent events of different processes swapped. With
    ``distinct``, a changed value is one some operation wrote (or the initial one): a stale
    or future read, not a value from nowhere."""
    events: list[dict[str, Any]] = draw(recorded_history(model, ops_max, processes_max,
                                                         distinct))
    if not events:
        return events
    kind = draw(st.sampled_from(("value", "value", "unfail", "info", "swap")))
    completions = [i for i, e in enumerate(events) if e["type"] == "ok"]
    failures = [i for i, e in enumerate(events) if e["type"] == "fail"]
    if kind == "unfail" and failures:
        i = draw(st.sampled_from(failures))
        events[i] = {**events[i], "type": "ok"}
        return events
    if distinct:
        # A write's completion value means nothing (the model takes its input): aim at reads.
        reads = [i for i in completions if events[i]["f"] in ("read", "get")]
        completions = reads or completions
    if kind == "value" and completions:
        i = draw(st.sampled_from(completions))
        spec = SPECS[model]
        _, value, _ = spec.gen(draw)
        choices = [value, *VALUES, None, [], "x", "xy"]
        if distinct and model in ("kv-append", "kv-append-text"):
            # Another read's value, or this one with an element dropped or in reverse order.
            seen = events[i]["value"]
            choices = [e["value"] for e in events if e["type"] == "ok" and e["f"] == "get"]
            if isinstance(seen, list) and seen:
                choices += [seen[:-1], seen[1:], seen[::-1]]
            if isinstance(seen, str) and seen:
                pieces = seen.replace(">", ">|").split("|")[:-1]
                choices += ["".join(pieces[:-1]), "".join(pieces[::-1]), seen[:-1]]
            choices = choices or [""]
        elif distinct:
            written = [e["value"] for e in events if e["type"] == "invoke"
                       and e["f"] == DISTINCT_WRITE[model]]
            written += [e["value"][1] for e in events if e["type"] == "invoke"
                        and e["f"] == "cas"]
            choices = [*written, "" if model == "kv" else None]
        events[i] = {**events[i], "value": draw(st.sampled_from(choices))}
    elif kind == "info" and completions:
        i = draw(st.sampled_from(completions))
        events[i] = {**events[i], "type": "info"}
    elif len(events) > 1:
        i = draw(st.integers(0, len(events) - 2))
        if events[i]["process"] != events[i + 1]["process"]:
            events[i], events[i + 1] = events[i + 1], events[i]
    return events
