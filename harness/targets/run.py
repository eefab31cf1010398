"""A live run against a target other than raftlib: its DB's nodes, its client, the same faults.

The phases are ``harness.live.runner``'s: the network (one namespace host per node), every
node and companion started, wait until the DB says the cluster is ready (at most
``READY_SECONDS_MAX``); ``[0, time_limit)``: workers run the workload through the target's
client while ``harness.live.nemesis`` injects the schedule (partition, kill, pause: the faults
of ``LiveCluster``, which ``TargetCluster`` runs the DB's commands under); at the time limit
everything is healed, the run waits for the DB to converge, then reads every key once more
(the *final reads*, before any new write) and completes one write: the liveness proof, within
``--recovery-time``. Nodes are stopped with SIGTERM.

Checks: the workload's (lincheck for register and kv, the set checker for set), ``lost-writes``
(acknowledged writes the final reads show undone, ``harness.targets.lost_writes``),
``liveness`` and ``processes``. A target's DB may name checks whose failure is its documented
behaviour (``DB.expected_failures``): the verdict stays what the checks say, and the verdict
line and ``results.json`` say why that failure was expected.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from harness.checks import Check, verdict_of
from harness.history import HistoryRecorder
from harness.live import checks as live_checks
from harness.live.clients import ABSENT
from harness.live.ledger import Ledger
from harness.live.nemesis import LiveNemesis
from harness.live.net import LiveNetwork, LiveSetupError, open_network
from harness.live.session import (
    READY_SECONDS_MAX,
    RunBase,
    _StopSignals,
    run_in_trio,
    run_results,
    run_stats,
    save_run,
    supported_nemeses,
)
from harness.nemesis import Schedule
from harness.options import RunOptions, nemesis_text
from harness.outcomes import RunReport
from harness.progress import RunProgress
from harness.targets import make_db
from harness.targets.base import DB
from harness.targets.cluster import TargetCluster
from harness.targets.lost_writes import check_lost_writes
from harness.targets.recorder import RecordingClient

# How often the run asks the DB which node leads (the nemesis's "leader" is that node).
PRIMARY_POLL_SECONDS = 0.25
READY_POLL_SECONDS = 0.2
RETRY_SECONDS = 0.1
# After the time limit, operations still in flight end by their own timeouts: this much more.
DRAIN_SLACK_SECONDS = 2.0


@attrs.define
class Recovery:
    recovery_time: float
    heal_at: float = 0.0
    converged_at: float | None = None
    final_reads_done_at: float | None = None
    probe_done_at: float | None = None
    attempts: int = 0
    waiting_for: str | None = None  # what the DB last said it waited for

    def check(self) -> Check:
        bound = f"{self.recovery_time:g} s"
        if self.probe_done_at is None:
            waiting = f"; still waiting for: {self.waiting_for}" if self.waiting_for else ""
            return Check("liveness", False, f"no progress after heal: final reads and a write "
                                            f"did not complete within {bound} ({self.attempts} "
                                            f"attempts{waiting})")
        assert self.converged_at is not None, "the probe runs only once converged"
        reads = ("" if self.final_reads_done_at is None else
                 f"final reads done at +{self.final_reads_done_at - self.heal_at:.3f} s, ")
        return Check("liveness", True,
                     f"converged at +{self.converged_at - self.heal_at:.3f} s, {reads}a write "
                     f"at +{self.probe_done_at - self.heal_at:.3f} s (bound {bound})")


@attrs.define
class TargetOutcome:
    history: HistoryRecorder
    recovery: Recovery
    nemesis: LiveNemesis
    final_from: int
    startup_seconds: float
    run_seconds: float
    primaries: list[dict[str, Any]]
    client_errors: dict[str, int]


class TargetRun(RunBase[TargetOutcome]):
    def __init__(self, options: RunOptions, db: DB, schedule: Schedule, network: LiveNetwork,
                 run_dir: Path, events: list[str], progress: RunProgress, ledger: Ledger,
                 stop: _StopSignals) -> None:
        super().__init__(options, events, progress, ledger, stop)
        self.db = db
        self.schedule = schedule
        self.cluster = TargetCluster(db, options.nodes, network, run_dir, options.seed,
                                     log=self.node_log, on_spawn=ledger.node_started)
        self.primary: int | None = None
        self.primaries: list[dict[str, Any]] = []

    def _client(self, index: int) -> RecordingClient:
        nodes = sorted(self.cluster.target_hosts)
        client = self.db.client(self.cluster.target_hosts, home=nodes[index % len(nodes)],
                                timeout=self.options.request_timeout,
                                workload=self.options.workload)
        return RecordingClient(client, history=self.history, new_process=self._new_process,
                               timeout=self.options.request_timeout)

    async def _drive(self) -> TargetOutcome:
        options = self.options
        nemesis = LiveNemesis(cluster=self.cluster, history=self.history, log=self.log,
                              leader=lambda: self.primary, rng=self._rng("nemesis-runtime"))
        clients = [self._client(i) for i in range(options.clients)]
        probe = self._client(0)
        recovery = Recovery(options.recovery_time)
        began = trio.current_time()
        try:
            for client in [*clients, probe]:
                await client.client.open()
            async with trio.open_nursery() as background:
                await background.start(self.cluster.network.serve)
                self.cluster.start_all()
                await self._wait_ready()
                startup = trio.current_time() - began
                self._workload_starts(startup)
                background.start_soon(self._watch_primary)
                background.start_soon(self._report_progress)

                async def recover(heal_at: float) -> int:
                    recovery.heal_at = heal_at
                    return await self._recover(recovery, probe, clients)

                final_from = await self._workload_phase(nemesis, self.schedule, clients,
                                                        recover)
                run_seconds = self.clock()
                background.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for client in [*clients, probe]:
                    await client.aclose()
                await self.cluster.stop_all()
        errors: dict[str, int] = {}
        for client in [*clients, probe]:
            for name, count in client.errors.items():
                errors[name] = errors.get(name, 0) + count
        return TargetOutcome(self.history, recovery, nemesis, final_from, startup, run_seconds,
                             self.primaries, dict(sorted(errors.items())))

    async def _wait_ready(self) -> None:
        self.progress.phase("starting nodes")
        waiting: str | None = "no answer yet"
        with trio.move_on_after(READY_SECONDS_MAX):
            while True:
                waiting = await self.db.ready(self.cluster.target_hosts)
                if waiting is None:
                    return
                exited = self.cluster.reap_unexpected()
                if exited:
                    raise LiveSetupError(f"live: {self.db.name} node {exited[0]} exited at "
                                         f"start; see {self.cluster.run_dir / 'nodes'}")
                await trio.sleep(READY_POLL_SECONDS)
        raise LiveSetupError(f"live: the {self.db.name} cluster was not ready within "
                             f"{READY_SECONDS_MAX:g} s ({waiting}); see "
                             f"{self.cluster.run_dir / 'nodes'}")

    async def _watch_primary(self) -> None:
        while True:
            primary = await self.db.primary(self.cluster.target_hosts)
            if primary is not None and primary != self.primary:
                self.primaries.append({"at": round(self.clock(), 3), "node": primary})
                self.log(f"{self.db.name}: primary is now n{primary}")
            self.primary = primary
            self.cluster.reap_unexpected()
            await trio.sleep(PRIMARY_POLL_SECONDS)

    async def _recover(self, recovery: Recovery, probe: RecordingClient,
                       clients: list[RecordingClient]) -> int:
        """Converge, final reads, one write; returns the history index the final reads start
        from (none of them before it)."""
        deadline = trio.current_time() + recovery.recovery_time
        with trio.move_on_after(2 * self.options.request_timeout + DRAIN_SLACK_SECONDS):
            while any(client.busy for client in clients):
                await trio.sleep(RETRY_SECONDS)
        final_from = len(self.history.events)
        ops = self.workload.probe_ops()
        ops = [op for op in ops if not op.is_write] + [op for op in ops if op.is_write]
        with trio.move_on_at(deadline):
            while (waiting := await self.db.ready(self.cluster.target_hosts)) is not None:
                recovery.waiting_for = waiting
                await trio.sleep(READY_POLL_SECONDS)
            recovery.waiting_for = None
            recovery.converged_at = self.clock()
            final_from = len(self.history.events)
            while ops:
                recovery.attempts += 1
                if await probe.execute(ops[0]) == "ok":
                    done = ops.pop(0)
                    if not done.is_write and (not ops or ops[0].is_write):
                        recovery.final_reads_done_at = self.clock()
                else:
                    await trio.sleep(RETRY_SECONDS)
            recovery.probe_done_at = self.clock()
        return final_from


def run_target_live(
    options: RunOptions, schedule: Schedule, run_dir: Path, out_dir: Path | None,
    ledger: Ledger, stop: _StopSignals, phase: list[str], started: float, command: str | None,
    progress: RunProgress,
) -> RunReport:
    """``harness.live.runner``'s run, for ``options.target`` (not raftlib)."""
    db = make_db(options)
    events: list[str] = []
    with open_network(options.nodes, seed=options.seed) as network:
        if network.method != "netns":
            raise LiveSetupError(f"--target {db.name}: needs network namespaces (root on "
                                 f"Linux); this run would use {network.method}")
        run = TargetRun(options, db, schedule, network, run_dir, events, progress, ledger,
                        stop)
        cluster = run.cluster
        phase[0] = "the run"
        outcome = run_in_trio(run.drive, kill_all=cluster.kill_all, events=events,
                              run_dir=run_dir, ledger=ledger)
        network_info = network.describe()
    phase[0] = "checking"
    return _finish(options, db, schedule, run_dir, out_dir, cluster, outcome, network_info,
                   time.monotonic() - started, command, progress)


