"""What runs and campaigns return: plain records and their text, shared by the runner, the
live backend, the progress display and the reports without importing one another (the import
graph of the harness has no circle; tests/test_layering.py checks it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from harness.checks import Verdict
from harness.options import command_line


@attrs.frozen
class RunReport:
    verdict: Verdict
    line: str  # the one-line verdict printed at the end
    out_dir: Path | None
    results: dict[str, Any]
    history_jsonl: str


@attrs.frozen
class SeedOutcome:
    seed: int
    verdict: str
    line: str
    failed_checks: tuple[str, ...]
    operations: int
    faults: int
    wall_seconds: float
    out_dir: str
    command: str
    # A swarm run's drawn settings (harness.swarm.features), by which a campaign groups its
    # outcomes; empty for a run of fixed options.
    features: tuple[tuple[str, str], ...] = ()
    drawn: str = ""  # the same in one line for people (harness.swarm.describe)


def table(outcomes: list[SeedOutcome]) -> str:
    rows = [("seed", "verdict", "ops", "faults", "wall s", "failed checks")]
    for o in outcomes:
        rows.append((str(o.seed), o.verdict, str(o.operations), str(o.faults),
                     f"{o.wall_seconds:.1f}", ",".join(o.failed_checks) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def summary(outcomes: list[SeedOutcome]) -> str:
    counts = {v: sum(1 for o in outcomes if o.verdict == v)
              for v in ("valid", "invalid", "unknown")}
    lines = [f"{len(outcomes)} runs: {counts['valid']} valid, {counts['invalid']} invalid, "
             f"{counts['unknown']} unknown"]
    for o in outcomes:
        if o.verdict != "valid":
            lines.append(f"seed {o.seed} {o.verdict}: raft-harness replay {o.out_dir}")
            if o.drawn:
                lines.append(f"  {o.drawn}")
            lines.append(f"  or: {command_line(_run_argv(o.command))}")
    drawn = [(dict(o.features), o.verdict != "valid") for o in outcomes if o.features]
    if drawn:
        from harness.swarm import group_text

        lines.extend(group_text(drawn).splitlines())
    return "\n".join(lines)


def _run_argv(command: str) -> list[str]:
    import shlex

    return shlex.split(command)[1:]
