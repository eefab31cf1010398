"""The simulated driver honours the Ready contract: crash drops unsynced writes, restart
rebuilds the core from storage and replays the log into a fresh state machine."""

from __future__ import annotations

import itertools

from harness.nemesis import Fault, Schedule
from harness.options import RunOptions
from harness.runner import simulate
from harness.sim.loop import EventLoop
from raftlib.core.types import Entry, EntryKind
from raftlib.kv.commands import OpenSession, Request, decode_command


def test_event_loop_runs_in_time_order_with_ties_in_schedule_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.at(20, seen.append, "c")
    loop.at(10, seen.append, "a")
    loop.at(10, seen.append, "b")
    loop.run_until(15)
    assert seen == ["a", "b"] and loop.now_us == 15
    loop.run_until(100)
    assert seen == ["a", "b", "c"]


def test_restarted_nodes_replay_the_log_and_agree_with_the_others() -> None:
    kill_all = Fault(1, "kill", 4.0, 5.0, {"targets": "all", "nodes": [1, 2, 3],
                                           "lose_unsynced": False, "torn": False})
    options = RunOptions(nodes=3, clients=5, time_limit=8.0, seed=4, nemesis=("kill",))
    outcome = simulate(options, Schedule(nodes=3, time_limit=8.0, faults=(kill_all,)))
    assert outcome.stats["crashes"] == {1: 1, 2: 1, 3: 1}
    applied = outcome.observer.applied
    lengths = {node: len(entries) for node, entries in applied.items()}
    assert min(lengths.values()) > 10, lengths
    # Across the restart every node applied the same entries, index after index from 1.
    for entries in applied.values():
        assert sorted(entries) == list(range(1, len(entries) + 1))
    assert not outcome.observer.violations(outcome.logs)


def test_power_loss_drops_writes_that_were_not_fsynced() -> None:
    power_loss = Fault(1, "disk", 3.0, 3.5, {"targets": "all", "nodes": [1, 2, 3],
                                              "lose_unsynced": True, "torn": False})
    options = RunOptions(nodes=3, clients=10, time_limit=6.0, seed=1, rate=200.0,
                         nemesis=("disk",))
    outcome = simulate(options, Schedule(nodes=3, time_limit=6.0, faults=(power_loss,)))
    log = "\n".join(outcome.node_log)
    crashes = [line for line in log.splitlines() if "crash (power loss" in line]
    assert len(crashes) == 3
    # This seed crashes one node between a write and its fsync: the window the fault needs.
    assert any("; 0 unsynced appends" not in line for line in crashes), crashes
    # Safety and durability hold even though unsynced writes vanished.
    assert not outcome.observer.violations(outcome.logs)


def _stamps(entries: list[Entry]) -> list[int]:
    """The leader times stamped into the log's writes and session opens, in log order."""
    stamps = []
    for entry in entries:
        if entry.kind is EntryKind.NORMAL:
            command = decode_command(entry.data)
            if isinstance(command, Request | OpenSession):
                stamps.append(command.now_ms)
    return stamps


def _stamps_of_a_run(clock_rate: float) -> list[int]:
    """The stamps of a kv run whose nodes' clocks all run at ``clock_rate``, with the first
    leader killed midway (the log of the node that holds the most)."""
    kill = Fault(2, "kill", 4.0, 5.0, {"targets": "leader", "nodes": [1], "lose_unsynced": False,
                                       "torn": False})
    rates = [[node, clock_rate] for node in (1, 2, 3)]
    faults = (Fault(1, "clock", 0.0, 10.0, {"rates": rates}), kill)
    options = RunOptions(workload="kv", nodes=3, clients=5, time_limit=10.0, seed=3,
                         nemesis=("clock", "kill"))
    outcome = simulate(options, Schedule(nodes=3, time_limit=10.0, faults=faults))
    return max((_stamps(entries) for entries in outcome.logs.values()), key=len)


def test_leaders_stamp_writes_with_the_production_leader_clock_on_their_own_clock() -> None:
    """The simulated KV service stamps what ``raftlib.service`` stamps: the leader clock
    (``raftlib.kv.leader_clock``) on the node's own clock. Clocks running at twice real time
    move the stamps twice as fast as the same run at real time (stamping the simulator's
    loop time would not), and stamps never go back across the leader change."""
    normal, fast = _stamps_of_a_run(1.0), _stamps_of_a_run(2.0)
    assert len(normal) > 50 and len(fast) > 50
    ratio = (fast[-1] - fast[0]) / (normal[-1] - normal[0])
    assert 1.9 <= ratio <= 2.1, ratio
    for stamps in (normal, fast):
        assert all(later >= earlier for earlier, later in itertools.pairwise(stamps)), stamps
