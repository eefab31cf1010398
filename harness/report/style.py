"""What every page of the harness shares without drawing a plot: the stylesheet and the one
function that escapes text for HTML. Its own module so that a campaign's index, which draws no
plot, does not import matplotlib (``harness.report.plots``: about a second to import)."""

from __future__ import annotations

import html


def esc(value: object) -> str:
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


CSS = """
:root { --valid:#1a7f37; --invalid:#c62828; --unknown:#b26a00; --ink:#1f2328; --muted:#59636e;
        --line:#d0d7de; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
       sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 22px 40px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
.verdict { border-radius: 8px; padding: 12px 16px; color: #fff; margin: 10px 0 6px; }
.verdict .word { font-size: 22px; font-weight: 700; letter-spacing: .04em; }
.verdict .line { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
                 margin-top: 4px; opacity: .95; overflow-wrap: anywhere; }
.v-valid { background: var(--valid); } .v-invalid { background: var(--invalid); }
.v-unknown, .v-none { background: var(--unknown); }
.notice { border-left: 4px solid var(--unknown); background: #fff8e5; padding: 8px 12px;
          margin: 8px 0; }
.notice.bad { border-color: var(--invalid); background: #fdecea; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px;
         border-bottom: 1px solid var(--line); }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.kind { white-space: nowrap; }
.pass { color: var(--valid); font-weight: 700; } .fail { color: var(--invalid); font-weight: 700; }
.undecided { color: var(--unknown); font-weight: 700; }
tr.failed td { background: #fdf3f2; }
pre, code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
      overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0; }
.cmd { display: flex; gap: 8px; align-items: flex-start; }
.cmd pre { flex: 1; margin: 0; }
button.copy { font: inherit; padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px;
              background: #fff; cursor: pointer; }
button.copy:hover { background: var(--bg); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
figure { margin: 10px 0 18px; }
svg.plot { display: block; width: 100%; height: auto; }
figcaption, .note { color: var(--muted); font-size: 12.5px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
          vertical-align: -1px; margin-right: 5px; }
details summary { cursor: pointer; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
"""
