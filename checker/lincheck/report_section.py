"""One partition's section of the HTML report (``lincheck.report_html`` lays out the page):
its timeline, drawn as inline SVG, and its table of linearization steps.

- one row per process, each operation a bar from its invocation to its completion on an axis of
  event order (runs of consecutive invocations, or of completions, share a column: their
  relative order cannot matter, and sharing keeps the page narrow); times, when the history
  has them, label the axis and the tooltips;
- operations of unknown outcome run to the end of the axis, hatched;
- the longest linearization found, numbered and joined by a line through the bars;
- the culprit outlined in red and joined to the last linearized step by a dashed line; the
  other operations that could have gone next outlined in orange, each saying on hover why it
  could not;
- nemesis events on their own row, fault windows shaded across all rows.

Invariants: every user value goes through ``esc`` before it reaches markup; the
linearization points are nondecreasing and each lies inside its own bar
(``_linearization_points``); at most ``nemesis_drawn_max`` nemesis events, ``steps_listed_max``
steps and ``stuck_rows_max`` stuck operations are drawn per section.
"""

from __future__ import annotations

import bisect
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .history import NEMESIS, Event, History, Operation
from .report_text import describe_lines, describe_op, format_value
from .result import PartitionResult

if TYPE_CHECKING:
    from .report_text import DescribesOps

# Limits that keep a section light enough for a browser with histories of any size.
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


def esc(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def clip(text: str, chars_max: int) -> str:
    return text if len(text) <= chars_max else text[: max(chars_max - 1, 1)] + "…"


@dataclass
class View:
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


def _build_axis(view: View, nemesis: Sequence[Event], events: dict[int, Event]) -> _Axis:
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


def _linearization_points(view: View, axis: _Axis) -> list[tuple[int, float]]:
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


def render_section(
    view: View,
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
            f'<text x="{labels_px - 8}" y="{y:.1f}" text-anchor="end">{esc(clip(text, 18))}</text>'
        )
    labels.append("</svg>")

    verdict = view.part.verdict if view.part else ""
    note = f'<p class="note">{esc(view.note)}</p>' if view.note else ""
    return (
        f'<section class="part" id="{view.anchor}"{" hidden" if hidden else ""}>'
        f'<h2>{esc(view.title)} <span class="pv v-{esc(verdict)}">{esc(verdict)}</span>'
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
        out.append(f'<text class="axis" x="{x + 2:.1f}" y="{axis_px - 10}">{esc(label)}</text>')
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
            f'height="{height - axis_px + 4}" data-tip="{esc(tip)}"/>'
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
        name = esc(clip(str(event.f), 12))
        out.append(
            f'<g class="nem" data-tip="{esc(tip)}"><path d="M{x:.1f} {y - 7:.1f}l6 7l-6 7l-6-7z"/>'
            f'<text x="{x + 8:.1f}" y="{y + 4:.1f}">{name}</text></g>'
        )
    return out


def _bar(
    op: Operation,
    view: View,
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
        shown = esc(clip(compact, min(chars, label_chars_max)))
        label = f'<text x="{x1 + 4:.1f}" y="{y + bar_px - 4:.1f}">{shown}</text>'
    return (
        f'<g class="{" ".join(classes)}" data-op="{op.id}" data-tip="{esc(tip)}">'
        f'<rect x="{x1:.1f}" y="{y:.1f}" width="{width:.1f}" height="{bar_px}" rx="3"/>{label}</g>'
    )


def _tip(op: Operation, text: str, view: View) -> str:
    lines = [f"process {op.process}: {clip(text, tip_chars_max)}"]
    where = [describe_lines(op)] if op.call_line is not None else []
    where.append(f"events #{op.call}–#{op.ret}" if op.ret is not None else f"event #{op.call}–end")
    if op.call_time is not None:
        end = f"{op.ret_time:.3f}" if op.ret_time is not None else "?"
        where.append(f"time {op.call_time:.3f}–{end} s")
    lines.append(", ".join(w for w in where if w))
    step = view.position.get(op.id)
    if step is not None:
        state = view.state.get(op.id, "?")
        lines.append(f"linearized #{step}; state after: {clip(state, tip_chars_max)}")
    elif op.id in view.unplaced or op.id in view.reasons:
        before = _state_before_failure(view)
        first = bool(view.unplaced) and op.id == view.unplaced[0]
        if first:
            which = "FIRST operation that could not be placed"
        elif op.id in view.reasons:
            which = "could have gone next, but did not fit"
        else:
            which = "operation that could not be placed"
        lines.append(f"{which}; state was: {clip(before, tip_chars_max)}")
        reason = view.reasons.get(op.id)
        if reason:
            lines.append(f"why: {clip(reason, tip_chars_max)}")
        elif view.reasons and not first:
            lines.append("invoked after the first one returned: it must come later")
    elif op.status == "info":
        lines.append("outcome unknown: may take effect any time after its invocation, or never")
    else:
        lines.append("not in the longest linearization")
    return "\n".join(lines)


def _state_before_failure(view: View) -> str:
    if view.part is None or not view.part.longest:
        return "initial state"
    return view.state.get(view.part.longest[-1], "?")


def _polyline(
    view: View, axis: _Axis, row_of: dict[str, int], points: list[tuple[int, float]]
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
        tip = f"step {step}: state after = {clip(view.state.get(op_id, '?'), tip_chars_max)}"
        out.append(
            f'<g class="pt" data-op="{op_id}" data-tip="{esc(tip)}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{point_radius_px}"/>'
            f'<text x="{x:.1f}" y="{y + 3:.1f}">{step}</text></g>'
        )
    return out


def _steps(view: View, model: DescribesOps | None) -> str:
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
            f"<td>{esc(op.process)}</td><td>{esc(clip(describe_op(op, model), 120))}</td>"
            f"<td>{esc(describe_lines(op))}</td>"
        )
    return (
        f'<tr class="{cls}" data-op="{op_id}"><td>{esc(label)}</td>{cells}'
        f"<td>{esc(clip(state, tip_chars_max if 'bad' in cls else 200))}</td></tr>"
    )
