"""What a run directory holds, read leniently for the report.

A report must render whatever a run left behind, including a run that stopped half way or a
directory with a damaged file: nothing here raises on bad content. Every file that is missing
or malformed becomes a ``problems`` line, shown at the top of the page, and the sections that
needed it say what is missing instead of drawing.

Sources, in order of trust:

- ``history.jsonl``: client operations (paired invoke -> completion per process) and the fault
  events the nemesis actually applied (``process: "nemesis"``, ``f: start-<kind>`` /
  ``stop-<kind>``, ``value.id`` naming the window);
- ``nemesis.json``: the planned schedule, used for fault windows when the history has no
  fault events (a run that stopped before writing its history);
- ``results.json``: verdict, checks, options, statistics, command;
- ``nodes.log``: lines ``[<seconds>] n<id> <event>`` where the event is ``start...``,
  ``crash...``, ``pause``, ``resume`` or ``role <role> term=<t> ...``; lines of another shape
  are ignored (the live backend may write the same shape to get the per-node plot), and a line
  ``[<seconds>] -- all faults healed...`` marks the start of the recovery window.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

# Files larger than this are not read whole (a report of a run that big would not be read
# either); the page says the file was skipped.
FILE_BYTES_MAX = 512 * 1024 * 1024
# History lines that fail to parse are counted; only the first few are named.
PROBLEMS_NAMED_MAX = 5
OUTCOMES = ("ok", "fail", "info")

# "[  startup  ]" marks what a live node did before the run's clock started: time 0.
_NODE_LINE = re.compile(r"^\[\s*([0-9]+(?:\.[0-9]+)?|startup)\s*\]\s+n([0-9]+)\s+(.*)$")
_HEAL_LINE = re.compile(r"^\[\s*([0-9]+(?:\.[0-9]+)?)\]\s+--\s+all faults healed")
_CULPRIT = re.compile(r"\blines? ([0-9]+)")
# Operations lincheck could not place that the latency plot circles.
CULPRITS_MAX = 10
_ROLE = re.compile(r"^role\s+(\S+)\s+term=([0-9]+)")


@attrs.frozen
class Op:
    """One client operation; ``outcome`` is ``pending`` when no completion was recorded."""

    process: str
    f: str
    key: str | None
    invoke: float
    complete: float | None
    outcome: str
    line: int = 0  # the invocation's line in history.jsonl (lincheck names operations so)


@attrs.frozen
class Window:
    """A fault window: when it was applied and healed (``stop`` None: never healed)."""

    id: int | None
    kind: str
    start: float
    stop: float | None
    params: Mapping[str, Any]
    planned: bool  # from nemesis.json, not observed in the history


@attrs.frozen
class NodeSpan:
    node: int
    state: str  # "leader" | "down" | "paused"
    start: float
    stop: float
    label: str = ""


@attrs.frozen
class NodeMark:
    node: int
    time: float
    what: str  # "candidate" | "crash" | "start"


@attrs.define
class RunData:
    run_dir: Path
    problems: list[str] = attrs.Factory(list)
    results: dict[str, Any] | None = None
    ops: list[Op] = attrs.Factory(list)
    history_present: bool = False
    history_has_times: bool = True
    windows: list[Window] = attrs.Factory(list)
    schedule: dict[str, Any] | None = None
    node_spans: list[NodeSpan] = attrs.Factory(list)
    node_marks: list[NodeMark] = attrs.Factory(list)
    node_ids: list[int] = attrs.Factory(list)
    heal_time: float | None = None
    end_time: float = 0.0
    # History lines of the operations lincheck could not place (its ">>>" lines).
    culprit_lines: list[int] = attrs.Factory(list)

    @property
    def verdict(self) -> str | None:
        verdict = (self.results or {}).get("verdict")
        return verdict if verdict in ("valid", "invalid", "unknown") else None


def _read_text(run_dir: Path, name: str, problems: list[str]) -> str | None:
    path = run_dir / name
    try:
        size = path.stat().st_size
        if size > FILE_BYTES_MAX:
            problems.append(f"{name}: {size} bytes, larger than {FILE_BYTES_MAX}; not read")
            return None
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(f"{name}: cannot read: {exc.strerror or exc}")
        return None


def _read_json(run_dir: Path, name: str, problems: list[str]) -> Any:
    text = _read_text(run_dir, name, problems)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        problems.append(f"{name}: not valid JSON: {exc}")
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _fault_id(value: Any) -> int | None:
    if isinstance(value, Mapping):
        fid = value.get("id")
        if isinstance(fid, int) and not isinstance(fid, bool):
            return fid
    return None


class _HistoryReader:
    """Pairs invocations with completions per process and fault starts with their stops."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.ops: list[Op] = []
        self.windows: list[Window] = []
        self._open_ops: dict[str, tuple[str, str | None, float, int]] = {}
        self._open_faults: dict[tuple[str, int | None], tuple[float, Mapping[str, Any]]] = {}
        self.bad_lines: list[int] = []
        self.orphans = 0
        self.untimed = 0
        self.last_time = 0.0

    def read(self, number: int, text: str) -> None:
        if not text.strip():
            return
        try:
            rec = json.loads(text)
        except ValueError:
            self.bad_lines.append(number)
            return
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            self.bad_lines.append(number)
            return
        t = _number(rec.get("time"))
        if t is None:
            self.untimed += 1
            return
        self.last_time = max(self.last_time, t)
        process = rec.get("process")
        if process == "nemesis":
            self._fault(_text(rec.get("f")), rec.get("value"), t)
        else:
            self._client(_text(process), rec["type"], _text(rec.get("f")), rec.get("key"), t,
                         number)

    def _client(self, process: str, kind: str, f: str, key: Any, t: float, line: int) -> None:
        if kind == "invoke":
            if process in self._open_ops:
                self._close_pending(process)
            self._open_ops[process] = (f, None if key is None else _text(key), t, line)
        elif kind in OUTCOMES:
            opened = self._open_ops.pop(process, None)
            if opened is None:
                self.orphans += 1
                return
            self.ops.append(Op(process, opened[0], opened[1], opened[2], t, kind, opened[3]))

    def _close_pending(self, process: str) -> None:
        f, key, t, line = self._open_ops.pop(process)
        self.ops.append(Op(process, f, key, t, None, "pending", line))

    def _fault(self, f: str, value: Any, t: float) -> None:
        phase, _, kind = f.partition("-")
        fid = _fault_id(value)
        if phase == "start" and kind:
            params = dict(value) if isinstance(value, Mapping) else {"value": value}
            self._open_faults[(kind, fid)] = (t, params)
        elif phase == "stop" and kind:
            opened = self._open_faults.pop((kind, fid), None)
            if opened is None:  # a stop without its id: close the oldest window of the kind
                same = [k for k in self._open_faults if k[0] == kind]
                if same:
                    fid = same[0][1]
                    opened = self._open_faults.pop(same[0])
            if opened is not None:
                self.windows.append(Window(fid, kind, opened[0], t, opened[1], planned=False))

    def finish(self) -> None:
        for process in list(self._open_ops):
            self._close_pending(process)
        for (kind, fid), (start, params) in self._open_faults.items():
            self.windows.append(Window(fid, kind, start, None, params, planned=False))
        self.ops.sort(key=lambda op: (op.invoke, op.process))
        self.windows.sort(key=lambda w: (w.start, w.kind))
        if self.bad_lines:
            named = ", ".join(str(n) for n in self.bad_lines[:PROBLEMS_NAMED_MAX])
            more = "..." if len(self.bad_lines) > PROBLEMS_NAMED_MAX else ""
            self.problems.append(f"history.jsonl: {len(self.bad_lines)} line(s) are not history "
                                 f"events and were skipped (lines {named}{more})")
        if self.untimed:
            self.problems.append(f"history.jsonl: {self.untimed} event(s) have no numeric "
                                 "'time' and are not plotted")
        if self.orphans:
            self.problems.append(f"history.jsonl: {self.orphans} completion(s) without an "
                                 "invocation were skipped")