def _finish(
    options: RunOptions, db: DB, schedule: Schedule, run_dir: Path, out_dir: Path | None,
    cluster: TargetCluster, outcome: TargetOutcome, network_info: dict[str, Any], wall: float,
    command: str | None, progress: RunProgress,
) -> RunReport:
    progress.phase("checking")
    linearizable = live_checks.check_linearizable(
        outcome.history.events, options.workload, options.lincheck_timeout)
    all_checks = [linearizable[0]]
    if options.workload in ("register", "kv"):
        all_checks.append(check_lost_writes(outcome.history.events, outcome.final_from,
                                            ABSENT[options.workload]))
    all_checks.append(outcome.recovery.check())
    all_checks.append(live_checks.check_processes(
        cluster.unexpected_exits, cluster.forced_stops, _stop_statuses(cluster.stop_statuses)))
    if any(db.companion(h) is not None for h in cluster.target_hosts.values()):
        companions = cluster.companions
        all_checks.append(attrs.evolve(live_checks.check_processes(
            companions.unexpected_exits, companions.forced_stops,
            _stop_statuses(companions.stop_statuses)), name="companions"))
    verdict = verdict_of(all_checks)
    version = db.version()
    expected = {c.name: db.expected_failures[c.name] for c in all_checks
                if c.valid is False and c.name in db.expected_failures}
    all_checks = annotate_expected(all_checks, db.name, expected)
    stats = {
        **run_stats(wall, outcome.startup_seconds, outcome.run_seconds, outcome.history,
                    outcome.nemesis),
        "primaries": outcome.primaries,
        "client_errors": outcome.client_errors,
        "nodes": cluster.statistics(),
    }
    results = run_results(
        options, verdict, all_checks, stats, command, out_dir,
        target={"name": db.name, "version": version, "description": db.description,
                "expected_failures": dict(db.expected_failures)},
        expected_failures_seen=expected,
        object_under_test=f"{db.description}: {version}",
        live={**network_info, "nemeses_supported": list(supported_nemeses()),
              "target_nemeses": list(db.nemeses), "python": sys.executable})
    jsonl = save_run(run_dir, results, outcome.history, schedule, linearizable,
                     options.workload)
    line = one_line(options, version, all_checks, verdict, stats, wall, out_dir)
    return RunReport(verdict, line, out_dir, results, jsonl)


