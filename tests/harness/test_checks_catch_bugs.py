"""The checks can fail: deliberately broken drivers and state machines, patched in by the test,
are caught as invalid by the check that should catch them."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from harness.nemesis import Fault, Schedule
from harness.options import RunOptions
from harness.runner import run
from harness.sim.nemesis_runtime import NemesisRuntime
from harness.sim.node import ClientRequest, ReplyKind, SimNode
from raftlib.driver import Driver
from raftlib.kv.commands import Set
from raftlib.kv.machine import KvStateMachine


def options(**overrides: object) -> RunOptions:
    base: dict[str, object] = {"nodes": 5, "clients": 10, "time_limit": 10.0, "seed": 1,
                               "lincheck_timeout": 30.0}
    base.update(overrides)
    return RunOptions(**base)  # type: ignore[arg-type]


def _first_invalid(opts: RunOptions, seeds: range) -> tuple[int, dict[str, Any]]:
    tried = []
    for seed in seeds:
        report = run(attrs.evolve(opts, seed=seed), None)
        tried.append(f"seed {seed}: {report.line}")
        if report.verdict == "invalid":
            return seed, report.results
    raise AssertionError("the bug was not caught:\n" + "\n".join(tried))


def test_reads_served_from_local_state_without_read_index_are_not_linearizable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def local_read(self: SimNode, request: ClientRequest) -> None:
        self._reply(request, ReplyKind.OK, value=self.sm.get(request.key))

    monkeypatch.setattr(SimNode, "_handle_read", local_read)
    seed, results = _first_invalid(options(nemesis=("partition", "pause")), range(0, 10))
    assert "linearizable" in results["failed_checks"], f"seed {seed}: {results['checks']}"


def test_a_state_machine_that_acknowledges_but_skips_writes_is_not_linearizable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = KvStateMachine._execute

    def lossy_execute(self: KvStateMachine, op: Any) -> Any:
        if self.applied_commands % 5 == 4 and isinstance(op, Set):
            return True  # acknowledged, never applied
        return original(self, op)

    monkeypatch.setattr(KvStateMachine, "_execute", lossy_execute)
    seed, results = _first_invalid(options(), range(0, 3))
    assert "linearizable" in results["failed_checks"], f"seed {seed}: {results['checks']}"


def test_a_driver_that_never_fsyncs_loses_acknowledged_writes_on_power_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fsync(self: SimNode, job: Any) -> None:
        assert self.driver is not None
        self.driver.persisted(job)  # the sync() never happens

    monkeypatch.setattr(SimNode, "_complete_persist", no_fsync)
    power_loss = Fault(1, "disk", 5.0, 6.0, {"targets": "all", "nodes": [1, 2, 3, 4, 5],
                                             "lose_unsynced": True, "torn": False})
    opts = options(nemesis=("disk",))
    report = run(opts, None, schedule=Schedule(nodes=5, time_limit=10.0, faults=(power_loss,)))
    assert report.verdict == "invalid", report.line
    assert "durability" in report.results["failed_checks"], report.results["checks"]


def test_a_cluster_that_is_never_healed_fails_with_no_progress_after_heal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NemesisRuntime, "heal_all", lambda self: None)
    outage = Fault(1, "kill", 3.0, 10.0, {"targets": "majority", "nodes": [1, 2, 3],
                                          "lose_unsynced": False, "torn": False})
    # The window's own stop is at the time limit: drop it so the majority stays down.
    monkeypatch.setattr(NemesisRuntime, "_stop", lambda self, fault: None)
    opts = options(nemesis=("kill",), recovery_time=3.0)
    report = run(opts, None, schedule=Schedule(nodes=5, time_limit=10.0, faults=(outage,)))
    assert report.verdict == "invalid"
    assert report.results["failed_checks"] == ["liveness"], report.results["checks"]
    assert "no progress after heal" in report.line


def test_an_invariant_breaking_inside_the_simulation_makes_the_run_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Driver.apply

    def skipping_apply(self: Driver, entries: Any) -> None:
        original(self, [entry for entry in entries if entry.index != 30])

    monkeypatch.setattr(Driver, "apply", skipping_apply)
    report = run(options(), None)
    assert report.verdict == "invalid"
    assert report.results["failed_checks"] == ["invariant"]
    assert "apply out of order" in report.line


def _settled(from_term: int, to_term: int, **core: bool) -> object:
    from types import SimpleNamespace

    from harness.sim.world import Liveness

    live = Liveness(heal_us=0, deadline_us=10_000_000, leader_after_heal_us=1,
                    probe_done_us=2, caught_up_us=3, settle_us=2_500_000,
                    settle_from_term=from_term, settle_to_term=to_term)
    return SimpleNamespace(liveness=live, options=RunOptions(core=core))


def test_leadership_must_settle_after_heal_unless_nothing_could_make_it() -> None:
    from typing import Any, cast

    from harness.checks import SETTLE_TERMS_MAX, check_liveness

    held = check_liveness(cast(Any, _settled(7, 7 + SETTLE_TERMS_MAX)))
    assert held.valid is True and "leadership held" in held.summary
    churn = check_liveness(cast(Any, _settled(7, 8 + SETTLE_TERMS_MAX)))
    assert churn.valid is False and "did not settle" in churn.summary
    # With PreVote and CheckQuorum off a node removed while down may depose leaders for good
    # (thesis 4.2.3): the configuration's known weakness is not judged.
    unguarded = check_liveness(cast(Any, _settled(7, 20, pre_vote=False, check_quorum=False)))
    assert unguarded.valid is True and "not judged" in unguarded.summary