# Checks whose violation lines each name a culprit operation's history line first (the counter
# checker's reads out of bounds, the set checker's lost adds and final read), besides
# lincheck's ">>>" lines; and how the latency plot labels their culprits.
CULPRIT_LABELS = {"linearizable": "not linearizable", "counter": "read out of bounds",
                  "set": "set element lost or unexpected"}


def culprit_label(results: Mapping[str, Any] | None) -> str:
    """What the circled operations of a run did wrong, from its failing history check."""
    checks = (results or {}).get("checks")
    for name, label in CULPRIT_LABELS.items():
        check = checks.get(name) if isinstance(checks, Mapping) else None
        if isinstance(check, Mapping) and check.get("valid") is False:
            return label
    return CULPRIT_LABELS["linearizable"]


def _culprit_lines(results: Mapping[str, Any]) -> list[int]:
    checks = results.get("checks")
    if not isinstance(checks, Mapping):
        return []
    found = []
    for name in CULPRIT_LABELS:
        check = checks.get(name)
        lines = check.get("violations") if isinstance(check, Mapping) else None
        for text in lines if isinstance(lines, list) else []:
            if isinstance(text, str) and (name != "linearizable" or ">>>" in text):
                match = _CULPRIT.search(text)
                if match:
                    found.append(int(match.group(1)))
    return found[:CULPRITS_MAX]


