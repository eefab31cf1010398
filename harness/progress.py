"""What a person watching the terminal sees: a progress display while a run or a campaign
works, and a campaign's table of outcomes at the end.

The display goes to stderr and only when stderr is a terminal (``--no-progress`` turns it off
too), so logs, pipes and tests get plain lines. ``rich`` is imported only when a display is
actually shown, so importing this module costs nothing.

Backends report through ``RunProgress``:

- ``phase(name)``: what the run is doing now ("simulating", "checking", "writing report");
- ``advance(done_seconds, total_seconds)``: how far the run is on its own clock (a live run
  calls this as its workload proceeds; the bar then shows a fraction instead of a spinner).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import IO, Any, Protocol

from harness.outcomes import SeedOutcome


class RunProgress(Protocol):
    def phase(self, name: str) -> None: ...

    def advance(self, done_seconds: float, total_seconds: float) -> None: ...


class NoProgress:
    """Shows nothing: for runs without a terminal, tests and library use."""

    def phase(self, name: str) -> None:
        return None

    def advance(self, done_seconds: float, total_seconds: float) -> None:
        return None


NO_PROGRESS = NoProgress()


def display_wanted(disabled: bool, stream: IO[str] | None = None) -> bool:
    """A live display only for a person: stderr is a terminal and not ``--no-progress``."""
    stream = sys.stderr if stream is None else stream
    if disabled:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class _RichRun:
    """One task: a spinner with the phase's name, a bar once ``advance`` gives a total."""

    def __init__(self, description: str, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self._progress.add_task(description, total=None, phase="starting")

    def __enter__(self) -> _RichRun:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def phase(self, name: str) -> None:
        self._progress.update(self._task, phase=name)

    def advance(self, done_seconds: float, total_seconds: float) -> None:
        self._progress.update(self._task, completed=max(0.0, done_seconds),
                              total=max(total_seconds, 1e-9))


@contextlib.contextmanager
def run_progress(description: str, *, disabled: bool = False,
                 stream: IO[str] | None = None) -> Iterator[RunProgress]:
    """A ``RunProgress`` for one run: a live display on a terminal, else one that shows
    nothing (the run's one-line verdict is printed by the caller either way)."""
    stream = sys.stderr if stream is None else stream
    if not display_wanted(disabled, stream):
        yield NO_PROGRESS
        return
    with _RichRun(description, stream) as shown:
        yield shown


class CampaignProgress:
    """Counts finished seeds. On a terminal: a bar with valid/invalid/unknown counts, and a
    line above it for each run that was not valid. Otherwise one line per seed on the stream,
    as a log of the campaign."""

    def __init__(self, seeds: int, *, disabled: bool = False,
                 stream: IO[str] | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._seeds = seeds
        self.counts = {"valid": 0, "invalid": 0, "unknown": 0}
        self._progress: Any = None
        self._task: Any = None
        if display_wanted(disabled, self._stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]campaign"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=self._stream),
                transient=True,
            )
            self._task = self._progress.add_task("campaign", total=seeds,
                                                 counts=self._counts_text())

    def _counts_text(self) -> str:
        c = self.counts
        return (f"[green]{c['valid']} valid[/] [red]{c['invalid']} invalid[/] "
                f"[yellow]{c['unknown']} unknown[/]")

    def __enter__(self) -> CampaignProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def seed_done(self, outcome: SeedOutcome) -> None:
        self.counts[outcome.verdict] = self.counts.get(outcome.verdict, 0) + 1
        if self._progress is None:
            print(f"seed {outcome.seed}: {outcome.verdict} ({outcome.wall_seconds:.1f} s)",
                  file=self._stream, flush=True)
            return
        if outcome.verdict != "valid":
            from rich.markup import escape

            colour = "red" if outcome.verdict == "invalid" else "yellow"
            self._progress.console.print(
                f"[{colour}]seed {outcome.seed} {outcome.verdict}[/]: "
                f"{escape(', '.join(outcome.failed_checks) or '-')} -> "
                f"{escape(outcome.out_dir)}", highlight=False)
        self._progress.update(self._task, advance=1, counts=self._counts_text())


def _failing_lines(outcomes: Sequence[SeedOutcome]) -> tuple[list[str], str]:
    """The replay lines of the failing seeds and the one-line verdict of the campaign,
    in ``campaign.summary``'s words."""
    from harness.outcomes import summary

    lines = summary(list(outcomes)).splitlines()
    return lines[1:], lines[0]


def print_outcomes(outcomes: Sequence[SeedOutcome], stream: IO[str] | None = None) -> None:
    """The campaign's table of outcomes, then the replay command of each failing seed, then
    its one-line verdict last. A rich table on a terminal; plain text otherwise."""
    from harness.outcomes import table

    stream = sys.stdout if stream is None else stream
    failing, verdict = _failing_lines(outcomes)
    if not display_wanted(False, stream):
        print(table(list(outcomes)), file=stream)
        for line in failing:
            print(line, file=stream)
        print(verdict, file=stream)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    shown = Table(title="campaign outcomes", title_justify="left", header_style="bold")
    for name, justify in (("seed", "right"), ("verdict", "left"), ("ops", "right"),
                          ("faults", "right"), ("wall s", "right"), ("failing check", "left"),
                          ("replay", "left")):
        shown.add_column(name, justify=justify)  # type: ignore[arg-type]
    styles = {"valid": "green", "invalid": "bold red", "unknown": "yellow"}
    for o in outcomes:
        replay = "" if o.verdict == "valid" else f"raft-harness replay {o.out_dir}"
        shown.add_row(str(o.seed), f"[{styles.get(o.verdict, '')}]{escape(o.verdict)}[/]",
                      str(o.operations), str(o.faults), f"{o.wall_seconds:.1f}",
                      escape(", ".join(o.failed_checks) or "-"), escape(replay))
    console = Console(file=stream)
    console.print(shown)
    for line in failing:
        console.print(escape(line), soft_wrap=True, highlight=False)
    style = "bold green" if all(o.verdict == "valid" for o in outcomes) else "bold red"
    console.print(f"[{style}]{escape(verdict)}[/]", soft_wrap=True, highlight=False)
