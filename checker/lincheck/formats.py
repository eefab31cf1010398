"""Reading and writing histories: JSON Lines, Jepsen EDN, and Porcupine's two test formats.

JSON Lines (format ``jsonl``, the project's own)
------------------------------------------------
UTF-8 text, one JSON object per line, one line per event, in the order the events happened
(the checker orders events by line, never by ``time``). Blank lines are ignored. Keys:

``process``  (required) integer or string: the client issuing the operation. The string
             ``"nemesis"`` marks fault events: they appear in the report's timeline and are
             left out of the check.
``type``     (required) ``"invoke"``, ``"ok"``, ``"fail"`` or ``"info"``. An invocation opens an
             operation; the next event of the same process with another type completes it:
             ``ok`` it happened, ``fail`` it did not, ``info`` unknown (it may take effect at
             any point after its invocation, or never; that process must not invoke again). An
             invocation never completed counts as ``info``.
``f``        (required) non-empty string: the function, which the model must know
             (e.g. ``read``, ``write``, ``cas``).
``value``    (optional, default ``null``) any JSON value. An invocation's value is the input,
             the completion's the output: a read invokes with ``null`` and completes with the
             value read; ``cas`` takes ``[expected, new]``; an ok ``cas`` completing with
             ``false`` records an observed failed comparison. In this format ``null`` is a real
             value (a read of ``null`` constrains the state); write ``info`` for an unknown read.
``key``      (optional) JSON value naming the object, for models that partition by key (``kv``).
``time``     (optional) number, seconds (any origin); shown in reports only.
``index``    (optional) non-negative integer; if present it must strictly increase.

Other keys are allowed and ignored. Example::

    {"process": 0, "type": "invoke", "f": "write", "value": 3, "time": 0.001}
    {"process": 1, "type": "invoke", "f": "read", "value": null}
    {"process": 0, "type": "ok", "f": "write", "value": 3}
    {"process": 1, "type": "ok", "f": "read", "value": 3}

Other formats
-------------
``edn``: a Jepsen history, the shapes Knossos reads: one EDN vector or list of op maps, or one
op map per line, with keys ``:process :type :f :value`` and optional ``:key :time``
(nanoseconds) ``:index``; an op may also be a tuple ``[process type f value]`` (an error may
follow; it is ignored). Knossos' rule
applies: an ok ``:read`` whose value is nil constrains nothing.
``porcupine-etcd``: Jepsen log lines ``INFO jepsen.util - P :type :f value`` (other log lines are
skipped); ``:ok :read nil`` is a real read of the absent key, ``:fail :cas`` an observed failed
comparison, ``:fail :read`` an unknown read.
``porcupine-kv``: one EDN map per line with ``:key``; nil is a real value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping

from lincheck import edn
from lincheck.history import EVENT_TYPES, Event, History, HistoryError
from lincheck.validate import build_history

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import IO, Any, cast

    from lincheck.history import EventType
    from lincheck.validate import Dialect
else:
    def cast(_type: object, value: object) -> object:
        return value

FORMATS: tuple[str, ...] = ("auto", "jsonl", "edn", "porcupine-etcd", "porcupine-kv")

# A history file larger than this is refused rather than read into memory whole.
HISTORY_BYTES_MAX = 2 * 1024 * 1024 * 1024

_ETCD_LINE = re.compile(r"jepsen\.util\s+-\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*?))?\s*$")


def _process_of(raw: Any, source: str, line: int) -> int | str:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise HistoryError(source, line, f"process must be an integer or a string, not {raw!r}")
    return raw if isinstance(raw, int) else str(raw)


def _event_from_mapping(rec: Mapping[Any, Any], position: int, source: str, line: int,
                        time_scale: float) -> Event:
    for name in ("process", "type", "f"):
        if name not in rec:
            raise HistoryError(source, line, f"missing {name!r}")
    process = _process_of(rec["process"], source, line)
    kind = rec["type"]
    if not isinstance(kind, str) or str(kind) not in EVENT_TYPES:
        raise HistoryError(source, line,
                           f"unknown type {kind!r} (expected invoke, ok, fail or info)")
    f = rec["f"]
    if not isinstance(f, str) or not f:
        raise HistoryError(source, line, f"f must be a non-empty string, not {f!r}")
    time_raw = rec.get("time")
    time: float | None = None
    if time_raw is not None:
        if isinstance(time_raw, bool) or not isinstance(time_raw, int | float) or not (
                math.isfinite(time_raw)):
            raise HistoryError(source, line, f"time must be a finite number, not {time_raw!r}")
        time = time_raw * time_scale
    index = rec.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                              or index < 0):
        raise HistoryError(source, line, f"index must be a non-negative integer, not {index!r}")
    key = rec.get("key")
    return Event(index=position, process=process, type=cast("EventType", str(kind)), f=str(f),
                 value=rec.get("value"), key=edn.freeze(key), time=time, line=line)


def _check_indexes(records: list[tuple[int, Mapping[Any, Any]]], source: str) -> None:
    last = -1
    for line, rec in records:
        index = rec.get("index")
        if index is None:
            continue
        if index <= last:
            raise HistoryError(source, line, f"index {index} does not increase (previous {last})")
        last = index


def _events(records: list[tuple[int, Any]], source: str, time_scale: float) -> list[Event]:
    for line, rec in records:
        if not isinstance(rec, dict):
            raise HistoryError(source, line, f"expected a map/object, found {type(rec).__name__}")
    _check_indexes(records, source)
    return [_event_from_mapping(rec, i, source, line, time_scale)
            for i, (line, rec) in enumerate(records)]


def _jsonl_records(text: str, source: str) -> list[tuple[int, Any]]:
    import json  # here, not at the top: the other formats' per-file runs start faster

    records: list[tuple[int, Any]] = []
    # JSON Lines are separated by "\n" only: str.splitlines() would also split at U+0085 and
    # U+2028 inside a JSON string (found by the Hypothesis search profile).
    for n, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            records.append((n, json.loads(raw)))
        except (ValueError, RecursionError) as e:
            msg = getattr(e, "msg", None) or "nesting too deep"
            raise HistoryError(source, n, f"bad JSON: {msg}") from None
    return records


def _edn_records(text: str, source: str) -> list[tuple[int, Any]]:
    try:
        records = edn.read_history_forms(text)
    except edn.EdnError as e:
        raise HistoryError(source, e.line, f"bad EDN: {e.reason}") from None
    if _is_tuple([form for _, form in records]):
        # A file of one [process type f value] tuple: read whole, it looked like a collection.
        return [(records[0][0], _tuple_to_map([form for _, form in records]))]
    return [(line, _tuple_to_map(form)) for line, form in records]


_TUPLE_KEYS = (edn.Keyword("process"), edn.Keyword("type"), edn.Keyword("f"),
               edn.Keyword("value"), edn.Keyword("error"))


def _is_tuple(form: Any) -> bool:
    """A Knossos tuple record: ``[process type f value]``, optionally with an error after."""
    return (isinstance(form, list) and len(form) in (4, 5) and isinstance(form[1], str)
            and str(form[1]) in EVENT_TYPES and not isinstance(form[0], dict | list))


def _tuple_to_map(form: Any) -> Any:
    return dict(zip(_TUPLE_KEYS, form, strict=False)) if _is_tuple(form) else form


def _skip_edn_space(text: str) -> str:
    for raw in text.splitlines():
        line = raw.strip().lstrip(",")
        if line and not line.startswith(";"):
            return line
    return ""


_ETCD_INT = re.compile(r"-?\d+")
_ETCD_PAIR = re.compile(r"\[(-?\d+)\s+(-?\d+)\]")


def _etcd_value(text: str | None, line: int) -> Any:
    # Fast paths for the shapes these logs hold; anything else goes through the EDN reader.
    if not text or text == "nil":
        return None
    if _ETCD_INT.fullmatch(text):
        return int(text)
    m = _ETCD_PAIR.fullmatch(text)
    if m:
        return [int(m.group(1)), int(m.group(2))]
    return edn.read_one(text, line)


_ETCD_ANY_LINE = re.compile(
    r"^[^\n]*?jepsen\.util[ \t]+-[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+([^\n]*?))?[ \t\r]*$",
    re.MULTILINE)


def _etcd_events(text: str, source: str) -> list[Event]:
    if text.count("jepsen.util") != sum(1 for _ in _ETCD_ANY_LINE.finditer(text)):
        for n, raw in enumerate(text.splitlines(), start=1):
            if "jepsen.util" in raw and _ETCD_LINE.search(raw) is None:
                raise HistoryError(source, n, "unparsable jepsen.util log line")
    events: list[Event] = []
    n = 1
    pos = 0
    for m in _ETCD_ANY_LINE.finditer(text):
        n += text.count("\n", pos, m.start())
        pos = m.start()
        proc_s, kind_s, f_s, value_s = m.groups()
        try:
            proc: Any = int(proc_s) if _ETCD_INT.fullmatch(proc_s) else edn.read_one(proc_s, n)
            value = _etcd_value(value_s, n)
        except edn.EdnError as e:
            raise HistoryError(source, n, f"bad EDN: {e.reason}") from None
        kind = kind_s[1:]
        if not kind_s.startswith(":") or kind not in EVENT_TYPES:
            raise HistoryError(source, n,
                               f"unknown type {kind_s!r} (expected invoke, ok, fail or info)")
        if not f_s.startswith(":") or len(f_s) < 2:
            raise HistoryError(source, n, f"f must be a keyword, not {f_s!r}")
        events.append(Event(len(events), _process_of(proc, source, n), cast("EventType", kind),
                            f_s[1:], value, None, None, n))
    return events


def detect_format(text_or_path: str | os.PathLike[str]) -> str:
    """Guess the format of a history given as text, or as a path (a ``PathLike``, or a ``str``
    without a newline naming an existing file). Returns one of ``FORMATS`` other than auto."""
    if isinstance(text_or_path, os.PathLike) or (
            "\n" not in text_or_path and os.path.isfile(text_or_path)):
        with open(text_or_path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    else:
        text = text_or_path
    return _detect(text)


def _detect(text: str) -> str:
    first = _skip_edn_space(text)
    if not first:
        return "jsonl"  # empty: any reader gives the empty history
    if "jepsen.util" in first:
        return "porcupine-etcd"
    if first.startswith(("[", "(")):
        return "edn"
    if first.startswith("{"):
        import json

        try:
            json.loads(first)
            return "jsonl"
        except ValueError:
            pass
        try:
            rec = edn.read_one(first)
        except edn.EdnError:
            return "edn"  # the EDN reader will name the problem
        if isinstance(rec, dict) and "key" in rec and rec.get("f") in ("get", "put", "append"):
            return "porcupine-kv"
        return "edn"
    if first.startswith(";"):
        return "edn"
    return "jsonl"  # the JSON reader will name the problem


def parse_history(text: str, format: str = "auto", source: str = "<string>") -> History:
    """Parse and validate a history from ``text``; errors name ``source`` and the line."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    fmt = _detect(text) if format == "auto" else format
    dialect: Dialect = "plain"
    if fmt == "jsonl":
        events = _events(_jsonl_records(text, source), source, 1.0)
    elif fmt == "edn":
        events = _events(_edn_records(text, source), source, 1e-9)
        dialect = "jepsen"
    elif fmt == "porcupine-kv":
        events = _events(_edn_records(text, source), source, 1e-9)
    else:
        events = _etcd_events(text, source)
        dialect = "porcupine-etcd"
    return build_history(events, source, dialect)


