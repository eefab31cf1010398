"""Nemesis schedules are data (generated, saved, validated, replayed) and each fault kind
actually does something to the simulated cluster."""

from __future__ import annotations

import itertools
import json

import pytest

from harness.nemesis import (
    PARTITION_MODES,
    Fault,
    Schedule,
    ScheduleError,
    generate,
    partition_links,
    schedule_from_json,
)
from harness.options import NEMESIS_KINDS, RunOptions
from harness.runner import simulate
from harness.sim.world import SimOutcome


def options(**overrides: object) -> RunOptions:
    """Small, quick runs: 3 nodes, 5 clients, 5 simulated seconds unless overridden."""
    base: dict[str, object] = {"nodes": 3, "clients": 5, "time_limit": 5.0, "seed": 1,
                               "lincheck_timeout": 30.0}
    base.update(overrides)
    return RunOptions(**base)  # type: ignore[arg-type]


def _run_with(kind: str, seed: int = 3) -> SimOutcome:
    return simulate(options(nodes=5, clients=5, time_limit=10.0, nemesis=(kind,), seed=seed))


def _log(outcome: SimOutcome) -> str:
    return "\n".join(outcome.node_log)


def test_generated_schedule_holds_only_the_selected_kinds_and_ends_by_the_time_limit() -> None:
    schedule = generate(5, ("partition", "kill"), 5, 30.0, 2.0)
    assert schedule.kinds() == ["kill", "partition"]
    assert len(schedule.faults) >= 10
    for fault in schedule.faults:
        assert 0 < fault.start < fault.stop <= 30.0
    for kind in ("partition", "kill"):
        windows = [f for f in schedule.faults if f.kind == kind]
        for before, after in itertools.pairwise(windows):
            assert before.stop <= after.start, f"{kind} windows overlap"


def test_schedule_round_trips_through_json_unchanged() -> None:
    schedule = generate(9, NEMESIS_KINDS, 5, 20.0, 2.0)
    again = schedule_from_json(json.loads(schedule.dumps()), "nemesis.json")
    assert again == schedule
    assert again.dumps() == schedule.dumps()


def test_adding_a_kind_leaves_the_other_kinds_windows_unchanged() -> None:
    alone = generate(4, ("kill",), 5, 20.0, 2.0)
    both = generate(4, ("kill", "pause"), 5, 20.0, 2.0)
    kills = [(f.start, f.stop, dict(f.params)) for f in both.faults if f.kind == "kill"]
    assert kills == [(f.start, f.stop, dict(f.params)) for f in alone.faults]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=99), "unsupported schedule version"),
        (lambda d: d["faults"][0].update(kind="meteor"), "unknown kind 'meteor'"),
        (lambda d: d["faults"][0].update(start=-1), "need 0 <= start <= stop"),
        (lambda d: d["faults"][0].update(stop=1e9), "need 0 <= start <= stop"),
        (lambda d: d["faults"][0]["params"].update(nodes=[0]), "node ids in 1..5"),
        (lambda d: d["faults"].append(dict(d["faults"][0], id=77)), "overlap"),
    ],
)
def test_malformed_schedule_is_refused_with_one_line_naming_the_problem(
    change: object, message: str
) -> None:
    data = generate(2, ("kill",), 5, 20.0, 2.0).to_json()
    change(data)  # type: ignore[operator]
    with pytest.raises(ScheduleError) as info:
        schedule_from_json(data, "nemesis.json")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("nemesis.json")


def test_partition_modes_cut_what_they_promise() -> None:
    nodes = [1, 2, 3, 4, 5]
    isolate = {tuple(link) for link in partition_links("isolate", nodes)}
    assert isolate == {(1, n) for n in nodes[1:]} | {(n, 1) for n in nodes[1:]}
    halves = {tuple(link) for link in partition_links("halves", nodes)}
    assert (1, 3) in halves and (1, 2) not in halves and (3, 4) not in halves
    bridge = {tuple(link) for link in partition_links("bridge", nodes)}
    assert not any(1 in link for link in bridge), "the bridge node must reach everyone"
    assert (2, 4) in bridge and (2, 3) not in bridge
    ring = {tuple(link) for link in partition_links("majorities-ring", nodes)}
    for node in nodes:
        hears = [src for src in nodes if src != node and (src, node) not in ring]
        assert len(hears) + 1 == 3, f"node {node} must hear exactly a majority"
    majorities = {frozenset([n, *[s for s in nodes if s != n and (s, n) not in ring]])
                  for n in nodes}
    assert len(majorities) == 5, "no two nodes may see the same majority"
    assert set(PARTITION_MODES) >= {"halves", "isolate", "isolate-leader", "bridge"}