def _stop_statuses(statuses: dict[int, int | None]) -> dict[int, int | None]:
    """Exit statuses of the final stop, a death by the SIGTERM itself counted as clean: a
    program that keeps SIGTERM's default action (etcd re-raises it after its own cleanup)
    stops cleanly that way."""
    return {n: 0 if status == -signal.SIGTERM else status for n, status in statuses.items()}


def annotate_expected(all_checks: list[Check], target: str,
                      expected: dict[str, str]) -> list[Check]:
    """The checks, each failure the target documents (``expected``: check name -> why) saying
    so in its summary, which the verdict line, ``results.json`` and report.html all show."""
    return [attrs.evolve(c, summary=f"{c.summary} [expected for {target}: {expected[c.name]}]")
            if c.valid is False and c.name in expected else c for c in all_checks]


def one_line(options: RunOptions, version: str, all_checks: list[Check], verdict: str,
             stats: dict[str, Any], wall: float, out_dir: Path | None) -> str:
    ops = stats["operations"]
    faults = ", ".join(f"{k}x{v}" for k, v in stats["faults_started"].items()) or "none"
    failing = "; ".join(f"{c.name}: {c.summary}" for c in all_checks if c.valid is not True)
    detail = f" ({failing})" if failing else ""
    where = f" -> {out_dir}" if out_dir is not None else ""
    return (f"{verdict.upper()}{detail}: live, target {version}, seed {options.seed}, "
            f"{options.workload}, {options.nodes} nodes, {ops['invoke']} ops ({ops['ok']} ok, "
            f"{ops['fail']} fail, {ops['info']} info), faults {faults} (of "
            f"{nemesis_text(options.nemesis)}); {stats['run_seconds']:.1f} s run in "
            f"{wall:.1f} s{where}")
