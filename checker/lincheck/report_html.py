"""A self-contained HTML report of a check: ``render_html(history, result)``, ``write_html``.

One page, no external scripts, fonts or images (inline CSS, inline SVG, a little inline JS
that only reads ``data-*`` attributes and writes ``textContent``; every user value is escaped).

What the page shows, per partition (key):
- one row per process, each operation a bar from its invocation to its completion on an axis of
  event order (runs of consecutive invocations, or of completions, share a column: their
  relative order cannot matter, and sharing keeps the page narrow); times, when the history
  has them, label the axis and the tooltips;
- operations of unknown outcome run to the end of the axis, hatched;
- the longest linearization found, numbered and joined by a line through the bars;
- the culprit (the first operation that could not be placed: of the completed operations left
  out, the one that returned first, as ``lincheck.report_text`` explains), outlined in red and
  joined to the last linearized step by a dashed line, and the page scrolls to it; the other
  operations that could have gone next are outlined in orange; every one of them says on hover
  why it could not go next (the same words as the text explanation, which the page includes);
- nemesis events on their own row, fault windows (a ``start``-like event up to the next
  ``stop``-like one) shaded across all rows;
- the model state after each linearized operation, on hover (tooltip) and in a step table.

Large histories stay usable: the failing partition comes first, at most
``ops_drawn_per_partition_max`` operations of a partition are drawn (a window around the
failure), at most ``ops_drawn_total_max`` over the page, and the page says what it left out.
"""

from __future__ import annotations

import bisect
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from .history import NEMESIS, Event, History, Operation
from .report_text import (
    describe_key,
    describe_lines,
    describe_op,
    explain,
    format_seconds,
    format_value,
    ordered_partitions,
    stuck_reasons,
    unplaced_of,
)
from .result import PartitionResult, Result

if TYPE_CHECKING:
    from .report_text import DescribesOps

# Limits that keep the page light enough for a browser with histories of any size.
ops_drawn_per_partition_max = 1500
ops_drawn_total_max = 6000
partitions_drawn_max = 200
steps_listed_max = 200
stuck_rows_max = 10
nemesis_drawn_max = 2000
tip_chars_max = 600
label_chars_max = 40

# Geometry, in CSS pixels. Columns are wide when few, so that bars have room for a label.
column_px_by_columns = ((300, 56.0), (1200, 34.0), (math.inf, 22.0))
row_px = 26
bar_px = 16
axis_px = 26
labels_px = 118
point_radius_px = 7
margin_px = 14

FAULT_OPENERS = ("start", "kill", "pause", "partition", "crash", "isolate", "corrupt", "fail")
FAULT_CLOSERS = ("stop", "heal", "resume", "restart", "recover", "unpause", "repair")


