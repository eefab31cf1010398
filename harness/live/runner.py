"""One live run end to end: network, processes, workload and faults, heal, stop, check, write.

The phases (seconds of the run, counted from the moment the cluster has a leader):

1. startup: the network is set up, every node started, and the run waits (at most
   ``READY_SECONDS_MAX``) until every client port answers and a leader exists;
2. ``[0, time_limit)``: workers run the workload at the target rate while the nemesis
   schedule injects and heals faults in the real processes and network;
3. ``time_limit``: every fault still active is healed, every node runs unpaused, workers stop
   invoking; recovery: a probe client must complete one write and a read of every key, and every
   node must apply up to the commit index, within ``recovery_time`` (liveness);
4. the nodes are stopped with SIGTERM and their data directories read back for the safety and
   durability checks.

The run directory is the simulator's (``history.jsonl``, ``nemesis.json``, ``results.json``,
``nodes.log``: what the harness did, ``lincheck.html`` on a violation) plus ``nodes/node-N/``
(each node's data) and ``nodes/node-N.log`` (its output). Whatever happens, no node process,
namespace, link or filter rule outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from harness.checks import Check, verdict_of
from harness.history import HistoryRecorder
from harness.live import checks as live_checks
from harness.live import filefaults, loss
from harness.live import ledger as ledger_module
from harness.live.checks import Liveness
from harness.live.clients import LiveClient
from harness.live.cluster import LiveCluster, child_env, serve_flags
from harness.live.ledger import Ledger
from harness.live.membership import LiveMembership
from harness.live.monitor import Monitor
from harness.live.nemesis import REFUSED, LiveNemesis
from harness.live.net import LiveNetwork, LiveSetupError, open_network
from harness.live.remote import SSH_REFUSED
from harness.live.session import (
    READY_SECONDS_MAX,
    RESULTS_VERSION,
    RunBase,
    _is_interrupt,
    _StopSignals,
    run_in_trio,
    run_results,
    run_stats,
    save_run,
    supported_nemeses,
)
from harness.nemesis import SPARE_NODES, Schedule, generate
from harness.options import (
    NEMESIS_KINDS,
    OptionsError,
    RunOptions,
    command_line,
    nemesis_text,
)
from harness.outcomes import RunReport
from harness.progress import NO_PROGRESS, RunProgress
from harness.targets.raftlib import raftlib_version

# Bounds of a live run that the simulator does not have.
CLIENTS_LIVE_MAX = 200
PROBE_RETRY_SECONDS = 0.1
CATCH_UP_POLL_SECONDS = 0.1


def narrow_all(options: RunOptions) -> RunOptions:
    """``--nemesis all`` on the live backend: every kind it can inject here (and the target
    supports), not an error."""
    if tuple(options.nemesis) != NEMESIS_KINDS:
        return options
    kinds = supported_nemeses(options)
    if options.target != "raftlib":
        from harness.targets import make_db

        kinds = tuple(k for k in kinds if k in make_db(options).nemeses)
    return attrs.evolve(options, nemesis=kinds)


def validate(options: RunOptions, schedule: Schedule | None = None) -> None:
    """Refuse, with one line, what the live backend cannot do (before anything starts)."""
    kinds = list(options.nemesis) + (schedule.kinds() if schedule is not None else [])
    from harness.targets import validate_target

    if options.target != "raftlib" and options.ssh_hosts:
        raise OptionsError(f"--target {options.target}: --ssh-hosts runs raftlib nodes only")
    validate_target(options, kinds)
    supported = supported_nemeses(options)
    for kind in kinds:
        if kind not in supported:
            why = SSH_REFUSED if options.ssh_hosts else REFUSED.get(kind, "unknown kind")
            if kind == "loss" and loss.unavailable_reason() is not None:
                why = str(loss.unavailable_reason())
            raise OptionsError(f"--nemesis: {kind!r} is not supported by the live backend: "
                               f"{why}; supported live here: {', '.join(supported)}")
    if options.clients > CLIENTS_LIVE_MAX:
        raise OptionsError(f"--clients: the live backend runs at most {CLIENTS_LIVE_MAX} "
                           f"clients (real connections), got {options.clients}")
    if options.request_timeout < 0.1:
        raise OptionsError(f"--request-timeout: the live backend needs at least 0.1 s (real "
                           f"network round trips), got {options.request_timeout!r}")


@attrs.define
class LiveOutcome:
    history: HistoryRecorder
    liveness: Liveness
    acked: list[Any]
    refused: list[Any]
    nemesis: LiveNemesis
    monitor: Monitor
    startup_seconds: float
    run_seconds: float
    run_start_ms: int  # the harness's wall clock when the workload began
    # The members of the final configuration (None: every node, no membership changes).
    members: set[int] | None = None


class LiveRun(RunBase[LiveOutcome]):
    def __init__(self, options: RunOptions, schedule: Schedule, network: LiveNetwork,
                 run_dir: Path, events: list[str], progress: RunProgress,
                 ledger: Ledger, stop: _StopSignals) -> None:
        super().__init__(options, events, progress, ledger, stop)
        self.schedule = schedule
        self.network = network
        self.membership: LiveMembership | None = None
        self.final_members: set[int] | None = None
        kinds = {*options.nemesis, *schedule.kinds()}
        self.cluster = LiveCluster(options.nodes, network, run_dir, options.seed,
                                   log=self.node_log, on_spawn=ledger.node_started,
                                   clocked="clock" in kinds,
                                   node_flags=options.node_flags(),
                                   lazy_disk="disk" in kinds,
                                   bug=options.bug,
                                   spares=SPARE_NODES if "member" in kinds else 0)

    def _client(self, name: str) -> LiveClient:
        return LiveClient(
            addresses=self.cluster.client_addresses(), workload=self.options.workload,
            history=self.history, new_process=self._new_process,
            request_timeout=self.options.request_timeout, rng=self._rng(f"start:{name}"),
        )

    async def _drive(self) -> LiveOutcome:
        options = self.options
        monitor = Monitor(self.cluster, self.node_log, self.clock)
        membership = None
        if self.cluster.members.keys() != self.cluster.founders:
            cluster = self.cluster
            membership = LiveMembership(
                size=options.nodes, nodes=sorted(cluster.members),
                raft_address=cluster.raft_address, client_address=cluster.network.client_address,
                leader=monitor.leader, log=self.log, rng=self._rng("membership"),
                disks=cluster)
        self.membership = membership
        nemesis = LiveNemesis(cluster=self.cluster, history=self.history, log=self.log,
                              leader=monitor.leader, rng=self._rng("nemesis-runtime"),
                              membership=membership)
        clients = [self._client(f"client:{i}") for i in range(options.clients)]
        probe = self._client("probe")
        live = Liveness(options.recovery_time)
        began = trio.current_time()
        try:
            async with trio.open_nursery() as background:
                await background.start(self.network.serve)
                for node in sorted(self.cluster.members):
                    self.cluster.start(node)
                await self._wait_ready(monitor)
                startup = trio.current_time() - began
                self._workload_starts(startup)
                run_start_ms = int(time.time() * 1000)
                background.start_soon(monitor.run)
                background.start_soon(self._report_progress)

                async def recover(heal_at: float) -> None:
                    live.heal_at = heal_at
                    await self._recover(live, monitor, probe, clients)

                await self._workload_phase(nemesis, self.schedule, clients, recover)
                run_seconds = self.clock()
                background.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for client in [*clients, probe]:
                    await client.aclose()
                await monitor.aclose()
                if self.membership is not None:
                    await self.membership.aclose()
                await self.cluster.stop_all()
        acked = [a for client in [*clients, probe] for a in client.acked]
        refused = [a for client in [*clients, probe] for a in client.refused]
        return LiveOutcome(self.history, live, acked, refused, nemesis, monitor, startup,
                           run_seconds, run_start_ms, self.final_members)

    async def _wait_ready(self, monitor: Monitor) -> None:
        self.progress.phase("starting nodes")
        with trio.move_on_after(READY_SECONDS_MAX):
            while True:
                await monitor.poll_once()
                if len(monitor.views) == len(self.cluster.members) and monitor.leader():
                    return
                if self.cluster.unexpected_exits:
                    node, status, _ = self.cluster.unexpected_exits[0]
                    raise LiveSetupError(f"live: node {node} exited with status {status} at "
                                         f"start; see {self.cluster.log_path(node)}")
                await trio.sleep(0.1)
        answered = sorted(monitor.views)
        raise LiveSetupError(f"live: the cluster was not ready within {READY_SECONDS_MAX:g} s "
                             f"(nodes answering: {answered or 'none'}, leader: "
                             f"{monitor.leader()}); see {self.cluster.run_dir / 'nodes'}")

    async def _recover(self, live: Liveness, monitor: Monitor, probe: LiveClient,
                       clients: list[LiveClient]) -> None:
        deadline = trio.current_time() + self.options.recovery_time
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:

                async def watch_leader() -> None:
                    while monitor.leader() is None:
                        await trio.sleep(0.05)
                    live.leader_at = self.clock()

                nursery.start_soon(watch_leader)
                ops = self.workload.probe_ops()
                while ops:
                    live.probe_attempts += 1
                    if await probe.execute(ops[0]) == "ok":
                        ops.pop(0)
                    else:
                        await trio.sleep(PROBE_RETRY_SECONDS)
                live.probe_done_at = self.clock()
                # Every acknowledged write is committed once the workers are done; the
                # durability check needs every node to hold the log at least that far.
                while any(client.busy for client in clients):
                    await trio.sleep(CATCH_UP_POLL_SECONDS)
                await monitor.poll_once()
                # The largest commit index ever seen, not just this round's: a round in which
                # no node answered would make the target 0 and "catch up" at once, and the
                # durability check would then blame a node that was still catching up.
                live.catch_up_target = max(monitor.commit_max, monitor.commit_index())
                members = set(self.cluster.members)
                if self.membership is not None:
                    # A machine that died for good (wipe-replace) and is still a member is
                    # removed first, as an operator would; then only the final configuration's
                    # members must catch up (and hold every acknowledged write): a removed node
                    # or an unused spare never will.
                    members = set(await self.membership.remove_dead())
                    self.final_members = members
                while True:
                    await monitor.poll_once()
                    views = monitor.views
                    live.lagging = {n: views[n].applied_index if n in views else -1
                                    for n in self.cluster.members
                                    if n in members and (
                                        n not in views
                                        or views[n].applied_index < live.catch_up_target)}
                    if not live.lagging:
                        live.caught_up_at = self.clock()
                        break
                    await trio.sleep(CATCH_UP_POLL_SECONDS)
                # Then every node still running, a member or not, answers before the stop: a
                # node restarted late in the run (a removed one, which nothing above waits
                # for) may still be importing, and SIGTERM would end it before it could stop
                # cleanly, telling the process check nothing about it.
                while self._starting(monitor):
                    await trio.sleep(CATCH_UP_POLL_SECONDS)
                    await monitor.poll_once()
                nursery.cancel_scope.cancel()
        live.starting = self._starting(monitor)
        if self.membership is not None and self.final_members is None:
            # The recovery failed before asking: still judge durability on the final
            # configuration's members if a leader can tell it.
            with trio.move_on_after(2.0):
                final = await self.membership.members()
                if final is not None:
                    self.final_members = set(final)
        # Past the deadline, operations still open finish by their own timeouts.
        with trio.move_on_after(2 * self.options.request_timeout + 2):
            while any(client.busy for client in [*clients, probe]):
                await trio.sleep(CATCH_UP_POLL_SECONDS)

    def _starting(self, monitor: Monitor) -> list[int]:
        """Running nodes that did not answer the monitor's last round."""
        return [n for n in sorted(self.cluster.members)
                if self.cluster.running(n) and n not in monitor.views]


