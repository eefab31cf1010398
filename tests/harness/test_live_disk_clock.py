"""Live disk and clock faults and the live zoo: what the nodes' wrappers do, what the schedule
holds, and (slow, root) that live runs with them are valid on raftlib and catch the zoo's
ack-before-fsync."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.live import net
from harness.live.checks import NodeLog, check_durability
from harness.live.clients import Acked
from harness.live.clocked import ClockControl, WallClock, read_control, write_control
from harness.live.runner import narrow_all, supported_nemeses, validate
from harness.nemesis import (
    Fault,
    Schedule,
    ScheduleError,
    _params,
    generate,
    schedule_from_json,
)
from harness.options import NEMESIS_KINDS, OptionsError, RunOptions
from harness.runner import run
from raftlib.core.types import Entry, HardState
from raftlib.kv.commands import Request, Set, encode_command

ROOT_NETNS = net.netns_unavailable_reason() is None
needs_netns = pytest.mark.skipif(not ROOT_NETNS, reason="needs root on Linux and pyroute2")


# --- clock ------------------------------------------------------------------------------------


def test_a_bumped_wall_clock_is_off_by_the_offset_and_a_strobe_flips_every_period(
    tmp_path: Path,
) -> None:
    control = tmp_path / "clock.json"
    real = {"wall": 1000.0, "mono": 0.0}
    wall = WallClock(control, real_wall=lambda: real["wall"], real_monotonic=lambda: real["mono"])
    assert wall.time() == 1000.0
    write_control(control, ClockControl(offset_s=-60.0))
    real["mono"] += 1.0  # past the poll interval
    assert wall.time() == 940.0
    write_control(control, ClockControl(strobe_delta_s=30.0, strobe_period_ms=10.0))
    seen = []
    for step in range(4):  # 10 ms apart: true, 30 s ahead, true, 30 s ahead
        real["mono"] = 3.0 + step * 0.010 + 0.001
        seen.append(wall.time())
    assert seen == [1000.0, 1030.0, 1000.0, 1030.0]


def test_clock_controls_out_of_range_are_refused_when_written_and_ignored_when_read(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="offset_s"):
        write_control(tmp_path / "c.json", ClockControl(offset_s=1e9))
    (tmp_path / "c.json").write_text(json.dumps({"rate": 1.0, "offset_s": 1e12}))
    assert read_control(tmp_path / "c.json") == ClockControl()


_PRINT_TIME = "import time\nprint(time.time() - float(open('real').read()))\n"


def test_a_clocked_process_reads_a_bumped_time_time(tmp_path: Path) -> None:
    import time

    (tmp_path / "show.py").write_text(_PRINT_TIME)
    control = tmp_path / "clock.json"
    write_control(control, ClockControl(offset_s=7200.0))
    (tmp_path / "real").write_text(repr(time.time()))
    done = subprocess.run([sys.executable, "-m", "harness.live.clocked", str(control), "show"],
                          capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": ""})
    # Two hours ahead, plus the process's start-up (seconds on a loaded machine).
    assert 7200.0 <= float(done.stdout) < 7230.0


def test_clock_windows_carry_wall_faults_on_their_own_stream_leaving_rates_as_before() -> None:
    schedule = generate(3, ("clock",), 5, 60.0, 2.0)
    clock = [f for f in schedule.faults if f.kind == "clock"]
    assert clock
    # The rates are what the kind's own stream gave before wall faults existed.
    rng = random.Random("3:nemesis:clock")
    for fault in clock:
        rng.uniform(0.5, 1.5)
        rng.uniform(0.5, 1.5)
        assert fault.params["rates"] == _params("clock", rng, 5)["rates"]
    walls = [f.params["wall"] for f in clock]
    assert any(w["bumps"] for w in walls) or any(w["strobes"] for w in walls)
    assert schedule_from_json(json.loads(schedule.dumps()), "nemesis.json") == schedule


def test_a_malformed_wall_fault_is_refused_naming_the_field() -> None:
    raw = json.loads(generate(3, ("clock",), 3, 20.0, 2.0).dumps())
    raw["faults"][0]["params"]["wall"] = {"bumps": [[9, 1.0]], "strobes": []}
    with pytest.raises(ScheduleError, match=r"faults\[0\]: params.wall.bumps"):
        schedule_from_json(raw, "nemesis.json")
    raw["faults"][0]["params"]["wall"] = {"bumps": [], "strobes": [[1, 1.0, 0]]}
    with pytest.raises(ScheduleError, match=r"params.wall.strobes"):
        schedule_from_json(raw, "nemesis.json")


# --- durability under expired sessions -------------------------------------------------------


def _entry(index: int, session: int, seq: int) -> Entry:
    return Entry(term=1, index=index,
                 data=encode_command(Request(session, seq, 0, Set(b"k1", b"%d" % seq))))


def test_a_compacted_write_of_an_absent_session_is_missing_unless_the_clock_passed_the_ttl(
) -> None:
    acked = [Acked(1, 1, Set(b"k1", b"1"), 0, "put"), Acked(2, 1, Set(b"k1", b"1"), 0, "put")]
    tail = [_entry(11, 2, 1)]
    start_ms = 1_000_000
    ttl = 3_600_000

    def logs(clock_ms: int) -> dict[int, NodeLog]:
        # Session 1's write was compacted into a snapshot whose table no longer has session 1.
        return {1: NodeLog(HardState(1, 1, 11), tail, 10, {2: 0}, clock_ms, ttl)}

    # The session clock never jumped: the session cannot have expired, the write is lost.
    lost = check_durability(logs(start_ms + 20_000), acked, 11, start_ms)
    assert lost.valid is False and "session 1 seq 1" in lost.violations[0]
    # The session clock passed the run's start by twice the TTL (a run that long): the session
    # may have expired.
    bumped = check_durability(logs(start_ms + 2 * ttl), acked, 11, start_ms)
    assert bumped.valid is True and "1 compacted ones" in bumped.summary
    # Without the run's start the check stays strict.
    assert check_durability(logs(start_ms + 2 * ttl), acked, 11).valid is False


# --- what the live backend offers ------------------------------------------------------------


def test_disk_is_a_live_fault_and_nemesis_all_on_live_includes_it() -> None:
    assert "disk" in supported_nemeses()
    options = narrow_all(RunOptions(backend="live", nemesis=NEMESIS_KINDS))
    assert "disk" in options.nemesis and "clock" in options.nemesis
    validate(options)
    with pytest.raises(OptionsError, match="'duplicate' is not supported by the live backend"):
        validate(RunOptions(backend="live", nemesis=("duplicate",)))


_SHOW_PATCHED = (
    "from raftlib.driver import PersistJob\n"
    "print(PersistJob.run.__qualname__)\n"
)


def test_the_zoo_wrapper_switches_the_live_variant_of_a_bug_on_inside_the_node(
    tmp_path: Path,
) -> None:
    (tmp_path / "show.py").write_text(_SHOW_PATCHED)
    env = {"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": ""}
    buggy = subprocess.run([sys.executable, "-m", "harness.zoo.live", "ack-before-fsync",
                            "show"], capture_output=True, text=True, timeout=60, check=True,
                           env=env)
    assert buggy.stdout.strip() == "ack_before_fsync_live.<locals>.wrap_run.<locals>.run"
    plain = subprocess.run([sys.executable, "show.py"], capture_output=True, text=True,
                           timeout=60, check=True, env=env, cwd=tmp_path)
    assert plain.stdout.strip() == "PersistJob.run"


# --- live runs (slow, root) -------------------------------------------------------------------


def _live(tmp_path: Path, **options: object) -> dict[str, object]:
    chosen: dict[str, object] = {"time_limit": 15.0, "nemesis_interval": 2.0, **options}
    report = run(RunOptions(backend="live", nodes=3, **chosen),  # type: ignore[arg-type]
                 tmp_path / "run")
    results: dict[str, object] = report.results
    return results


@pytest.mark.slow
@needs_netns
def test_a_live_run_with_power_losses_is_valid_and_its_nodes_say_what_they_lost(
    tmp_path: Path,
) -> None:
    results = _live(tmp_path, workload="kv", nemesis=("kill", "disk"))
    assert results["verdict"] == "valid", results["failed_checks"]
    said = "".join(p.read_text() for p in (tmp_path / "run" / "nodes").glob("node-*.log"))
    assert "lazyfs: power loss" in said
    assert "lazyfs: process crash" in said


def _outages(time_limit: float) -> Schedule:
    """Whole-cluster power losses (every node at once, nothing torn, no file damaged) every
    four seconds, each down for one and a half: the fault that ack-before-fsync needs. A node
    of the zoo bug acknowledges an entry (and its leader answers the client) during the fsync
    that ``harness.live.lazyfs`` makes last ``SYNC_MS``; only when every copy of it is in a
    node that loses its power inside that window does an acknowledged write vanish. Drawn from
    the seed, disk windows hit ``all`` about one time in five, so three seeds caught the bug
    in about half the tries; a pinned schedule makes the test a test of the bug, not of the
    draw."""
    nodes = [1, 2, 3]
    starts = [float(t) for t in range(3, int(time_limit) - 2, 4)]
    faults = tuple(
        Fault(i + 1, "disk", start, start + 1.5,
              {"targets": "all", "nodes": nodes, "lose_unsynced": True, "torn": False,
               "file": None})
        for i, start in enumerate(starts))
    return Schedule(nodes=3, time_limit=time_limit, faults=faults)


def _under_outages(tmp_path: Path, bug: str, sync_on_loop: bool = False) -> dict[str, object]:
    # 500 operations a second keeps the ten clients busy, so that some acknowledged entry is
    # nearly always inside a sync when the power goes.
    time_limit = 30.0
    options = RunOptions(backend="live", nodes=3, workload="append", nemesis=("disk",),
                         rate=500.0, time_limit=time_limit, seed=1, bug=bug,
                         sync_on_loop=sync_on_loop)
    report = run(options, tmp_path / "run", schedule=_outages(time_limit))
    results: dict[str, object] = report.results
    return results


@pytest.mark.slow
@needs_netns
def test_the_zoo_bug_ack_before_fsync_is_caught_by_a_live_run_with_power_losses(
    tmp_path: Path,
) -> None:
    results = _under_outages(tmp_path, bug="ack-before-fsync")
    assert results["verdict"] == "invalid", results["checks"]
    failed = results["failed_checks"]
    assert isinstance(failed, list) and set(failed) & {"linearizable", "durability"}, failed


@pytest.mark.slow
@needs_netns
@pytest.mark.parametrize("sync_on_loop", [False, True], ids=["sync-thread", "sync-on-loop"])
def test_the_same_whole_cluster_power_losses_without_the_bug_lose_nothing(
    tmp_path: Path, sync_on_loop: bool,
) -> None:
    """The other half of the test above: its schedule, rate and checks find nothing in
    raftlib as it is, so what they find there is the bug. The same holds with the syncs on
    the event loop (``raftlib serve --sync-on-loop``), where the node persists each job
    before it looks at anything else."""
    results = _under_outages(tmp_path, bug="", sync_on_loop=sync_on_loop)
    assert results["verdict"] == "valid", results["failed_checks"]


# --- file faults --------------------------------------------------------------------------------


def _node_dir(tmp_path: Path, commit: int = 40) -> Path:
    from raftlib.storage.wal import WalStorage

    data = tmp_path / f"node-{commit}"
    with WalStorage(data) as storage:
        storage.load()
        storage.append([_entry(i, 1, i) for i in range(1, 41)])
        storage.set_hard_state(HardState(1, 1, commit))
        storage.sync()
    return data


def test_a_bit_flipped_mid_log_is_refused_and_the_file_can_be_put_back(tmp_path: Path) -> None:
    from harness.live.filefaults import damage

    data = _node_dir(tmp_path)
    before = sorted(p.read_bytes() for p in data.iterdir())
    outcome, original = damage(1, data, {"target": "wal", "how": "flip", "at": 0.3}, 5)
    assert outcome.result == "refused" and "CorruptLog" in outcome.detail
    assert str(data) in outcome.detail and "\n" not in outcome.detail
    assert original is not None
    path, content = original
    path.write_bytes(content)
    assert sorted(p.read_bytes() for p in data.iterdir()) == before  # probes touch copies only


def test_a_truncated_log_is_a_loss_the_recovery_reports_and_the_checker_names_it(
    tmp_path: Path,
) -> None:
    from harness.live.filefaults import damage

    # The hard state says entries up to 40 are committed: a cut below that is refused.
    cut = {"target": "wal", "how": "truncate", "at": 0.5}
    outcome, _ = damage(1, _node_dir(tmp_path, commit=40), cut, 0)
    assert outcome.result == "refused" and "committed entries are missing" in outcome.detail
    # Nothing says how far the log went: recovery takes the cut for a torn tail, and says so.
    data = _node_dir(tmp_path, commit=0)
    outcome, _ = damage(1, data, cut, 0)
    assert outcome.result == "loss-reported", outcome.detail
    assert "log entries" in outcome.detail and "said:" in outcome.detail
    none, _ = damage(1, data, {"target": "snapshot", "how": "flip", "at": 0.5}, 0)
    assert none.result == "no-file"


def test_the_file_faults_check_fails_on_a_silent_loss_or_a_node_that_did_not_refuse() -> None:
    from harness.live.filefaults import FileFaultOutcome, check_file_faults, is_log_record

    def refused(status: int | None, said: str, lines: int) -> FileFaultOutcome:
        return FileFaultOutcome(1, "wal", "flip", "wal-1.log", 9, "refused", "CorruptLog: x",
                                said, status, lines)

    good = refused(2, "raftlib: error: corrupt record at offset 9", 1)
    assert check_file_faults([good]).valid is True
    assert check_file_faults([refused(0, "", 0)]).valid is False  # it started anyway
    assert check_file_faults([refused(1, "    raise CorruptLog(...)", 30)]).valid is False
    assert is_log_record("2026-12-06 23:28:43,431 WARNING raftlib.storage: x: truncating a torn")
    assert not is_log_record("raftlib: error: corrupt record at offset 9")
    silent = FileFaultOutcome(2, "wal", "truncate", "wal-1.log", 9, "loss-silent",
                              "lost 3 log entries without a word")
    check = check_file_faults([good, silent])
    assert check.valid is False and "node 2" in check.violations[0]


@pytest.mark.slow
@needs_netns
def test_sessions_survive_a_leader_wall_clock_jump_past_the_ttl_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """Every node's wall clock two hours ahead (past the one-hour session TTL) for five
    seconds: no leader stamps it into writes (the leader time runs on the replicated clock and
    Trio's, ``raftlib.kv.leader_clock``), so no session expires and every acknowledged write,
    compacted or not, is found by its session. (When leaders stamped their wall clock, every
    session expired at once here and compacted writes could no longer be looked up.)"""

    bump = {"rates": [[n, 1.0] for n in (1, 2, 3)],
            "wall": {"bumps": [[n, 7200.0] for n in (1, 2, 3)], "strobes": []}}
    schedule = Schedule(nodes=3, time_limit=15.0, faults=(Fault(1, "clock", 3.0, 8.0, bump),))
    report = run(RunOptions(backend="live", nodes=3, workload="kv", time_limit=15.0,
                            nemesis=("clock",)), tmp_path / "run", schedule=schedule)
    assert report.verdict == "valid", report.line
    durability = report.results["checks"]["durability"]["summary"]
    assert durability.startswith("all "), durability