def _e(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def _clip(text: str, chars_max: int) -> str:
    return text if len(text) <= chars_max else text[: max(chars_max - 1, 1)] + "…"


@dataclass
class _View:
    """One partition as drawn: which operations, and what the search said about them."""

    anchor: str
    title: str
    part: PartitionResult | None
    ops: list[Operation]
    total_ops: int
    position: dict[int, int] = field(default_factory=dict)  # op id -> 1-based step
    state: dict[int, str] = field(default_factory=dict)  # op id -> state after it
    unplaced: list[int] = field(default_factory=list)
    # Op id -> why it could not go next, for each operation that could have (culprit first).
    reasons: dict[int, str] = field(default_factory=dict)
    note: str = ""
    # Whether the drawn operations reach the partition's first / last one: if so, the nemesis
    # events before / after them are part of the picture too.
    from_start: bool = True
    to_end: bool = True


@dataclass
class _Axis:
    """Event index -> column. Columns are shared by runs of events of the same kind."""

    indexes: list[int]  # sorted event indexes on the axis
    columns: list[int]  # column of indexes[i]
    width: int  # number of columns, including one past the last for open operations
    labels: dict[int, str]  # column -> axis label
    column_px: float

    def x(self, column: float) -> float:
        return margin_px + column * self.column_px

    def column(self, index: int) -> float:
        i = bisect.bisect_left(self.indexes, index)
        if i < len(self.indexes) and self.indexes[i] == index:
            return float(self.columns[i])
        # Not on the axis (e.g. a fault window opened before the drawn range): between columns.
        if i == 0:
            return -0.5
        if i >= len(self.indexes):
            return self.width - 0.5
        return (self.columns[i - 1] + self.columns[i]) / 2


def render_html(
    history: History,
    result: Result,
    model_name: str | None = None,
    *,
    model: DescribesOps | None = None,
) -> str:
    """The report as one HTML document (a str). ``model`` optionally words the operations."""
    name = model_name or result.model
    ops_by_id = {op.id: op for op in history.operations}
    events_by_index = {event.index: event for event in history.events}
    views, left_out = _plan_views(history, result, ops_by_id, model)
    sections = [
        _render_view(view, history, events_by_index, model, hidden=i > 0)
        for i, view in enumerate(views)
    ]
    body = [
        _header(history, result, name, _culprit_line(views, ops_by_id, model)),
        _explanation(history, result, model),
        _selector(views, left_out),
        _legend(any(view.unplaced for view in views), any(len(v.reasons) > 1 for v in views)),
        *sections,
    ]
    if not views:
        body.append('<p class="note">The history has no client operations.</p>')
    return _page(f"lincheck: {result.verdict} — {history.source}", "\n".join(body))


def write_html(
    history: History,
    result: Result,
    path: str | PathLike[str],
    model_name: str | None = None,
    *,
    model: DescribesOps | None = None,
) -> Path:
    """Render the report and write it to ``path`` (UTF-8); returns the path written."""
    target = Path(path)
    target.write_text(render_html(history, result, model_name, model=model), encoding="utf-8")
    return target


# ---------------------------------------------------------------------------------------------
# Which partitions, and which of their operations, to draw.


def _plan_views(
    history: History,
    result: Result,
    ops_by_id: dict[int, Operation],
    model: DescribesOps | None = None,
) -> tuple[list[_View], str]:
    parts = ordered_partitions(result)
    if not parts:
        if not history.operations:
            return [], ""
        whole = PartitionResult(
            key=None,
            verdict=result.verdict,
            operation_ids=tuple(op.id for op in history.operations),
        )
        parts = [whole]
    views: list[_View] = []
    budget = ops_drawn_total_max
    undrawn: dict[str, int] = {}
    for part in parts:
        size = min(len(part.operation_ids), ops_drawn_per_partition_max)
        # The first partition (the failing one, when there is one) is always drawn.
        if views and (len(views) >= partitions_drawn_max or size > budget):
            undrawn[part.verdict] = undrawn.get(part.verdict, 0) + 1
            continue
        view = _make_view(len(views), part, ops_by_id)
        view.reasons = stuck_reasons(part, ops_by_id, model, result.model)
        budget -= len(view.ops)
        views.append(view)
    left_out = ""
    if undrawn:
        counts = ", ".join(f"{n:,} {verdict}" for verdict, n in sorted(undrawn.items()))
        left_out = (
            f"{sum(undrawn.values()):,} more partitions not drawn ({counts}) to keep the page "
            f"light (at most {ops_drawn_total_max:,} operations are drawn in all)."
        )
    return views, left_out


def _make_view(number: int, part: PartitionResult, ops_by_id: dict[int, Operation]) -> _View:
    ops = sorted((ops_by_id[i] for i in part.operation_ids if i in ops_by_id), key=_call_order)
    view = _View(
        anchor=f"part-{number}",
        title=describe_key(part.key) if part.key is not None else "whole history",
        part=part,
        ops=ops,
        total_ops=len(ops),
        position={op_id: n + 1 for n, op_id in enumerate(part.longest)},
        state={
            op_id: part.states[n] for n, op_id in enumerate(part.longest) if n < len(part.states)
        },
        unplaced=[i for i in unplaced_of(part) if i in ops_by_id],
    )
    if len(ops) > ops_drawn_per_partition_max:
        _window(view)
    return view


def _call_order(op: Operation) -> tuple[int, int]:
    return (op.call, op.id)


def _window(view: _View) -> None:
    """Keep a window of operations around the point of failure (or the start)."""
    ops = view.ops
    focus_id: int | None = None
    if view.unplaced:
        focus_id = view.unplaced[0]
    elif view.part is not None and view.part.longest and view.part.verdict != "ok":
        focus_id = view.part.longest[-1]
    focus = next((i for i, op in enumerate(ops) if op.id == focus_id), 0)
    # Mostly what led up to the failure, a little of what came after.
    start = max(focus - (ops_drawn_per_partition_max * 3) // 4, 0)
    end = min(start + ops_drawn_per_partition_max, len(ops))
    start = max(end - ops_drawn_per_partition_max, 0)
    view.ops = ops[start:end]
    view.from_start = start == 0
    view.to_end = end == len(ops)
    view.note = (
        f"Showing operations {start + 1:,}–{end:,} of {len(ops):,} of this partition "
        f"(in invocation order{', around the failure' if focus_id is not None else ''}); "
        f"at most {ops_drawn_per_partition_max:,} are drawn."
    )


# ---------------------------------------------------------------------------------------------
# Geometry.


def _build_axis(view: _View, nemesis: Sequence[Event], events: dict[int, Event]) -> _Axis:
    points: list[tuple[int, str]] = []
    for op in view.ops:
        points.append((op.call, "call"))
        if op.ret is not None:
            points.append((op.ret, "ret"))
    if points:
        low = -math.inf if view.from_start else min(index for index, _ in points)
        high = math.inf if view.to_end else max(index for index, _ in points)
        points.extend((event.index, "nemesis") for event in nemesis if low <= event.index <= high)
    points.sort()
    indexes: list[int] = []
    columns: list[int] = []
    column = -1
    kind_before = ""
    for index, kind in points:
        if indexes and indexes[-1] == index:
            continue
        if kind != kind_before or kind == "nemesis":
            column += 1
            kind_before = kind
        indexes.append(index)
        columns.append(column)
    width = column + 2  # one more column where open operations end
    px = next(px for limit, px in column_px_by_columns if width <= limit)
    return _Axis(indexes, columns, width, _axis_labels(indexes, columns, events, px), px)


def _axis_labels(
    indexes: list[int], columns: list[int], events: dict[int, Event], column_px: float
) -> dict[int, str]:
    labels: dict[int, str] = {}
    every = max(1, math.ceil(90 / column_px))
    times = [events[i].time for i in indexes if i in events]
    timed = bool(times) and all(t is not None for t in times)
    for index, column in zip(indexes, columns, strict=True):
        if column % every or column in labels:
            continue
        event = events.get(index)
        if timed and event is not None and event.time is not None:
            labels[column] = f"{event.time:.3f}s"
        else:
            labels[column] = f"#{index}"
    return labels


def _linearization_points(view: _View, axis: _Axis) -> list[tuple[int, float]]:
    """(op id, column) for each drawn linearized operation: nondecreasing, inside its bar.

    Step i may sit anywhere after every invocation of steps 1..i and before every completion
    of steps i..n; that interval is never empty when the order is a linearization. Within it,
    the point goes near the end of its own bar, where it hides less of the bar's label.
    """
    drawn = {op.id: op for op in view.ops}
    chain = [drawn[i] for i in (view.part.longest if view.part else ()) if i in drawn]
    end = axis.width - 0.3
    calls = [axis.column(op.call) for op in chain]
    rets = [axis.column(op.ret) if op.ret is not None else end for op in chain]
    upper = rets[:]
    for i in range(len(chain) - 2, -1, -1):
        upper[i] = min(upper[i], upper[i + 1])
    points: list[tuple[int, float]] = []
    lower = -math.inf
    before = -math.inf
    for i, op in enumerate(chain):
        lower = max(lower, calls[i])
        target = rets[i] - 0.3 if op.ret is not None else calls[i] + 0.6
        point = min(max(target, lower + 0.15, before + 0.12), upper[i] - 0.1)
        before = max(point, before)
        points.append((op.id, before))
    return points


def _fault_windows(nemesis: Sequence[Event]) -> list[tuple[int, int | None, str]]:
    """(first index, last index or None when never healed, label) of each fault window."""
    windows: list[tuple[int, int | None, str]] = []
    open_at: int | None = None
    label = ""
    for event in nemesis:
        f = str(event.f).lower()
        if f.startswith(FAULT_OPENERS) and open_at is None:
            open_at, label = event.index, str(event.f)
        elif f.startswith(FAULT_CLOSERS) and open_at is not None:
            windows.append((open_at, event.index, label))
            open_at = None
    if open_at is not None:
        windows.append((open_at, None, label))
    return windows


# ---------------------------------------------------------------------------------------------
# Markup.


def _culprit_line(
    views: list[_View], ops_by_id: dict[int, Operation], model: DescribesOps | None
) -> str:
    """One line naming the culprit of the first failing partition and why it is stuck."""
    view = next((v for v in views if v.reasons), None)
    if view is None:
        return ""
    op_id = next(iter(view.reasons))
    op = ops_by_id[op_id]
    where = describe_lines(op)
    key = f" in {view.title}" if view.part is not None and view.part.key is not None else ""
    return (
        f"process {op.process}'s {describe_op(op, model)}{f' ({where})' if where else ''}"
        f"{key} could not be placed: {view.reasons[op_id]}"
    )


def _header(history: History, result: Result, model_name: str, culprit: str = "") -> str:
    verdict_text = {
        "ok": "Linearizable",
        "illegal": "Not linearizable",
        "unknown": "Unknown: not decided",
    }.get(result.verdict, result.verdict)
    processes = {op.process for op in history.operations}
    facts = [
        f"model <b>{_e(model_name)}</b>",
        f"{len(history.operations):,} operations",
        f"{len(processes):,} processes",
    ]
    if len(result.partitions) > 1:
        bad = sum(1 for part in result.partitions if part.verdict != "ok")
        facts.append(f"{len(result.partitions):,} partitions ({bad:,} not ok)")
    if history.nemesis:
        facts.append(f"{len(history.nemesis):,} nemesis events")
    facts.append(f"checked in {format_seconds(result.seconds)}")
    shown = result.reason
    if culprit and result.verdict == "illegal":
        # "operation 43 cannot be placed" names an internal id; the culprit line says it in
        # words. Keep only what follows it (e.g. partitions left unchecked).
        shown = shown.split("; ", 1)[1] if "; " in shown else ""
    reason = f'<div class="reason">{_e(shown)}</div>' if shown else ""
    if culprit:
        reason += f'<div class="reason culprit">{_e(_clip(culprit, tip_chars_max))}</div>'
    return (
        f'<header class="v-{_e(result.verdict)}"><div class="badge">{_e(verdict_text)}</div>'
        f'<div><div class="src">{_e(history.source)}</div>'
        f'<div class="facts">{" · ".join(facts)}</div>{reason}</div></header>'
    )


def _explanation(history: History, result: Result, model: DescribesOps | None) -> str:
    text = explain(history, result, model=model)
    is_open = " open" if result.verdict != "ok" else ""
    return (
        f'<details class="explain"{is_open}><summary>Explanation</summary>'
        f"<pre>{_e(text)}</pre></details>"
    )


def _selector(views: list[_View], left_out: str) -> str:
    out: list[str] = []
    if len(views) > 1:
        options = "".join(
            f'<option value="{view.anchor}">{_e(_clip(view.title, 80))} — '
            f"{_e(view.part.verdict if view.part else '')}, {view.total_ops:,} ops</option>"
            for view in views
        )
        out.append(
            f'<div class="pick"><label>Partition: <select id="pick">{options}</select></label>'
            f'<span class="note">{len(views):,} drawn; failing ones first</span></div>'
        )
    if left_out:
        out.append(f'<p class="note">{_e(left_out)}</p>')
    return "".join(out)


def _legend(with_failure: bool, with_candidates: bool = False) -> str:
    failure = (
        '<span><i class="sw bad"></i>first operation that could not be placed</span>'
        + ('<span><i class="sw cand"></i>could have gone next, but did not fit</span>'
           if with_candidates else "")
        + '<span><i class="sw later"></i>others left unplaced</span>'
        if with_failure
        else ""
    )
    return (
        '<div class="legend">'
        '<span><i class="sw lin"></i>linearized (number = order)</span>'
        '<span><i class="sw plain"></i>not in the linearization</span>'
        '<span><i class="sw info"></i>outcome unknown '
        "(may take effect any time later, or never)</span>"
        f"{failure}"
        '<span><i class="sw fault"></i>fault window</span>'
        "<span>hover a bar for its state, or why it could not go next</span></div>"
    )


def _render_view(
    view: _View,
    history: History,
    events: dict[int, Event],
    model: DescribesOps | None,
    *,
    hidden: bool,
) -> str:
    nemesis = history.nemesis[:nemesis_drawn_max]
    axis = _build_axis(view, nemesis, events)
    processes = sorted({op.process for op in view.ops}, key=_process_order)
    shown_nemesis = [
        e for e in nemesis if axis.indexes and axis.indexes[0] <= e.index <= axis.indexes[-1]
    ]
    rows: list[str] = ([NEMESIS] if shown_nemesis else []) + [str(p) for p in processes]
    row_of = {str(p): n + (1 if shown_nemesis else 0) for n, p in enumerate(processes)}
    width = axis.x(axis.width) + margin_px
    height = axis_px + len(rows) * row_px + 8

    svg: list[str] = [
        f'<svg class="tl" width="{width:.0f}" height="{height}">'
    ]
    svg.extend(_grid(axis, rows, width, height))
    svg.extend(_faults(nemesis, axis, height))
    if shown_nemesis:
        svg.extend(_nemesis_row(shown_nemesis, axis))
    unplaced_first = view.unplaced[0] if view.unplaced else None
    points = _linearization_points(view, axis)
    point_of = dict(points)
    for op in view.ops:
        row = row_of[str(op.process)]
        svg.append(_bar(op, view, axis, row, model, unplaced_first, point_of.get(op.id)))
    svg.extend(_polyline(view, axis, row_of, points))
    svg.append("</svg>")

    labels = [f'<svg class="lab" width="{labels_px}" height="{height}">']
    for n, name in enumerate(rows):
        y = axis_px + n * row_px + row_px / 2 + 4
        text = "nemesis" if n == 0 and shown_nemesis else f"process {name}"
        labels.append(
            f'<text x="{labels_px - 8}" y="{y:.1f}" text-anchor="end">{_e(_clip(text, 18))}</text>'
        )
    labels.append("</svg>")

    verdict = view.part.verdict if view.part else ""
    note = f'<p class="note">{_e(view.note)}</p>' if view.note else ""
    return (
        f'<section class="part" id="{view.anchor}"{" hidden" if hidden else ""}>'
        f'<h2>{_e(view.title)} <span class="pv v-{_e(verdict)}">{_e(verdict)}</span>'
        f'<span class="count">{view.total_ops:,} operations</span></h2>{note}'
        f'<div class="tlwrap">{"".join(labels)}<div class="scroll">{"".join(svg)}</div></div>'
        f"{_steps(view, model)}</section>"
    )


def _process_order(process: int | str) -> tuple[int, int, str]:
    if isinstance(process, int):
        return (0, process, "")
    return (1, 0, str(process))


def _grid(axis: _Axis, rows: list[str], width: float, height: float) -> list[str]:
    out = []
    for n in range(len(rows)):
        if n % 2:
            y = axis_px + n * row_px
            out.append(f'<rect class="stripe" x="0" y="{y}" width="100%" height="{row_px}"/>')
    for column, label in sorted(axis.labels.items()):
        x = axis.x(column)
        out.append(
            f'<line class="tick" x1="{x:.1f}" y1="{axis_px - 6}" x2="{x:.1f}" y2="{height}"/>'
        )
        out.append(f'<text class="axis" x="{x + 2:.1f}" y="{axis_px - 10}">{_e(label)}</text>')
    return out


def _faults(nemesis: Sequence[Event], axis: _Axis, height: float) -> list[str]:
    out: list[str] = []
    if not axis.indexes:
        return out
    first, last = axis.indexes[0], axis.indexes[-1]
    for start, end, label in _fault_windows(nemesis):
        if start > last or (end is not None and end < first):
            continue
        x1 = axis.x(max(axis.column(start), -0.5) if start >= first else -0.5)
        x2 = axis.x(axis.column(end) if end is not None and end <= last else axis.width - 0.5)
        until = f" to #{end})" if end is not None else ", never healed)"
        tip = f"fault window: {label} (event #{start}{until}"
        out.append(
            f'<rect class="fault" x="{x1:.1f}" y="{axis_px - 4}" width="{max(x2 - x1, 3):.1f}" '
            f'height="{height - axis_px + 4}" data-tip="{_e(tip)}"/>'
        )
    return out


def _nemesis_row(nemesis: Sequence[Event], axis: _Axis) -> list[str]:
    out = []
    y = axis_px + row_px / 2
    for event in nemesis:
        x = axis.x(axis.column(event.index))
        value = format_value(event.value, tip_chars_max)
        tip = f"nemesis {event.type} {event.f}: {value}\nevent #{event.index}"
        if event.line is not None:
            tip += f", line {event.line}"
        if event.time is not None:
            tip += f", time {event.time:.3f} s"
        name = _e(_clip(str(event.f), 12))
        out.append(
            f'<g class="nem" data-tip="{_e(tip)}"><path d="M{x:.1f} {y - 7:.1f}l6 7l-6 7l-6-7z"/>'
            f'<text x="{x + 8:.1f}" y="{y + 4:.1f}">{name}</text></g>'
        )
    return out


def _bar(
    op: Operation,
    view: _View,
    axis: _Axis,
    row: int,
    model: DescribesOps | None,
    unplaced_first: int | None,
    point: float | None,
) -> str:
    x1 = axis.x(axis.column(op.call)) + 2
    x2 = axis.x(axis.column(op.ret) if op.ret is not None else axis.width - 0.3) - 2
    width = max(x2 - x1, 4)
    y = axis_px + row * row_px + (row_px - bar_px) / 2
    classes = ["op"]
    if op.status == "info":
        classes.append("info")
    step = view.position.get(op.id)
    if step is not None:
        classes.append("lin")
    if op.id in view.unplaced:
        classes.append("bad")
    if op.id == unplaced_first:
        classes.append("first")
    elif op.id in view.reasons:
        classes.append("cand")
    text = describe_op(op, model)
    tip = _tip(op, text, view)
    label = ""
    # The label stops short of the step's numbered point, so that neither hides the other.
    text_end = x1 + width
    if point is not None and x1 < axis.x(point) < x1 + width:
        text_end = axis.x(point) - point_radius_px - 1
    chars = int((text_end - x1 - 5) / 6.6)
    if chars >= 3:
        compact = text.replace(" → ", "→").replace(", ", ",")  # bars are narrow
        shown = _e(_clip(compact, min(chars, label_chars_max)))
        label = f'<text x="{x1 + 4:.1f}" y="{y + bar_px - 4:.1f}">{shown}</text>'
    return (
        f'<g class="{" ".join(classes)}" data-op="{op.id}" data-tip="{_e(tip)}">'
        f'<rect x="{x1:.1f}" y="{y:.1f}" width="{width:.1f}" height="{bar_px}" rx="3"/>{label}</g>'
    )


def _tip(op: Operation, text: str, view: _View) -> str:
    lines = [f"process {op.process}: {_clip(text, tip_chars_max)}"]
    where = [describe_lines(op)] if op.call_line is not None else []
    where.append(f"events #{op.call}–#{op.ret}" if op.ret is not None else f"event #{op.call}–end")
    if op.call_time is not None:
        end = f"{op.ret_time:.3f}" if op.ret_time is not None else "?"
        where.append(f"time {op.call_time:.3f}–{end} s")
    lines.append(", ".join(w for w in where if w))
    step = view.position.get(op.id)
    if step is not None:
        state = view.state.get(op.id, "?")
        lines.append(f"linearized #{step}; state after: {_clip(state, tip_chars_max)}")
    elif op.id in view.unplaced or op.id in view.reasons:
        before = _state_before_failure(view)
        first = bool(view.unplaced) and op.id == view.unplaced[0]
        if first:
            which = "FIRST operation that could not be placed"
        elif op.id in view.reasons:
            which = "could have gone next, but did not fit"
        else:
            which = "operation that could not be placed"
        lines.append(f"{which}; state was: {_clip(before, tip_chars_max)}")
        reason = view.reasons.get(op.id)
        if reason:
            lines.append(f"why: {_clip(reason, tip_chars_max)}")
        elif view.reasons and not first:
            lines.append("invoked after the first one returned: it must come later")
    elif op.status == "info":
        lines.append("outcome unknown: may take effect any time after its invocation, or never")
    else:
        lines.append("not in the longest linearization")
    return "\n".join(lines)


def _state_before_failure(view: _View) -> str:
    if view.part is None or not view.part.longest:
        return "initial state"
    return view.state.get(view.part.longest[-1], "?")


def _polyline(
    view: _View, axis: _Axis, row_of: dict[str, int], points: list[tuple[int, float]]
) -> list[str]:
    drawn = {op.id: op for op in view.ops}
    coords = [
        (op_id, axis.x(column), axis_px + row_of[str(drawn[op_id].process)] * row_px + row_px / 2)
        for op_id, column in points
    ]
    out: list[str] = []
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for _, x, y in coords)
        out.append(f'<polyline class="linpath" points="{path}"/>')
    unplaced_first = view.unplaced[0] if view.unplaced else None
    if unplaced_first is not None and unplaced_first in drawn and coords:
        target = drawn[unplaced_first]
        tx = axis.x(axis.column(target.call)) + 6
        ty = axis_px + row_of[str(target.process)] * row_px + row_px / 2
        _, lx, ly = coords[-1]
        out.append(f'<line class="stuck" x1="{lx:.1f}" y1="{ly:.1f}" x2="{tx:.1f}" y2="{ty:.1f}"/>')
    for op_id, x, y in coords:
        step = view.position[op_id]
        tip = f"step {step}: state after = {_clip(view.state.get(op_id, '?'), tip_chars_max)}"
        out.append(
            f'<g class="pt" data-op="{op_id}" data-tip="{_e(tip)}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{point_radius_px}"/>'
            f'<text x="{x:.1f}" y="{y + 3:.1f}">{step}</text></g>'
        )
    return out


def _steps(view: _View, model: DescribesOps | None) -> str:
    part = view.part
    if part is None or (not part.longest and not view.unplaced):
        return ""
    ops = {op.id: op for op in view.ops}
    done = len(part.longest)
    start = max(done - steps_listed_max, 0)
    rows = []
    if start:
        rows.append(f'<tr><td colspan="5" class="note">… {start:,} earlier steps</td></tr>')
    for n in range(start, done):
        op_id = part.longest[n]
        op = ops.get(op_id)
        rows.append(_step_row(str(n + 1), op_id, op, view.state.get(op_id, "?"), model, ""))
    if view.reasons:
        for k, (op_id, reason) in enumerate(view.reasons.items()):
            if k >= stuck_rows_max:
                break
            note = ("could not be placed (first): " if k == 0 else "could go next, but: ") + reason
            rows.append(_step_row("✗" if k == 0 else "?", op_id, ops.get(op_id), note, model,
                                  "bad" if k == 0 else "bad cand"))
        later = [i for i in view.unplaced if i not in view.reasons]
        if later:
            rows.append(
                f'<tr class="bad"><td>·</td><td colspan="4">{len(later):,} more completed '
                f"operation{' was' if len(later) == 1 else 's were'} invoked after the first "
                "one returned: they must come later</td></tr>"
            )
    for k, op_id in enumerate([] if view.reasons else view.unplaced[:stuck_rows_max]):
        op = ops.get(op_id)
        label = "✗" if k == 0 else "·"
        note = "could not be placed" + (" (first)" if k == 0 else "")
        rows.append(_step_row(label, op_id, op, note, model, "bad"))
    is_open = " open" if part.verdict != "ok" else ""
    title = "Longest linearization" if part.verdict != "ok" else "Linearization"
    return (
        f'<details class="steps"{is_open}><summary>{title}: {done:,} steps'
        f"{', then stuck' if view.unplaced else ''}</summary>"
        '<table><thead><tr><th>#</th><th>process</th><th>operation</th><th>lines</th>'
        f'<th>state after{", or why not" if view.unplaced else ""}</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></details>'
    )


def _step_row(
    label: str, op_id: int, op: Operation | None, state: str, model: DescribesOps | None, cls: str
) -> str:
    if op is None:
        cells = f"<td></td><td>operation {op_id} (not drawn)</td><td></td>"
    else:
        cells = (
            f"<td>{_e(op.process)}</td><td>{_e(_clip(describe_op(op, model), 120))}</td>"
            f"<td>{_e(describe_lines(op))}</td>"
        )
    return (
        f'<tr class="{cls}" data-op="{op_id}"><td>{_e(label)}</td>{cells}'
        f"<td>{_e(_clip(state, tip_chars_max if 'bad' in cls else 200))}</td></tr>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>\n{_asset('report.css')}</style></head><body>"
        f'{_DEFS}{body}<div id="tip" role="tooltip"></div>'
        f"<script>\n{_asset('report.js')}</script></body></html>\n"
    )


_DEFS = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdf6e6"/>'
    '<rect width="2" height="6" fill="#f4dca6"/></pattern></defs></svg>'
)


def _asset(name: str) -> str:
    """A file of ``report_assets`` (shipped as package data, see pyproject.toml): the page's
    stylesheet and script live there as CSS and JS, not as Python strings. Read once."""
    text = _ASSETS.get(name)
    if text is None:
        text = _ASSETS[name] = (resources.files("lincheck") / "report_assets" / name).read_text(
            encoding="utf-8")
    return text


_ASSETS: dict[str, str] = {}