class RunInterrupted(KeyboardInterrupt):
    """A live run stopped by SIGINT or SIGTERM, cleaned up; ``str()`` is the one line to print.
    """


def run_live(
    options: RunOptions,
    out_dir: Path | None,
    *,
    schedule: Schedule | None = None,
    command: str | None = None,
    progress: RunProgress | None = None,
) -> Any:
    """A live run; returns ``harness.runner.RunReport`` like the simulator's ``run``.

    SIGINT or SIGTERM at any point stops the run: faults healed (the namespaces and proxies
    are gone), node processes stopped, ``results.json`` written with verdict ``interrupted``,
    and ``RunInterrupted`` raised (the CLI prints its one line and exits 130).
    """
    options = narrow_all(options)
    validate(options, schedule)
    if schedule is None:
        schedule = generate(options.seed, options.nemesis, options.nodes, options.time_limit,
                            options.nemesis_interval, clock_rate_max=options.clock_rate_max)
    started = time.monotonic()
    scratch = out_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="raft-harness-live-")) if out_dir is None else out_dir
    if (run_dir / "nodes").exists():
        # A previous run's data directories would be recovered by the new nodes: a run
        # directory is overwritten as a whole, as the simulator overwrites its files.
        if not ((run_dir / "results.json").exists() or (run_dir / "nodes.log").exists()):
            raise OptionsError(f"--out: {run_dir / 'nodes'} exists and is not from a live run; "
                               "choose another directory")
        shutil.rmtree(run_dir / "nodes")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").unlink(missing_ok=True)  # never leave a stale verdict
    ledger = Ledger()
    stop = _StopSignals()
    phase = ["setup"]
    try:
        with stop:
            report = _run_live(options, schedule, run_dir, out_dir, ledger, stop, phase,
                               started, command, progress or NO_PROGRESS)
    except BaseException as exc:
        if not (stop.received or _is_interrupt(exc)):
            raise
        # Every ``finally`` below has run: faults are healed, nodes stopped. Say so, once.
        name = stop.received or "SIGINT"
        _write_interrupted(options, run_dir, name, phase[0], command,
                           time.monotonic() - started)
        where = "" if scratch else f"; verdict in {run_dir / 'results.json'}"
        raise RunInterrupted(f"interrupted by {name} during {phase[0]}: faults healed, node "
                             f"processes stopped{where}") from None
    finally:
        ledger.close()
        if scratch:
            shutil.rmtree(run_dir, ignore_errors=True)
    return report


