"""Campaign settings that expose zoo bugs: core settings per run, the crash-after-vote trigger,
and vote-not-persisted caught while the correct code stays valid on the same campaign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from harness import zoo
from harness.cli import main
from harness.nemesis import (
    RESTART_MS_MAX_GENERATED,
    Schedule,
    ScheduleError,
    generate,
    schedule_from_json,
)
from harness.options import OptionsError, RunOptions
from harness.runner import run
from harness.sim.nemesis_runtime import NemesisRuntime
from raftlib.core.types import EntryKind

VOTE = "vote-not-persisted"


def _options(seed: int, **overrides: Any) -> RunOptions:
    values = {**zoo.get(VOTE).detection.options(), "seed": seed, "lincheck_timeout": 30.0}
    values.update(overrides)
    return RunOptions(**values)


def test_core_settings_are_validated_in_one_line_and_are_raftlibs_only() -> None:
    with pytest.raises(OptionsError, match=r"^--append-entries-max: must be an integer"):
        RunOptions(core={"append_entries_max": 0})
    with pytest.raises(OptionsError, match=r"^--pre-vote: must be true or false"):
        RunOptions(core={"pre_vote": "no"})
    with pytest.raises(OptionsError, match="--target etcd runs another system"):
        RunOptions(backend="live", target="etcd", core={"check_quorum": False})
    # Live raftlib nodes get them as `raftlib serve` flags.
    live = RunOptions(backend="live", core={"lease_reads": True, "lease_drift_ticks": 4})
    flags = live.node_flags()
    assert "--lease-reads" in flags and flags[flags.index("--lease-drift-ticks") + 1] == "4"


def test_sync_on_loop_reaches_live_raftlib_nodes_and_nothing_else() -> None:
    """``--sync-on-loop`` is a ``raftlib serve`` flag of the live nodes (their syncs on the
    loop); the simulator has no sync thread and another target no such flag: both refused in
    one line. It is in the run's command and options, so a replay runs it again."""
    live = RunOptions(backend="live", sync_on_loop=True)
    assert "--sync-on-loop" in live.node_flags()
    assert "--sync-on-loop" not in RunOptions(backend="live").node_flags()
    assert "--sync-on-loop" in live.to_argv()
    assert RunOptions.from_json(live.to_json(), "t") == live
    for refused in ({"backend": "sim"}, {"backend": "live", "target": "etcd"}):
        with pytest.raises(OptionsError, match=r"^--sync-on-loop: live raftlib nodes only"):
            RunOptions(sync_on_loop=True, **refused)  # type: ignore[arg-type]


def test_core_settings_round_trip_through_argv_and_json() -> None:
    options = RunOptions(core={"pre_vote": False, "check_quorum": False,
                               "append_entries_max": 1}, seed=3)
    argv = options.to_argv()
    assert "--no-pre-vote" in argv and "--no-check-quorum" in argv
    assert argv[argv.index("--append-entries-max") + 1] == "1"
    assert RunOptions.from_json(options.to_json(), "t") == options
    assert "--no-pre-vote" not in RunOptions().to_argv()  # defaults leave old commands alone


