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

from importlib import resources
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from .history import History, Operation
from .report_section import View, clip, esc, render_section, tip_chars_max
from .report_text import (
    describe_key,
    describe_lines,
    describe_op,
    explain,
    format_seconds,
    ordered_partitions,
    stuck_reasons,
    unplaced_of,
)
from .result import PartitionResult, Result

if TYPE_CHECKING:
    from .report_text import DescribesOps

# Limits that keep the page light enough for a browser with histories of any size (those of
# one partition's section are in lincheck.report_section).
ops_drawn_per_partition_max = 1500
ops_drawn_total_max = 6000
partitions_drawn_max = 200


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
        render_section(view, history, events_by_index, model, hidden=i > 0)
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


def _plan_views(
    history: History,
    result: Result,
    ops_by_id: dict[int, Operation],
    model: DescribesOps | None = None,
) -> tuple[list[View], str]:
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
    views: list[View] = []
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


def _make_view(number: int, part: PartitionResult, ops_by_id: dict[int, Operation]) -> View:
    ops = sorted((ops_by_id[i] for i in part.operation_ids if i in ops_by_id), key=_call_order)
    view = View(
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


def _window(view: View) -> None:
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


def _culprit_line(
    views: list[View], ops_by_id: dict[int, Operation], model: DescribesOps | None
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
        f"model <b>{esc(model_name)}</b>",
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
    reason = f'<div class="reason">{esc(shown)}</div>' if shown else ""
    if culprit:
        reason += f'<div class="reason culprit">{esc(clip(culprit, tip_chars_max))}</div>'
    return (
        f'<header class="v-{esc(result.verdict)}"><div class="badge">{esc(verdict_text)}</div>'
        f'<div><div class="src">{esc(history.source)}</div>'
        f'<div class="facts">{" · ".join(facts)}</div>{reason}</div></header>'
    )


def _explanation(history: History, result: Result, model: DescribesOps | None) -> str:
    text = explain(history, result, model=model)
    is_open = " open" if result.verdict != "ok" else ""
    return (
        f'<details class="explain"{is_open}><summary>Explanation</summary>'
        f"<pre>{esc(text)}</pre></details>"
    )


def _selector(views: list[View], left_out: str) -> str:
    out: list[str] = []
    if len(views) > 1:
        options = "".join(
            f'<option value="{view.anchor}">{esc(clip(view.title, 80))} — '
            f"{esc(view.part.verdict if view.part else '')}, {view.total_ops:,} ops</option>"
            for view in views
        )
        out.append(
            f'<div class="pick"><label>Partition: <select id="pick">{options}</select></label>'
            f'<span class="note">{len(views):,} drawn; failing ones first</span></div>'
        )
    if left_out:
        out.append(f'<p class="note">{esc(left_out)}</p>')
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


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>\n{_asset('report.css')}</style></head><body>"
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