def _run_live(
    options: RunOptions, schedule: Schedule, run_dir: Path, out_dir: Path | None,
    ledger: Ledger, stop: _StopSignals, phase: list[str], started: float, command: str | None,
    progress: RunProgress,
) -> Any:
    cleaned = ledger_module.clean_stale()
    ledger.open(run_dir=str(run_dir))
    if options.target != "raftlib":
        from harness.targets.run import run_target_live

        if cleaned:
            print(f"live: removed what an earlier, killed run left: {', '.join(cleaned)}",
                  file=sys.stderr, flush=True)
        return run_target_live(options, schedule, run_dir, out_dir, ledger, stop, phase,
                               started, command, progress)
    events: list[str] = []
    kinds = set(options.nemesis) | set(schedule.kinds())
    spares = SPARE_NODES if "member" in kinds else 0
    with _open_network(options, run_dir, spares, kinds) as network:
        cleaned += getattr(network, "removed_leftovers", [])
        if cleaned:
            print(f"live: removed what an earlier, killed run left: {', '.join(cleaned)}",
                  file=sys.stderr, flush=True)
        live_run = LiveRun(options, schedule, network, run_dir, events, progress, ledger,
                           stop)
        cluster = live_run.cluster
        phase[0] = "the run"
        outcome = run_in_trio(live_run.drive, kill_all=cluster.kill_all, events=events,
                              run_dir=run_dir, ledger=ledger)
        network_info = network.describe()
    phase[0] = "checking"
    return _finish(options, schedule, run_dir, out_dir, cluster, outcome, network_info,
                   time.monotonic() - started, command, progress)