def test_partition_blocks_messages() -> None:
    outcome = _run_with("partition")
    assert outcome.stats["faults_started"]["partition"] >= 3
    assert outcome.stats["network"]["dropped_partition"] > 0


def test_isolating_the_leader_makes_the_majority_elect_another_one() -> None:
    window = Fault(1, "partition", 2.0, 6.0, {"mode": "isolate-leader", "blocked": None})
    schedule = Schedule(nodes=5, time_limit=10.0, faults=(window,))
    outcome = simulate(options(nodes=5, time_limit=10.0, nemesis=("partition",)), schedule)
    started = next(e for e in outcome.history.events if e.f == "start-partition")
    isolated = started.value["isolated"]
    first_term = min(outcome.observer.leaders)
    assert outcome.observer.leaders[first_term] == {isolated}
    later = [t for t, nodes in outcome.observer.leaders.items() if t > first_term]
    assert later and all(isolated not in outcome.observer.leaders[t] for t in later[:1])


def test_kill_crashes_and_restarts_nodes_and_they_replay_their_logs() -> None:
    outcome = _run_with("kill")
    assert sum(outcome.stats["crashes"].values()) >= 2
    log = _log(outcome)
    assert "crash (process crash" in log
    assert "start: term=" in log.split("crash (process crash", 1)[1], "no restart after crash"


def test_disk_faults_are_power_losses_through_the_production_wal() -> None:
    """A run with disk faults keeps every node's data in WalStorage over CrashFS, so a power
    loss drops (or tears) what the persistence model says it may, and recovery is the real
    one; the memory disk's own torn writes are covered by the storage tests."""
    for seed in range(1, 6):
        outcome = _run_with("disk", seed)
        assert all(f.params["lose_unsynced"] for f in outcome.schedule.faults)
        assert outcome.params.disk == "wal"
        log = _log(outcome)
        assert "crash (power loss, on the WAL over CrashFS)" in log
        assert "start: term=" in log.split("crash (power loss", 1)[1], "no restart"


def test_pause_stops_and_resumes_nodes() -> None:
    outcome = _run_with("pause")
    log = _log(outcome)
    assert log.count(" pause") >= 2 and log.count(" resume") >= 1


@pytest.mark.parametrize(
    ("kind", "counter"),
    [("loss", "dropped_loss"), ("duplicate", "duplicated"), ("reorder", "reordered"),
     ("delay", "delayed")],
)
def test_network_fault_windows_change_message_delivery(kind: str, counter: str) -> None:
    outcome = _run_with(kind)
    assert outcome.stats["faults_started"][kind] >= 2
    assert outcome.stats["network"][counter] > 0
    quiet = simulate(options(nodes=5, clients=5, time_limit=10.0, seed=3))
    assert quiet.stats["network"][counter] == 0


def test_clock_skew_makes_fast_nodes_tick_more_than_slow_ones() -> None:
    outcome = _run_with("clock")
    ticks = outcome.stats["ticks"]
    assert max(ticks.values()) > 1.3 * min(ticks.values()), ticks
    quiet = simulate(options(nodes=5, clients=5, time_limit=10.0, seed=3)).stats["ticks"]
    assert max(quiet.values()) - min(quiet.values()) <= 2, quiet


def test_every_run_ends_healed_with_a_recovery_window() -> None:
    outcome = simulate(options(nodes=5, time_limit=6.0, nemesis=NEMESIS_KINDS, seed=8))
    starts = [e for e in outcome.history.events if e.process == "nemesis"
              and e.f.startswith("start-")]
    stops = [e for e in outcome.history.events if e.process == "nemesis"
             and e.f.startswith("stop-")]
    assert len(starts) == len(stops) > 0
    assert all(e.time is not None and e.time <= 6.0 for e in stops)
    assert outcome.liveness.caught_up_us is not None
    assert outcome.stats["simulated_seconds"] > 6.0
