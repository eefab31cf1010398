"""The report page: one self-contained HTML document (inline CSS, inline SVG plots, a few
lines of inline script; nothing fetched from anywhere). Every piece of text that came from a
file of the run is escaped here, at the one place it enters the page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.report import plots
from harness.report.rundata import RunData, Window
from harness.report.style import CSS, esc

# Violation lines shown per check; the rest are behind the link to results.json.
VIOLATIONS_SHOWN_MAX = 40
# Fault table rows; a longer schedule is cut with a note (nemesis.json has them all).
SCHEDULE_ROWS_MAX = 500
CHECK_ORDER = ("linearizable", "counter", "set", "safety", "durability", "refusals", "liveness")
CHECK_TITLES = {
    "linearizable": "Linearizability (lincheck)",
    "counter": "Counter: every read within its bounds (Jepsen's counter checker)",
    "set": "Set: no acknowledged element lost, none unexpected (final read)",
    "safety": "Raft safety",
    "durability": "Durability",
    "liveness": "Liveness after heal",
    "refusals": "Writes recorded fail were not applied",
    "invariant": "Invariant inside the cluster",
}
FILES = (
    ("history.jsonl", "client history and fault events (lincheck JSON Lines)"),
    ("nemesis.json", "the fault schedule (raft-harness replay runs it again)"),
    ("results.json", "verdict, checks, options, statistics"),
    ("nodes.log", "what each node did"),
    ("lincheck.html", "lincheck's report of the failure: per-process timelines"),
)


def _short_json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)


SCRIPT = """
(function () {
  // Copy buttons: the clipboard API needs a secure context (file:// may not be one); else the
  // command is selected so Ctrl+C copies it.
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-target"));
      if (!target) { return; }
      var select = function () { window.getSelection().selectAllChildren(target); };
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(target.textContent).then(done, select);
      } else { select(); }
    });
  });
  // Each plot's drawn size, written into the page: a headless browser's DOM dump shows
  // whether every plot was laid out with a non-zero size.
  var plots = document.querySelectorAll("svg.plot");
  for (var i = 0; i < plots.length; i++) {
    var box = plots[i].getBoundingClientRect();
    plots[i].setAttribute("data-rendered-size",
                          Math.round(box.width) + "x" + Math.round(box.height));
  }
  document.body.setAttribute("data-plots-measured", String(plots.length));
})();
"""


def _verdict_block(data: RunData, stopped: str | None) -> str:
    verdict = data.verdict
    word = verdict.upper() if verdict else "NO VERDICT"
    line = _derived_line(data)
    parts = [f'<div class="verdict v-{esc(verdict or "none")}"><div class="word">{esc(word)}'
             f'</div><div class="line">{esc(line)}</div></div>']
    if stopped:
        parts.append(f'<div class="notice bad"><b>The run stopped on an exception</b> before it '
                     f'finished; this page shows what it left behind.<pre>{esc(stopped)}</pre>'
                     f"</div>")
    if data.results is None:
        parts.append('<div class="notice bad"><b>No results.json</b>: the run did not finish '
                     "its checks, so there is no verdict. What the run left is shown below.</div>")
    for problem in data.problems:
        parts.append(f'<div class="notice">{esc(problem)}</div>')
    return "\n".join(parts)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _derived_line(data: RunData) -> str:
    """The run in one line, from results.json where it says, else from the history."""
    results = data.results or {}
    checks = results.get("checks") if isinstance(results.get("checks"), dict) else {}
    bits = []
    for name, check in (checks or {}).items():
        if isinstance(check, dict) and check.get("valid") is not True:
            bits.append(f"{name}: {check.get('summary', 'undecided')}")
    options = _mapping(results.get("options"))
    stats = _mapping(results.get("stats"))
    ops = stats.get("operations")
    if not isinstance(ops, dict):
        ops = {o: sum(1 for op in data.ops if op.outcome == o) for o in ("ok", "fail", "info")}
        ops["invoke"] = len(data.ops)
    faults = stats.get("faults_started")
    if isinstance(faults, dict):
        fault_text = ", ".join(f"{k}×{v}" for k, v in faults.items()) or "none"
    else:
        fault_text = f"{len(data.windows)} windows"
    pieces = ["; ".join(bits) if bits else ("all checks passed" if data.verdict == "valid"
                                            else "")]
    if results.get("seed") is not None:
        pieces.append(f"seed {results['seed']}")
    for name, unit in (("workload", ""), ("nodes", " nodes"), ("clients", " clients")):
        if options.get(name) is not None:
            pieces.append(f"{options[name]}{unit}")
    pieces.append(f"{ops.get('invoke', 0)} ops ({ops.get('ok', 0)} ok, {ops.get('fail', 0)} fail, "
                  f"{ops.get('info', 0)} info)")
    pieces.append(f"faults {fault_text}")
    simulated, wall = stats.get("simulated_seconds"), stats.get("wall_seconds")
    if isinstance(simulated, int | float) and isinstance(wall, int | float):
        pieces.append(f"{simulated:.1f} s simulated in {wall:.1f} s")
    elif isinstance(wall, int | float):
        pieces.append(f"{wall:.1f} s")
    return " · ".join(p for p in pieces if p)


def _check_rows(data: RunData) -> str:
    results = data.results or {}
    checks = results.get("checks")
    if not isinstance(checks, dict) or not checks:
        return '<p class="note">No checks were recorded.</p>'
    names = [n for n in CHECK_ORDER if n in checks] + sorted(n for n in checks
                                                              if n not in CHECK_ORDER)
    rows = []
    for name in names:
        check = checks[name] if isinstance(checks[name], dict) else {}
        valid = check.get("valid")
        if valid is True:
            cell, cls = '<span class="pass">passed</span>', ""
        elif valid is False:
            cell, cls = '<span class="fail">FAILED</span>', ' class="failed"'
        else:
            cell, cls = '<span class="undecided">undecided</span>', ""
        # lincheck's explanation has its own section below; the table links to it.
        detail = (' <a href="#lincheck">why</a>' if name == "linearizable" and valid is False
                  else _violations(check))
        title = CHECK_TITLES.get(name)
        named = (f'<b>{esc(title)}</b><br><span class="note">{esc(name)}</span>' if title
                 else f"<b>{esc(name)}</b>")
        rows.append(f"<tr{cls}><td>{named}</td><td>{cell}</td>"
                    f"<td>{esc(check.get('summary', ''))}{detail}</td></tr>")
    return ("<table><thead><tr><th>check</th><th>result</th><th>what it found</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _violations(check: Mapping[str, Any]) -> str:
    lines = check.get("violations")
    if not isinstance(lines, list) or not lines:
        return ""
    count = check.get("violation_count")
    shown = [str(x) for x in lines[:VIOLATIONS_SHOWN_MAX]]
    more = (count - len(shown)) if isinstance(count, int) else len(lines) - len(shown)
    tail = f"\n… {more} more (see results.json)" if more > 0 else ""
    opened = " open" if check.get("valid") is False else ""
    total = count if isinstance(count, int) else len(lines)
    text = esc("\n".join(shown) + tail)
    return (f"<details{opened}><summary>details ({total} line(s))</summary><pre>{text}</pre>"
            "</details>")


def _lincheck_block(data: RunData) -> str:
    checks = (data.results or {}).get("checks")
    lin = checks.get("linearizable") if isinstance(checks, dict) else None
    if not isinstance(lin, dict) or lin.get("valid") is not False:
        return ""
    exists = (data.run_dir / "lincheck.html").is_file()
    link = ('<p><a href="lincheck.html"><b>Open lincheck\'s report (lincheck.html)</b></a>: '
            "the per-process timelines, the longest linearizable prefix and the operation that "
            "could not be placed, with the model's state on hover.</p>" if exists else
            '<p class="notice">lincheck.html is missing from the run directory.</p>')
    lines = lin.get("violations")
    text = "\n".join(str(x) for x in lines) if isinstance(lines, list) else ""
    return (f'<h2 id="lincheck">Why the history is not linearizable</h2>{link}'
            f"<pre>{esc(text or lin.get('summary', ''))}</pre>")


def _command_block(data: RunData) -> str:
    results = data.results or {}
    parts = []
    for ident, label, value in (("cmd-run", "Reproduce this run (same seed, same options)",
                                 results.get("command")),
                                ("cmd-replay", "Replay with the saved fault schedule",
                                 results.get("replay"))):
        if isinstance(value, str) and value:
            parts.append(f'<p class="note">{esc(label)}</p><div class="cmd"><pre id="{ident}">'
                         f'{esc(value)}</pre><button class="copy" type="button" '
                         f'data-target="{ident}">Copy</button></div>')
    if not parts:
        return '<p class="note">results.json records no command.</p>'
    return "\n".join(parts)


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _parameters(data: RunData) -> str:
    results = data.results or {}
    options = results.get("options")
    rows: list[tuple[str, str]] = []
    if isinstance(options, dict):
        for name, value in options.items():
            shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((name.replace("_", "-"), shown or "none"))
    for name in ("backend", "object_under_test"):
        if isinstance(results.get(name), str) and name not in (options or {}):
            rows.append((name.replace("_", " "), results[name]))
    left = _kv_table(rows) if rows else '<p class="note">No options recorded.</p>'
    stats = results.get("stats")
    stat_rows: list[tuple[str, str]] = []
    if isinstance(stats, dict):
        for name in sorted(stats):
            value = stats[name]
            shown = (", ".join(f"{k} {v}" for k, v in value.items())
                     if isinstance(value, dict) else str(value))
            stat_rows.append((name.replace("_", " "), shown))
    right = _kv_table(stat_rows) if stat_rows else '<p class="note">No statistics.</p>'
    extra = ""
    sim = results.get("sim_params")
    if isinstance(sim, dict) and sim:
        extra = (f"<details><summary>simulator parameters</summary>"
                 f"{_kv_table([(k, str(v)) for k, v in sorted(sim.items())])}</details>")
    return (f'<div class="grid2"><div><h3>Options</h3>{left}{extra}</div>'
            f"<div><h3>Statistics</h3>{right}</div></div>")


def _plot(name: str, title: str, caption: str,
          draw: Callable[[RunData], tuple[str, list[str]]], data: RunData) -> str:
    try:
        svg, notes = draw(data)
        figure = plots.inline_svg(svg, name, title)
    except Exception as exc:  # one broken plot must not cost the rest of the report
        return (f'<div class="notice bad">The {esc(title.lower())} plot could not be drawn: '
                f"{esc(type(exc).__name__)}: {esc(exc)}</div>")
    note = "".join(f"<br>{esc(n)}" for n in notes)
    return f"<figure>{figure}<figcaption>{esc(caption)}{note}</figcaption></figure>"


def _plots(data: RunData) -> str:
    if not data.history_present:
        return ('<p class="notice">No history.jsonl: the run stopped before it wrote its '
                "history, so there is nothing to plot.</p>")
    faults = ("Shaded bands are fault windows; the strip on top names each one."
              if data.windows else "There were no faults in this run.")
    parts = [
        _plot("latency", "Latency", "Each point is one operation: when it was invoked and how "
              "long until its reply (ok, fail) or until the client gave up (info). " + faults,
              plots.latency_svg, data),
        _plot("throughput", "Throughput", "Operations completed per second, by outcome"
              + (", with the same fault windows." if data.windows else "."),
              plots.throughput_svg, data),
    ]
    if data.node_ids:
        parts.append(_plot("nodes", "Nodes", "Per node: leadership (labelled with its term), "
                           "crashes until restart, pauses; ticks where a node stood for "
                           "election.", plots.nodes_svg, data))
    else:
        parts.append('<p class="note">nodes.log has no per-node events in the form '
                     "<code>[seconds] nN event</code>: no per-node plot.</p>")
    return "\n".join(parts)


def _schedule(data: RunData) -> str:
    windows = data.windows
    if not windows:
        return '<p class="note">No faults were scheduled.</p>'
    source = ("the fault events in history.jsonl (what the nemesis actually did)"
              if not windows[0].planned else "nemesis.json (the plan; the history has no "
              "fault events)")
    rows = []
    for w in windows[:SCHEDULE_ROWS_MAX]:
        rows.append(_schedule_row(w, data.end_time))
    cut = (f'<p class="note">… {len(windows) - SCHEDULE_ROWS_MAX} more in nemesis.json</p>'
           if len(windows) > SCHEDULE_ROWS_MAX else "")
    return (f'<p class="note">{len(windows)} fault windows, from {esc(source)}.</p>'
            "<table><thead><tr><th class=num>#</th><th>kind</th><th class=num>start s</th>"
            "<th class=num>stop s</th><th class=num>length s</th><th>what</th><th>parameters"
            f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{cut}")


def _schedule_row(w: Window, end: float) -> str:
    stop = "never healed" if w.stop is None else f"{w.stop:.3f}"
    length = (end if w.stop is None else w.stop) - w.start
    params = {k: v for k, v in w.params.items() if k != "id"}
    swatch = f'<span class="swatch" style="background:{esc(plots.kind_colour(w.kind))}"></span>'
    return (f"<tr><td class=num>{esc('' if w.id is None else w.id)}</td>"
            f"<td class=kind>{swatch}{esc(w.kind)}</td><td class=num>{w.start:.3f}</td>"
            f"<td class=num>{esc(stop)}</td><td class=num>{length:.3f}</td>"
            f"<td>{esc(plots.window_label(w))}</td><td><code>{esc(_short_json(params))}</code>"
            "</td></tr>")


def _files(data: RunData) -> str:
    items = []
    for name, what in FILES:
        if (data.run_dir / name).is_file():
            items.append(f'<li><a href="{esc(name)}">{esc(name)}</a>: {esc(what)}</li>')
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="note">No files.</p>'


def render(data: RunData, stopped: str | None = None) -> str:
    results = data.results or {}
    seed = results.get("seed")
    title = f"raft-harness run{f' seed {seed}' if seed is not None else ''}: " + (
        (data.verdict or "no verdict").upper())
    sections = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">Run directory <code>{esc(data.run_dir)}</code></p>',
        _verdict_block(data, stopped),
        f"<h2>Checks</h2>{_check_rows(data)}",
        _lincheck_block(data),
        f"<h2>Reproduce</h2>{_command_block(data)}",
        f"<h2>Plots</h2>{_plots(data)}",
        f"<h2>Fault schedule</h2>{_schedule(data)}",
        f"<h2>Run parameters</h2>{_parameters(data)}",
        f"<h2>Files</h2>{_files(data)}",
        '<footer>Written by harness.report. Self-contained: no external resources.</footer>',
    ]
    body = "\n".join(s for s in sections if s)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n")