def _open_network(options: RunOptions, run_dir: Path, spares: int,
                  kinds: set[str]) -> contextlib.AbstractContextManager[LiveNetwork]:
    if options.ssh_hosts:
        # Imported here: asyncssh is needed only for runs on other hosts.
        from harness.live.ssh import open_ssh_network

        return open_ssh_network(options, run_dir / "nodes", child_env(),
                                partitions="partition" in kinds)
    return open_network(options.nodes + spares, relay_peers="delay" in kinds, seed=options.seed)


def _write_interrupted(options: RunOptions, run_dir: Path, signal_name: str, phase: str,
                       command: str | None, wall: float) -> None:
    results = {
        "version": RESULTS_VERSION,
        "verdict": "interrupted",
        "seed": options.seed,
        "backend": "live",
        "options": options.to_json(),
        "interrupted": {"signal": signal_name, "during": phase,
                        "wall_seconds": round(wall, 3),
                        "cleanup": "faults healed (namespaces or proxies removed), every node "
                                   "process stopped"},
        "checks": {},
        "failed_checks": [],
        "command": command or command_line(options.to_argv()),
        "files": {"node_log": "nodes.log", "node_outputs": "nodes/node-N.log"},
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n",
                                          encoding="utf-8")


def _finish(
    options: RunOptions, schedule: Schedule, run_dir: Path, out_dir: Path | None,
    cluster: LiveCluster, outcome: LiveOutcome, network_info: dict[str, Any], wall: float,
    command: str | None, progress: RunProgress,
) -> Any:

    progress.phase("checking")
    logs, errors = live_checks.read_logs({n: cluster.data_dir(n) for n in cluster.members})
    linearizable = live_checks.check_linearizable(
        outcome.history.events, options.workload, options.lincheck_timeout)
    all_checks = [
        linearizable[0],
        live_checks.check_safety(logs, errors, outcome.monitor.leaders,
                                 outcome.monitor.commit_max, outcome.members),
        live_checks.check_durability(logs, outcome.acked, outcome.monitor.commit_max,
                                     outcome.run_start_ms, outcome.members),
        live_checks.check_refusals(logs, outcome.refused, outcome.monitor.commit_max,
                                   outcome.members),
        live_checks.check_liveness(outcome.liveness),
        live_checks.check_processes(cluster.unexpected_exits, cluster.forced_stops,
                                    cluster.stop_statuses, outcome.liveness.starting),
    ]
    if outcome.nemesis.file_faults:
        all_checks.append(filefaults.check_file_faults(outcome.nemesis.file_faults))
    verdict = verdict_of(all_checks)
    stats = {
        **run_stats(wall, outcome.startup_seconds, outcome.run_seconds, outcome.history,
                    outcome.nemesis),
        "acknowledged_writes": len(outcome.acked),
        "refused_writes": len(outcome.refused),
        "commit_index": live_checks.committed_bound(logs, outcome.monitor.commit_max),
        "commit_index_persisted": {str(n): log.hard_state.commit
                                   for n, log in sorted(logs.items())},
        "log_length": {str(n): len(log.entries) for n, log in sorted(logs.items())},
        "snapshot_index": {str(n): log.snapshot_index for n, log in sorted(logs.items())},
        "snapshots": live_checks.snapshot_events([cluster.log_path(n) for n in cluster.members]),
        "terms_with_a_leader_seen": len(outcome.monitor.leaders),
        "monitor_rounds": outcome.monitor.rounds,
        "nodes": cluster.statistics(),
        "liveness": outcome.liveness.to_json(),
        "file_faults": [o.to_json() for o in outcome.nemesis.file_faults],
    }
    live_info = {
        **network_info,
        "nemeses_supported": list(supported_nemeses(options)),
        "clock_model": "clock faults change the rate of each node's Trio clock (ticks, "
                       "timeouts, leases, and the leader time stamped into writes for "
                       "session expiry) and bump or strobe its wall clock (time.time, which "
                       "only a new cluster's first leader reads) through "
                       "harness.live.clocked",
        "crash_model": ("kill is a process crash (what a node wrote survives, synced or "
                        "not); disk is a power loss: nodes run under harness.live.lazyfs, "
                        "which holds unsynced writes in the node's memory until fsync, so "
                        "killing it loses them (torn: a prefix of the newest one is kept)"
                        if cluster.lazy_disk else
                        "kill is SIGKILL: the page cache survives, so unsynced writes are not "
                        "lost (a process crash, not a power loss)"),
        "bug": options.bug or None,
        "python": sys.executable,
        "transport": ("plain TCP (raftlib serve --insecure): the test network is private to "
                      "this machine" if "--insecure" in serve_flags() else "raftlib's default"),
    }
    results = run_results(
        options, verdict, all_checks, stats, command, out_dir,
        object_under_test=f"raftlib {raftlib_version()}: serve processes (raftlib.kv over "
                          "RESP, exactly-once sessions)",
        target={"name": "raftlib", "version": f"raftlib {raftlib_version()}"},
        live=live_info)
    jsonl = save_run(run_dir, results, outcome.history, schedule, linearizable,
                     options.workload)
    line = _one_line(options, all_checks, verdict, stats, network_info, wall, out_dir)
    return RunReport(verdict, line, out_dir, results, jsonl)