def _schedule_windows(schedule: Any, problems: list[str]) -> list[Window]:
    if not isinstance(schedule, Mapping):
        return []
    faults = schedule.get("faults")
    if not isinstance(faults, list):
        problems.append("nemesis.json: no list of faults")
        return []
    windows = []
    for raw in faults:
        if not isinstance(raw, Mapping):
            continue
        start, stop = _number(raw.get("start")), _number(raw.get("stop"))
        if start is None or stop is None:
            continue
        params = raw.get("params")
        windows.append(Window(_fault_id(raw), _text(raw.get("kind")), start, stop,
                              dict(params) if isinstance(params, Mapping) else {}, planned=True))
    windows.sort(key=lambda w: (w.start, w.kind))
    return windows


def _node_log(text: str, data: RunData) -> None:
    role: dict[int, tuple[str, float, str]] = {}  # node -> (state, since, label)
    end = data.end_time
    nodes: set[int] = set()

    def close(node: int, t: float) -> None:
        opened = role.pop(node, None)
        if opened is not None:
            data.node_spans.append(NodeSpan(node, opened[0], opened[1], t, opened[2]))

    for line in text.splitlines():
        heal = _HEAL_LINE.match(line)
        if heal:
            data.heal_time = float(heal.group(1))
            continue
        match = _NODE_LINE.match(line)
        if not match:
            continue
        stamp, node, event = match.group(1), int(match.group(2)), match.group(3)
        t = 0.0 if stamp == "startup" else float(stamp)
        nodes.add(node)
        end = max(end, t)
        word = event.split(" ", 1)[0].rstrip(":")
        role_match = _ROLE.match(event)
        if role_match:
            name, term = role_match.group(1), role_match.group(2)
            if role.get(node, ("",))[0] == "leader":
                close(node, t)
            if name == "leader":
                role[node] = ("leader", t, f"T{term}")
            elif name in ("candidate", "pre-candidate", "pre_candidate"):
                data.node_marks.append(NodeMark(node, t, "candidate"))
        elif word == "crash":
            close(node, t)
            role[node] = ("down", t, "")
            data.node_marks.append(NodeMark(node, t, "crash"))
        elif word == "start":
            if role.get(node, ("",))[0] == "down":
                close(node, t)
                data.node_marks.append(NodeMark(node, t, "start"))
        elif word in ("stopped", "exit", "exited"):
            # The harness stopped the process at the end of the run: no state after this.
            close(node, t)
            role.pop(node, None)
        elif word == "pause":
            close(node, t)
            role[node] = ("paused", t, "")
        elif word == "resume" and role.get(node, ("",))[0] == "paused":
            close(node, t)
    data.end_time = end
    for node in list(role):
        close(node, end)
    data.node_ids = sorted(nodes)


def load(run_dir: Path) -> RunData:
    data = RunData(run_dir=run_dir)
    problems = data.problems
    if not run_dir.is_dir():
        problems.append(f"{run_dir}: not a directory")
        return data
    results = _read_json(run_dir, "results.json", problems)
    if isinstance(results, dict):
        data.results = results
        data.culprit_lines = _culprit_lines(results)
    elif results is not None:
        problems.append("results.json: not a JSON object")
    schedule = _read_json(run_dir, "nemesis.json", problems)
    data.schedule = schedule if isinstance(schedule, dict) else None
    history = _read_text(run_dir, "history.jsonl", problems)
    if history is not None:
        data.history_present = True
        reader = _HistoryReader(problems)
        for number, text in enumerate(history.splitlines(), start=1):
            reader.read(number, text)
        reader.finish()
        data.ops = reader.ops
        data.windows = reader.windows
        data.end_time = reader.last_time
        data.history_has_times = reader.untimed == 0 or bool(reader.ops)
    planned = _schedule_windows(data.schedule, problems)
    if not data.windows:
        data.windows = planned
    if data.windows:
        data.end_time = max(data.end_time, *(w.stop or w.start for w in data.windows))
    node_log = _read_text(run_dir, "nodes.log", problems)
    if node_log is not None:
        _node_log(node_log, data)
    return data
