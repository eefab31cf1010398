"""The report's plots, drawn with matplotlib (Agg/SVG, no GUI) and returned as inline SVG.

Each plot shares one time axis (seconds since the run started) and one fixed left/right
margin, so stacked on the page their time axes line up. Each has a strip on top with one
lane per fault kind, where every fault window is a labelled bar, and the same windows are
shaded lightly across the plot itself, in the kind's colour (Jepsen's latency plots do the
same).

Size: dense point clouds are rasterised inside the SVG (a PNG inside it), so a run with a
hundred thousand operations still gives a page of a few hundred kilobytes, and a series above
``POINTS_PER_SERIES_MAX`` is thinned by an even stride, with a note saying so.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: never a GUI

from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from harness.report.rundata import OUTCOMES, RunData, Window, culprit_label

# Above this many points in one figure, the points are rasterised (a bitmap inside the SVG).
POINTS_VECTOR_MAX = 3000
# Above this many points in one series, every k-th point is drawn (the note says so).
POINTS_PER_SERIES_MAX = 25_000
# Throughput bins: about this many over the run.
THROUGHPUT_BINS_TARGET = 60
# ... and each bin holds at least this many completions on average.
THROUGHPUT_OPS_PER_BIN_MIN = 8
# Labels longer than this are cut (a bar label must fit its bar).
LABEL_CHARS_MAX = 28
# Latencies below this (seconds) are drawn at it: a log axis cannot show zero.
LATENCY_FLOOR_SECONDS = 1e-5

FIG_WIDTH_INCHES = 11.0
MARGIN_LEFT = 0.075
MARGIN_RIGHT = 0.83  # room on the right for legends outside the axes
LANE_INCHES = 0.2

OUTCOME_STYLE = {
    "ok": ("#2166ac", "ok"),
    "fail": ("#d6604d", "fail"),
    "info": ("#e6a800", "info (unknown)"),
    "pending": ("#7f7f7f", "no reply recorded"),
}
F_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
KIND_COLOURS = {
    "partition": "#8e44ad",
    "kill": "#a0522d",
    "disk": "#d6337f",
    "pause": "#6c757d",
    "loss": "#17a2b8",
    "duplicate": "#9aa01f",
    "delay": "#2e8b57",
    "reorder": "#fd7e14",
    "clock": "#34495e",
}
_OTHER_COLOURS = ("#b07aa1", "#76b7b2", "#9c755f", "#59a14f", "#edc948")

_RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "svg.hashsalt": "raft-harness",  # stable ids: the same run gives the same SVG
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 9.0,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "path.simplify": True,
}


def kind_colour(kind: str) -> str:
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return _OTHER_COLOURS[sum(kind.encode()) % len(_OTHER_COLOURS)]


def mpl_text(text: str, chars_max: int = LABEL_CHARS_MAX) -> str:
    """Text as matplotlib shows it literally: ``$`` would start mathtext (and a malformed
    formula would stop the report), so it is escaped; long text is cut."""
    if len(text) > chars_max:
        text = text[: chars_max - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _short_nodes(value: object) -> str:
    if isinstance(value, list) and all(isinstance(x, int) for x in value):
        return ",".join(f"n{x}" for x in value)
    return ""


def window_label(window: Window) -> str:
    """A few characters saying what the window did: the partition mode, the nodes hit, the
    probability or delay."""
    p = window.params
    kind = window.kind
    if kind == "partition":
        mode = str(p.get("mode", ""))
        isolated = p.get("isolated")
        return f"{mode} n{isolated}" if isinstance(isolated, int) else mode
    if kind in ("kill", "disk", "pause"):
        nodes = _short_nodes(p.get("nodes")) or str(p.get("targets", ""))
        return nodes + (" torn" if p.get("torn") is True else "")
    if kind in ("loss", "duplicate"):
        return f"p={p.get('probability')}"
    if kind == "delay":
        return f"{p.get('delay_ms')}±{p.get('jitter_ms')} ms"
    if kind == "reorder":
        return f"p={p.get('probability')} ≤{p.get('delay_ms_max')} ms"
    if kind == "clock":
        rates = p.get("rates")
        if isinstance(rates, list):
            return " ".join(f"×{r[1]:.2g}" for r in rates
                            if isinstance(r, list) and len(r) == 2
                            and isinstance(r[1], int | float))
    return ""


def _kinds(windows: Sequence[Window]) -> list[str]:
    seen: list[str] = []
    for w in windows:
        if w.kind not in seen:
            seen.append(w.kind)
    order = list(KIND_COLOURS)
    return sorted(seen, key=lambda k: (order.index(k) if k in order else len(order), k))


def _x_end(data: RunData) -> float:
    return max(data.end_time, 1e-3)


def _figure(data: RunData, body_inches: float, *, labelled_lanes: bool
            ) -> tuple[Figure, Axes | None, Axes]:
    """A figure with a fault-lane strip on top (when there are faults) and the main axes.
    Labelled lanes name every window; unlabelled ones are a thin colour key of the same
    windows, so the plots further down the page need no scrolling back up to read."""
    kinds = _kinds(data.windows)
    lane_inches = LANE_INCHES if labelled_lanes else LANE_INCHES * 0.6
    lanes = lane_inches * len(kinds) + (0.15 if kinds else 0.0)
    height = body_inches + lanes + 0.8
    fig = Figure(figsize=(FIG_WIDTH_INCHES, height))
    if kinds:
        grid = fig.add_gridspec(2, 1, height_ratios=[lanes, body_inches], hspace=0.1 / height)
        strip = fig.add_subplot(grid[0])
        main = fig.add_subplot(grid[1], sharex=strip)
        _draw_lanes(strip, data, kinds, labelled_lanes)
    else:
        strip = None
        main = fig.add_subplot(1, 1, 1)
    fig.subplots_adjust(left=MARGIN_LEFT, right=MARGIN_RIGHT, top=1 - 0.4 / height,
                        bottom=0.45 / height)
    main.set_xlim(0.0, _x_end(data) * 1.01)
    _shade(main, data, kinds)
    main.set_xlabel("time since the run started (s)")
    return fig, strip, main


def _rgba(colour: str, alpha: float) -> tuple[float, float, float, float]:
    red, green, blue, _ = to_rgba(colour)
    return (red, green, blue, alpha)


def _draw_lanes(ax: Axes, data: RunData, kinds: list[str], labelled: bool) -> None:
    end = _x_end(data)
    span = end * 1.01
    bar_inches = FIG_WIDTH_INCHES * (MARGIN_RIGHT - MARGIN_LEFT)
    boxes = []
    faces = []
    for lane, kind in enumerate(kinds):
        y = len(kinds) - 1 - lane
        colour = kind_colour(kind)
        for w in data.windows:
            if w.kind != kind:
                continue
            stop = end if w.stop is None else w.stop
            width = max(stop - w.start, span * 0.002)
            boxes.append([(w.start, y - 0.4), (w.start, y + 0.4), (w.start + width, y + 0.4),
                          (w.start + width, y - 0.4)])
            # A planned window (never observed) is drawn faint.
            faces.append(_rgba(colour, 0.45 if w.planned else 0.9))
            label = mpl_text(window_label(w)) if labelled else ""
            # A label goes inside its bar only where it fits (about 5 pt per character).
            if label and width / span * bar_inches * 72 > 5.0 * len(label) + 4:
                ax.text(w.start + width / 2, y, label, ha="center", va="center",
                        fontsize=7, color="white", clip_on=True)
    # One collection for every bar: matplotlib's cost is per artist, not per bar.
    ax.add_collection(PolyCollection(boxes, facecolors=faces, linewidths=0), autolim=False)
    ax.set_yticks(range(len(kinds)))
    ax.set_yticklabels([mpl_text(k) for k in reversed(kinds)],
                       fontsize=8 if labelled else 6.5)
    ax.set_ylim(-0.6, len(kinds) - 0.4)
    # The strip shares the plot's time axis; drawing its ticks again would only cost time.
    ax.xaxis.set_visible(False)
    ax.tick_params(axis="y", length=0, pad=2)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    if data.heal_time is not None:
        ax.axvline(data.heal_time, color="#222222", linestyle="--", linewidth=0.9)


def _shade(ax: Axes, data: RunData, kinds: list[str]) -> None:
    end = _x_end(data)
    for kind in kinds:
        boxes = []
        for w in data.windows:
            if w.kind == kind:
                stop = max(end if w.stop is None else w.stop, w.start + end * 0.002)
                boxes.append([(w.start, 0.0), (w.start, 1.0), (stop, 1.0), (stop, 0.0)])
        # One collection per kind, spanning the axes' full height whatever the y scale.
        ax.add_collection(PolyCollection(boxes, facecolors=_rgba(kind_colour(kind), 0.07),
                                         linewidths=0, zorder=0,
                                         transform=ax.get_xaxis_transform()),
                          autolim=False)
    if data.heal_time is not None:
        ax.axvline(data.heal_time, color="#222222", linestyle="--", linewidth=0.9, zorder=1)
        ax.text(data.heal_time, 0.02, "all faults healed ", transform=ax.get_xaxis_transform(),
                fontsize=7.5, va="bottom", ha="right", color="#222222", zorder=5)


def _title(fig: Figure, strip: Axes | None, main: Axes, title: str) -> None:
    # Titles are the report's own words, never data: no mathtext escaping needed.
    (strip if strip is not None else main).set_title(title)


def _stride(count: int) -> int:
    return max(1, math.ceil(count / POINTS_PER_SERIES_MAX))


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def latency_svg(data: RunData) -> tuple[str, list[str]]:
    """Every completed operation: latency against invocation time, colour by outcome, marker
    by function; returns the SVG and notes for the page."""
    notes: list[str] = []
    with matplotlib.rc_context(_RC):
        fig, strip, ax = _figure(data, 3.6, labelled_lanes=True)
        _title(fig, strip, ax, "Latency of every operation (log scale), by outcome")
        functions = sorted({op.f for op in data.ops})
        markers = {f: F_MARKERS[i % len(F_MARKERS)] for i, f in enumerate(functions)}
        total = sum(1 for op in data.ops if op.complete is not None)
        rasterise = total > POINTS_VECTOR_MAX
        floor_hits = 0
        for outcome in OUTCOMES:
            for f in functions:
                ops = [op for op in data.ops
                       if op.outcome == outcome and op.f == f and op.complete is not None]
                if not ops:
                    continue
                step = _stride(len(ops))
                if step > 1:
                    notes.append(f"{outcome} {f}: every {step}th of {len(ops)} operations drawn")
                xs = [op.invoke for op in ops[::step]]
                ys = []
                for op in ops[::step]:
                    latency = (op.complete or 0.0) - op.invoke
                    if latency < LATENCY_FLOOR_SECONDS:
                        floor_hits += 1
                        latency = LATENCY_FLOOR_SECONDS
                    ys.append(latency * 1000.0)
                colour = OUTCOME_STYLE[outcome][0]
                ax.scatter(xs, ys, s=11 if outcome == "ok" else 16, c=colour,
                           marker=markers[f], alpha=0.75, linewidths=0,
                           rasterized=rasterise, zorder=3)
        _mark_culprits(ax, data)
        pending = sum(1 for op in data.ops if op.complete is None)
        if pending:
            notes.append(f"{pending} operation(s) have no completion in the history (the run "
                         "stopped or the client never heard back); they are not drawn")
        if floor_hits:
            notes.append(f"{floor_hits} latencies below {LATENCY_FLOOR_SECONDS * 1000:g} ms are "
                         "drawn at that floor (a log axis has no zero)")
        if rasterise:
            notes.append(f"{total} points: drawn as a bitmap inside the SVG to keep the page "
                         "small")
        if total:
            ax.set_yscale("log")
            # Ticks at 1-2-5 steps, written as plain milliseconds ("20", "0.5"): readable
            # whether the latencies span one decade or five; no minor ticks (they cost a third
            # of the plot's drawing time and add nothing here).
            ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=12))
            ax.yaxis.set_major_formatter(FuncFormatter(_ms_label))
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("latency (ms)")
        outcome_handles = [
            Line2D([], [], linestyle="", marker="o", color=OUTCOME_STYLE[o][0],
                   label=OUTCOME_STYLE[o][1])
            for o in OUTCOMES
        ]
        f_handles = [
            Line2D([], [], linestyle="", marker=markers[f], color="#555555",
                   label=mpl_text(f))
            for f in functions
        ]
        first = ax.legend(handles=outcome_handles, title="outcome", loc="upper left",
                          bbox_to_anchor=(1.01, 1.0), alignment="left")
        ax.add_artist(first)
        if f_handles:
            ax.legend(handles=f_handles, title="operation", loc="upper left",
                      bbox_to_anchor=(1.01, 0.45), alignment="left")
        if not total:
            ax.text(0.5, 0.5, "no completed operations", transform=ax.transAxes,
                    ha="center", va="center", color="#555555")
        return _svg(fig), notes


def _ms_label(value: float, _position: int) -> str:
    return f"{value:g}"


def _mark_culprits(ax: Axes, data: RunData) -> None:
    """Circle the operations a history check blamed (lincheck could not place them, a counter
    read out of its bounds, a lost set element's add): where a reader should look first."""
    wanted = set(data.culprit_lines)
    label = culprit_label(data.results)
    culprits = [op for op in data.ops if op.line in wanted and op.complete is not None]
    for op in culprits:
        latency = max((op.complete or 0.0) - op.invoke, LATENCY_FLOOR_SECONDS) * 1000.0
        ax.scatter([op.invoke], [latency], s=180, facecolors="none", edgecolors="#000000",
                   linewidths=1.6, zorder=5)
        ax.annotate(mpl_text(f"{label}: {op.f} (line {op.line})", 60),
                    (op.invoke, latency), xytext=(12, 14), textcoords="offset points",
                    fontsize=8, fontweight="bold", zorder=6,
                    arrowprops={"arrowstyle": "-", "color": "#000000", "linewidth": 0.8})


def _nice_bin(span: float, completed: int) -> float:
    """A round bin width: at most about ``THROUGHPUT_BINS_TARGET`` bins, and wide enough that
    a bin holds a few operations on average (narrower bins only draw noise)."""
    per_bin = THROUGHPUT_OPS_PER_BIN_MIN * span / completed if completed else span
    raw = min(max(span / THROUGHPUT_BINS_TARGET, per_bin), max(span / 4, 1e-3))
    if raw <= 0:
        return 1.0
    exponent = math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        width = factor * 10.0**exponent
        if width >= raw:
            return width
    return 10.0 ** (exponent + 1)


def throughput_svg(data: RunData) -> tuple[str, list[str]]:
    """Completed operations per second, one line per outcome, over fixed-width bins."""
    notes: list[str] = []
    with matplotlib.rc_context(_RC):
        fig, strip, ax = _figure(data, 2.2, labelled_lanes=False)
        end = _x_end(data)
        width = _nice_bin(end, sum(1 for op in data.ops if op.complete is not None))
        bins = max(1, math.ceil(end / width))
        _title(fig, strip, ax, f"Throughput: completed operations per second "
                               f"({width:g} s bins), by outcome")
        edges = [i * width for i in range(bins + 1)]
        for outcome in OUTCOMES:
            counts = [0] * bins
            for op in data.ops:
                if op.outcome == outcome and op.complete is not None:
                    counts[min(bins - 1, max(0, int(op.complete // width)))] += 1
            if not any(counts):
                continue
            rates = [c / width for c in counts]
            colour, label = OUTCOME_STYLE[outcome]
            ax.stairs(rates, edges, color=colour, linewidth=1.6, label=label, zorder=3)
        ax.set_ylabel("operations / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="outcome",
                  alignment="left")
        if not any(op.complete is not None for op in data.ops):
            ax.text(0.5, 0.5, "no completed operations", transform=ax.transAxes,
                    ha="center", va="center", color="#555555")
        return _svg(fig), notes


NODE_STATE_STYLE = {
    "leader": ("#1b9e77", "leader"),
    "down": ("#d62728", "crashed (down)"),
    "paused": ("#9e9e9e", "paused"),
}


def nodes_svg(data: RunData) -> tuple[str, list[str]]:
    """One row per node: when it led (term labelled), was down or paused; ticks where it
    stood for election, crosses where it crashed."""
    notes: list[str] = []
    nodes = data.node_ids
    with matplotlib.rc_context(_RC):
        fig, strip, ax = _figure(data, 0.3 * max(len(nodes), 1) + 0.4,
                                 labelled_lanes=False)
        _title(fig, strip, ax, "Nodes: leaders, crashes, pauses")
        end = _x_end(data)
        row = {node: len(nodes) - 1 - i for i, node in enumerate(nodes)}
        # Baselines and state bars: one collection each, however many nodes and spans.
        ax.hlines([row[n] for n in nodes], 0, end, colors="#cccccc", linewidth=0.8, zorder=1)
        boxes = []
        faces = []
        for span in data.node_spans:
            if span.node not in row:
                continue
            width = max(span.stop - span.start, end * 0.002)
            half = 0.28 if span.state == "leader" else 0.18
            y = row[span.node]
            boxes.append([(span.start, y - half), (span.start, y + half),
                          (span.start + width, y + half), (span.start + width, y - half)])
            faces.append(_rgba(NODE_STATE_STYLE[span.state][0],
                               0.9 if span.state == "leader" else 0.7))
            if span.label and width / end > 0.03:
                ax.text(span.start + width / 2, y, mpl_text(span.label),
                        ha="center", va="center", fontsize=7, color="white", zorder=4)
        if boxes:
            ax.add_collection(PolyCollection(boxes, facecolors=faces, linewidths=0, zorder=2),
                              autolim=False)
        for what, marker, colour, size in (("candidate", "|", "#444444", 40),
                                           ("crash", "x", "#d62728", 30)):
            marks = [m for m in data.node_marks if m.what == what and m.node in row]
            if marks:
                ax.scatter([m.time for m in marks], [row[m.node] for m in marks],
                           marker=marker, c=colour, s=size, linewidths=1.0, zorder=3)
        ax.set_yticks([row[n] for n in nodes])
        ax.set_yticklabels([f"n{n}" for n in nodes])
        ax.set_ylim(-0.7, max(len(nodes), 1) - 0.3)
        ax.grid(axis="y", visible=False)
        handles: list[Patch | Line2D] = [
            Patch(facecolor=colour, label=label) for colour, label in NODE_STATE_STYLE.values()
        ]
        handles.append(Line2D([], [], linestyle="", marker="|", color="#444444",
                              label="stood for election"))
        handles.append(Line2D([], [], linestyle="", marker="x", color="#d62728",
                              label="crash"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  alignment="left")
        return _svg(fig), notes


def fault_legend_kinds(data: RunData) -> list[str]:
    return _kinds(data.windows)


_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')


def inline_svg(svg: str, prefix: str, title: str) -> str:
    """matplotlib's SVG document made fit to sit in a page: no XML prolog, ids prefixed so
    several plots on one page never share one, scaled to the page width, titled for screen
    readers and marked ``class="plot"`` (the page's size check finds it by that)."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("matplotlib produced no <svg> element")
    body = svg[start:]
    ids = set(_ID.findall(body))

    def prefixed(match: re.Match[str]) -> str:
        name = match.group(2)
        return match.group(1) + (f"{prefix}-{name}" if name in ids else name)

    body = _REF.sub(prefixed, body)
    # Drop the fixed size: the viewBox keeps the aspect ratio and CSS sets the width.
    body = re.sub(r'^<svg([^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r"<svg\1", body, count=1)
    label = html.escape(title, quote=True)
    return body.replace("<svg", f'<svg class="plot" role="img" data-plot="{prefix}" '
                                f'aria-label="{label}"', 1)