def _mechanisms(options: RunOptions) -> str:
    """How loss and delay were made, when the run has them (both weaker than the sim's)."""
    parts = []
    if "loss" in options.nemesis:
        parts.append("loss: ebpf packet drop")
    if "delay" in options.nemesis:
        parts.append("delay: relay (stream, weaker)")
    if "clock" in options.nemesis:
        parts.append("clock: timer rate, wall bump/strobe")
    if "disk" in options.nemesis:
        parts.append("disk: lazyfs (unsynced writes held in the node)")
    return "".join(f"; {p}" for p in parts)


def _one_line(
    options: RunOptions, all_checks: list[Check], verdict: str, stats: dict[str, Any],
    network_info: dict[str, Any], wall: float, out_dir: Path | None,
) -> str:
    ops = stats["operations"]
    faults = ", ".join(f"{k}x{v}" for k, v in stats["faults_started"].items()) or "none"
    failing = "; ".join(f"{c.name}: {c.summary}" for c in all_checks if c.valid is not True)
    detail = f" ({failing})" if failing else ""
    damaged: dict[str, int] = {}
    for o in stats["file_faults"]:
        damaged[o["result"]] = damaged.get(o["result"], 0) + 1
    files = ("; damaged files: " + ", ".join(f"{n} {r}" for r, n in sorted(damaged.items()))
             if damaged else "")
    where = f" -> {out_dir}" if out_dir is not None else ""
    return (
        f"{verdict.upper()}{detail}: live, seed {options.seed}, {options.workload}, "
        f"{f'bug {options.bug}, ' if options.bug else ''}"
        f"{options.nodes} nodes, {ops['invoke']} ops ({ops['ok']} ok, {ops['fail']} fail, "
        f"{ops['info']} info), faults {faults} (of {nemesis_text(options.nemesis)}); "
        f"partitions: {network_info['partitions']}{_mechanisms(options)}{files}; "
        f"{stats['run_seconds']:.1f} s run in {wall:.1f} s{where}"
    )
