"""The progress display shows only on a terminal (and not with --no-progress), and a campaign
ends with its table of outcomes, the replay command of each failing seed and the verdict line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness.cli import main
from harness.outcomes import SeedOutcome
from harness.progress import (
    NO_PROGRESS,
    CampaignProgress,
    display_wanted,
    print_outcomes,
    run_progress,
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a person's stderr does."""

    def isatty(self) -> bool:
        return True


def outcome(seed: int, verdict: str, failed: tuple[str, ...] = ()) -> SeedOutcome:
    return SeedOutcome(seed=seed, verdict=verdict, line=f"{verdict.upper()}: seed {seed}",
                       failed_checks=failed, operations=100 + seed, faults=7, wall_seconds=0.4,
                       out_dir=f"runs/c/seed-{seed}",
                       command=f"raft-harness run --seed {seed} --out runs/c/seed-{seed}")


def test_no_display_when_the_stream_is_not_a_terminal_or_progress_is_turned_off() -> None:
    assert not display_wanted(False, io.StringIO())
    assert not display_wanted(True, Terminal())
    assert display_wanted(False, Terminal())


def test_a_run_off_a_terminal_gets_a_progress_that_writes_nothing() -> None:
    stream = io.StringIO()
    with run_progress("seed 1", stream=stream) as progress:
        progress.phase("simulating")
        progress.advance(3.0, 10.0)
    assert progress is NO_PROGRESS
    assert stream.getvalue() == ""


def test_a_run_on_a_terminal_shows_its_phase() -> None:
    stream = Terminal()
    with run_progress("seed 1", stream=stream) as progress:
        assert progress is not NO_PROGRESS
        progress.phase("checking")
        progress.advance(5.0, 10.0)
    # The display is transient (erased at the end) but was drawn while the run worked.
    assert "seed 1" in stream.getvalue()


def test_campaign_progress_off_a_terminal_logs_one_line_per_seed() -> None:
    stream = io.StringIO()
    with CampaignProgress(2, stream=stream) as progress:
        progress.seed_done(outcome(0, "valid"))
        progress.seed_done(outcome(1, "invalid", ("linearizable",)))
    assert stream.getvalue().splitlines() == ["seed 0: valid (0.4 s)", "seed 1: invalid (0.4 s)"]
    assert progress.counts == {"valid": 1, "invalid": 1, "unknown": 0}


def test_campaign_progress_on_a_terminal_names_each_failing_seed_above_the_bar() -> None:
    stream = Terminal()
    with CampaignProgress(3, stream=stream) as progress:
        progress.seed_done(outcome(0, "valid"))
        progress.seed_done(outcome(4, "invalid", ("durability",)))
        progress.seed_done(outcome(5, "unknown", ("linearizable",)))
    text = stream.getvalue()
    assert "seed 4 invalid" in text and "durability" in text and "runs/c/seed-4" in text
    assert "seed 5 unknown" in text
    assert "seed 0 valid" not in text


def test_plain_outcomes_end_with_replay_commands_and_the_one_line_verdict() -> None:
    stream = io.StringIO()
    print_outcomes([outcome(2, "valid"), outcome(3, "invalid", ("safety",))], stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].split()[:3] == ["seed", "verdict", "ops"]
    assert any(line.split()[:2] == ["3", "invalid"] and "safety" in line for line in lines)
    assert "seed 3 invalid: raft-harness replay runs/c/seed-3" in lines
    assert lines[-1] == "2 runs: 1 valid, 1 invalid, 0 unknown"


def test_outcomes_on_a_terminal_are_a_table_with_the_replay_command_of_failures() -> None:
    stream = Terminal()
    print_outcomes([outcome(2, "valid"), outcome(3, "invalid", ("safety",))], stream)
    text = stream.getvalue()
    assert "campaign outcomes" in text
    assert "replay" in text and "raft-harness replay runs/c/seed-3" in text
    assert "raft-harness replay runs/c/seed-2" not in text, "valid seeds need no replay"
    assert "2 runs: 1 valid, 1 invalid, 0 unknown" in text.splitlines()[-1]


def test_campaign_cli_writes_an_index_linking_every_runs_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c"
    code = main(["campaign", "--seeds", "0..1", "--jobs", "1", "--nodes", "3", "--time-limit",
                 "2", "--nemesis", "kill", "--out", str(out), "--no-progress",
                 "--report-pages", "all"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "2 runs: 2 valid, 0 invalid, 0 unknown"
    index = (out / "index.html").read_text(encoding="utf-8")
    for seed in (0, 1):
        assert f'href="seed-{seed}/report.html"' in index
        assert (out / f"seed-{seed}" / "report.html").is_file()