def test_a_run_records_its_core_settings_and_replay_uses_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["run", "--no-pre-vote", "--append-entries-max", "2", "--time-limit", "1",
            "--seed", "0", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["options"]["pre_vote"] is False
    assert results["options"]["append_entries_max"] == 2
    assert main(["replay", str(out), "--no-progress"]) == 0


def test_crash_after_vote_windows_are_generated_and_bad_ones_refused() -> None:
    schedule = generate(4, ("crash-after-vote",), 5, 10.0, 0.5)
    assert schedule.faults and all(f.kind == "crash-after-vote" for f in schedule.faults)
    data = schedule.to_json()
    assert schedule_from_json(data, "s") == schedule
    data["faults"][0]["params"]["restart_ms"] = -1
    with pytest.raises(ScheduleError, match=r"faults\[0\]: params.restart_ms must be in"):
        schedule_from_json(data, "s")


def test_crash_after_vote_crashes_granting_voters_and_the_correct_code_stays_valid() -> None:
    report = run(_options(0), None)
    assert report.verdict == "valid", report.line
    stats = report.results["stats"]
    assert stats["vote_crashes"] > 0, stats
    assert sum(stats["crashes"].values()) >= stats["vote_crashes"]


def test_vote_not_persisted_is_caught_within_a_few_seeds_of_its_campaign() -> None:
    tried = []
    for seed in range(5):
        report = run(_options(seed, bug=VOTE), None)
        tried.append(report.line)
        if report.verdict == "invalid":
            assert "safety" in report.results["failed_checks"], report.line
            correct = run(_options(seed), None)
            assert correct.verdict == "valid", f"seed {seed} fails without the bug: {correct.line}"
            return
    raise AssertionError(f"{VOTE} not caught in seeds 0..4:\n" + "\n".join(tried))


@pytest.mark.parametrize("seeds", [range(0, 20)])
def test_the_correct_code_is_valid_on_the_vote_campaign(seeds: range) -> None:
    bad = [run(_options(seed), None) for seed in seeds]
    assert not [r.line for r in bad if r.verdict != "valid"]


@pytest.mark.slow
def test_the_correct_code_is_valid_on_100_seeds_of_the_vote_campaign() -> None:
    bad = [r.line for r in (run(_options(seed), None) for seed in range(100))
           if r.verdict != "valid"]
    assert not bad, "\n".join(bad)


FIGURE8 = "figure8"
# The first seed of figure8's campaign that catches it (bench/zoo_detection.py, DETECTION.md).
FIGURE8_SEED = 213


def _figure8_options(seed: int, **overrides: Any) -> RunOptions:
    values = {**zoo.get(FIGURE8).detection.options(), "seed": seed, "lincheck_timeout": 30.0}
    values.update(overrides)
    return RunOptions(**values)


def test_crash_new_leader_crashes_a_fresh_leader_before_its_first_append_leaves() -> None:
    report = run(_figure8_options(0), None)
    assert report.verdict == "valid", report.line
    stats = report.results["stats"]
    assert stats["new_leader_crashes"] > 0, stats
    assert stats["commit_crashes"] > 0, stats


def test_figure8_is_caught_on_its_campaign_seed_and_the_correct_code_is_valid_there() -> None:
    """A leader that commits an earlier term's entry by counting replicas: the rival leader's
    log then needs that committed entry overwritten, which the correct cluster never asks."""
    buggy = run(_figure8_options(FIGURE8_SEED, bug=FIGURE8), None)
    assert buggy.verdict == "invalid", buggy.line
    # Caught as what it is: a follower refusing to overwrite a committed entry stops loudly.
    assert "safety" in buggy.results["failed_checks"], buggy.line
    correct = run(_figure8_options(FIGURE8_SEED), None)
    assert correct.verdict == "valid", correct.line


def test_the_correct_code_is_valid_on_the_figure8_campaign() -> None:
    bad = [r.line for r in (run(_figure8_options(seed), None) for seed in range(20))
           if r.verdict != "valid"]
    assert not bad, "\n".join(bad)


def test_crash_after_commit_windows_mostly_crash_before_announcing_and_stay_down() -> None:
    """Figure 8 needs a leader that applied an entry, told nobody and stayed down while the
    others elected: most generated windows are that; the others still occur."""
    faults = generate(7, ("crash-after-commit",), 3, 200.0, 0.5).faults
    silent = [f for f in faults if f.params["before_send"]]
    long_down = [f for f in faults if f.params["restart_ms"] > RESTART_MS_MAX_GENERATED]
    assert len(faults) > 100
    assert 0.6 < len(silent) / len(faults) < 0.9 and 0.6 < len(long_down) / len(faults) < 0.9
    data = generate(7, ("crash-after-commit",), 3, 10.0, 0.5).to_json()
    data["faults"][0]["params"]["before_send"] = "yes"
    with pytest.raises(ScheduleError, match=r"faults\[0\]: params.before_send must be true"):
        schedule_from_json(data, "s")


def test_with_membership_changes_some_commit_crashes_wait_for_a_configuration_commit() -> None:
    """A leader lost right after a membership change took effect (pending-conf-ignored's
    moment): schedules with ``member`` windows aim some crash-after-commit windows at commits
    of configuration entries; schedules without keep their windows exactly as they were."""
    kinds = ("crash-after-commit", "member")
    faults = [f for f in generate(7, kinds, 3, 200.0, 0.5).faults
              if f.kind == "crash-after-commit"]
    aimed = [f for f in faults if f.params["conf_only"]]
    assert 0.3 < len(aimed) / len(faults) < 0.7
    alone = generate(7, ("crash-after-commit",), 3, 200.0, 0.5).faults
    assert all("conf_only" not in f.params for f in alone)
    assert [f.params for f in alone] == [
        {k: v for k, v in f.params.items() if k != "conf_only"} for f in faults]
    data = generate(7, kinds, 3, 10.0, 0.5).to_json()
    first = next(f for f in data["faults"] if f["kind"] == "crash-after-commit")
    first["params"]["conf_only"] = 1
    with pytest.raises(ScheduleError, match=r"params.conf_only must be true or false"):
        schedule_from_json(data, "s")


def test_a_conf_only_window_crashes_leaders_only_at_configuration_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = RunOptions(workload="append", nodes=3, nemesis=("member", "crash-after-commit"),
                         nemesis_interval=0.3, time_limit=10.0, seed=3)
    schedule = generate(options.seed, options.nemesis, options.nodes, options.time_limit,
                        options.nemesis_interval)
    aimed = Schedule(nodes=schedule.nodes, time_limit=schedule.time_limit, faults=tuple(
        attrs.evolve(f, params={**f.params, "conf_only": True})
        if f.kind == "crash-after-commit" else f for f in schedule.faults))
    asked: list[bool] = []
    honest = NemesisRuntime._commits_conf

    def recording(self: NemesisRuntime, node: int, old: int, new: int) -> bool:
        covers = honest(self, node, old, new)
        log = self._nodes[node].core._log  # type: ignore[union-attr]
        assert covers == any(e.kind is EntryKind.CONF for e in log.slice(old + 1, new))
        asked.append(covers)
        return covers

    monkeypatch.setattr(NemesisRuntime, "_commits_conf", recording)
    report = run(options, tmp_path, schedule=aimed)
    assert report.verdict == "valid", report.line
    # Commits of writes alone were let go; each crash followed a configuration's commit.
    assert False in asked
    assert report.results["stats"]["commit_crashes"] == asked.count(True) > 0
    crashes = [line for line in (tmp_path / "nodes.log").read_text().splitlines()
               if "crash-after-commit" in line and "crashing it" in line]
    assert crashes and all("a configuration entry" in line for line in crashes), crashes


def test_core_settings_keep_their_old_constructor_names() -> None:
    """Code written before ``RunOptions.core`` (RunOptions(pre_vote=False), evolve with
    append_entries_max=...) builds the same options; the value lives in ``core`` only."""
    old = RunOptions(pre_vote=False, append_entries_max=2, seed=1)
    assert old == RunOptions(core={"pre_vote": False, "append_entries_max": 2}, seed=1)
    assert (old.pre_vote, old.check_quorum, old.append_entries_max) == (False, True, 2)
    again = attrs.evolve(old, seed=2, check_quorum=False)
    assert again.core == {"append_entries_max": 2, "check_quorum": False, "pre_vote": False}
    assert attrs.evolve(again, core={}).core == {}  # nothing stale overrides a new core
    assert attrs.evolve(old, pre_vote=True).core == {"append_entries_max": 2}
    assert "_pre_vote" not in old.to_json() and old.to_json()["pre_vote"] is False
    with pytest.raises(OptionsError, match=r"^--append-entries-max: must be an integer"):
        RunOptions(append_entries_max=0)
