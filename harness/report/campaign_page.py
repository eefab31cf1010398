"""index.html of a campaign directory: one row per seed, linking each run's report.html where
it was drawn (a campaign draws the failures' pages, and the valid runs' with
``--report-pages all``), failing seeds first, with the command that replays each.
Self-contained like a run's page."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness import swarm
from harness.outcomes import SeedOutcome
from harness.report.style import CSS, esc

INDEX_NAME = "index.html"


def _link(out_dir: Path, run_dir: str) -> str:
    try:
        relative = os.path.relpath(Path(run_dir) / "report.html", out_dir)
    except ValueError:  # another drive (Windows): an absolute link still works
        relative = str(Path(run_dir).resolve() / "report.html")
    return relative.replace(os.sep, "/")


def render_campaign_index(out_dir: Path, outcomes: Sequence[SeedOutcome]) -> str:
    counts = {v: sum(1 for o in outcomes if o.verdict == v) for v in ("valid", "invalid",
                                                                       "unknown")}
    worst = "invalid" if counts["invalid"] else "unknown" if counts["unknown"] else "valid"
    line = (f"{len(outcomes)} runs: {counts['valid']} valid, {counts['invalid']} invalid, "
            f"{counts['unknown']} unknown")
    order = {"invalid": 0, "unknown": 1, "valid": 2}
    rows = []
    for o in sorted(outcomes, key=lambda o: (order.get(o.verdict, 3), o.seed)):
        cls = {"invalid": "fail", "unknown": "undecided"}.get(o.verdict, "pass")
        replay = ("" if o.verdict == "valid"
                  else f"<code>raft-harness replay {esc(o.out_dir)}</code>")
        seed = (f'<a href="{esc(_link(out_dir, o.out_dir))}">{o.seed}</a>'
                if (Path(o.out_dir) / "report.html").is_file() else str(o.seed))
        rows.append(
            f'<tr><td class=num>{seed}</td>'
            f'<td><span class="{cls}">{esc(o.verdict)}</span></td>'
            f"<td class=num>{o.operations}</td><td class=num>{o.faults}</td>"
            f"<td class=num>{o.wall_seconds:.1f}</td>"
            f"<td>{esc(', '.join(o.failed_checks) or '-')}</td><td>{replay}</td></tr>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>raft-harness campaign: {esc(line)}</title><style>{CSS}</style></head>\n"
        f"<body><main><h1>raft-harness campaign</h1>"
        f'<p class="note">Campaign directory <code>{esc(out_dir)}</code></p>'
        f'<div class="verdict v-{worst}"><div class="word">{esc(worst.upper())}</div>'
        f'<div class="line">{esc(line)}</div></div>'
        "<p>Each seed links to its run's report where one was drawn: every run that was not "
        "valid has one; a valid run's is drawn with <code>--report-pages all</code>, or later by "
        f"<code>raft-harness report {esc(out_dir)}</code> (every run's).</p>"
        "<table><thead><tr><th class=num>seed</th><th>verdict</th><th class=num>ops</th>"
        "<th class=num>faults</th><th class=num>wall s</th><th>failing check</th>"
        f"<th>replay</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{_swarm_section(outcomes)}</main></body></html>\n"
    )


def _swarm_section(outcomes: Sequence[SeedOutcome]) -> str:
    """Swarm runs grouped by what they drew: the settings every failing run shares first,
    then every drawn setting's failure rate (harness.swarm.groups)."""
    drawn = [(dict(o.features), o.verdict != "valid") for o in outcomes if o.features]
    found = swarm.groups(drawn)
    if not found:
        return ""
    shared = {(g.feature, g.value) for g in swarm.shared_by_failures(found)}
    failing = sum(1 for _, failed in drawn if failed)
    words = ", ".join(f"{f}={v}" for f, v in sorted(shared)) or "no drawn setting"
    lead = (f"The {failing} failing runs share: <b>{esc(words)}</b>." if failing
            else "No run failed.")
    rows = []
    for g in found:
        cls = ' class="fail"' if (g.feature, g.value) in shared else ""
        rows.append(f"<tr><td{cls}>{esc(g.feature)}</td><td>{esc(g.value)}</td>"
                    f"<td class=num>{g.runs}</td><td class=num>{g.failed}</td>"
                    f"<td class=num>{100 * g.failed / g.runs:.0f}%</td></tr>")
    return ("<h2>Swarm: runs by drawn setting</h2>"
            f"<p>Each seed drew its own configuration. {lead}</p>"
            "<table><thead><tr><th>setting</th><th>value</th><th class=num>runs</th>"
            "<th class=num>not valid</th><th class=num>rate</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def write_campaign_index(out_dir: Path, outcomes: Sequence[SeedOutcome]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / INDEX_NAME
    target.write_text(render_campaign_index(out_dir, outcomes), encoding="utf-8")
    return target