def read_history(path: str | os.PathLike[str], format: str = "auto") -> History:
    """Read, parse and validate the history file at ``path``."""
    source = os.fspath(path)
    try:
        size = os.path.getsize(source)
        if size > HISTORY_BYTES_MAX:
            raise HistoryError(source, None,
                               f"file of {size} bytes exceeds the {HISTORY_BYTES_MAX}-byte limit")
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise HistoryError(source, None, f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise HistoryError(source, None, f"cannot read: {e.strerror or e}") from None
    return parse_history(text, format, source)


def history_from_events(events: Iterable[Mapping[str, Any] | Event],
                        source: str = "<memory>") -> History:
    """Validate a history given as Python events (``Event`` or JSON-Lines-like mappings).

    Semantics are those of the JSON Lines format; error "lines" are 1-based event positions.
    """
    out: list[Event] = []
    records: list[tuple[int, Mapping[Any, Any]]] = []
    for n, ev in enumerate(events, start=1):
        if isinstance(ev, Event):
            out.append(Event(index=len(out), process=ev.process, type=ev.type, f=ev.f,
                             value=ev.value, key=edn.freeze(ev.key), time=ev.time,
                             line=ev.line if ev.line is not None else n))
            continue
        if not isinstance(ev, Mapping):
            raise HistoryError(source, n, f"expected a mapping or Event, found {type(ev).__name__}")
        records.append((n, ev))
        out.append(_event_from_mapping(ev, len(out), source, n, 1.0))
    _check_indexes(records, source)
    return build_history(out, source, "plain")


def _to_json(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted((_to_json(v) for v in value), key=repr)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    return value


def _events_of(history: History) -> Iterator[Event]:
    """Events carrying the history's checked meaning, whatever dialect it was read in."""
    rows: list[Event] = list(history.nemesis)
    for op in history.operations:
        rows.append(Event(op.call, op.process, "invoke", op.f, op.input, op.key, op.call_time))
        if op.ret is not None:
            # An info op that completed is a read of unknown outcome: "info" says exactly that.
            kind: EventType = "ok" if op.status == "ok" else "info"
            rows.append(Event(op.ret, op.process, kind, op.f, op.output, op.key, op.ret_time))
    rows.sort(key=lambda ev: ev.index)
    yield from rows


def write_jsonl(history_or_events: History | Iterable[Event],
                path_or_file: str | os.PathLike[str] | IO[str]) -> None:
    """Write JSON Lines (the format ``parse_history(..., "jsonl")`` reads).

    A ``History`` is written from its operations (so dialect rules already applied, such as
    an observed failed cas, keep their meaning) plus its nemesis events; an operation of
    unknown outcome that never completed is written as an invocation alone. Events are written
    as they are.
    """
    import json

    events = (_events_of(history_or_events) if isinstance(history_or_events, History)
              else iter(history_or_events))
    lines = []
    for ev in events:
        rec: dict[str, Any] = {"process": ev.process, "type": ev.type, "f": ev.f,
                               "value": _to_json(ev.value)}
        if ev.key is not None:
            rec["key"] = _to_json(ev.key)
        if ev.time is not None:
            rec["time"] = ev.time
        rec["index"] = ev.index
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    if isinstance(path_or_file, str | os.PathLike):
        with open(path_or_file, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    else:
        path_or_file.writelines(lines)
