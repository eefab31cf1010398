"""What every live run shares, raftlib's (``harness.live.runner``) or another target's
(``harness.targets.run``): the fault kinds this machine can inject, the run's clock and event
log, the workload and its history, Ctrl-C and SIGTERM handling, the workload phase (workers
and faults until the time limit, then every fault healed), running it all under Trio, how a
setup error inside Trio's exception groups becomes one line, and the run's files and the
fields of ``results.json`` both write. Kept apart from ``harness.live.runner`` so that target
runs need not import raftlib's run (an import circle).
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import lincheck
import trio

from harness.checks import Check
from harness.history import HistoryRecorder
from harness.live import checks as live_checks
from harness.live import loss
from harness.live.clients import Worker, run_worker
from harness.live.ledger import Ledger
from harness.live.nemesis import LIVE_NEMESES, LiveNemesis
from harness.live.net import planned_method
from harness.live.remote import SSH_NEMESES
from harness.nemesis import Schedule
from harness.options import OptionsError, RunOptions, command_line
from harness.progress import RunProgress
from harness.workloads import make_workload

T = TypeVar("T")
R = TypeVar("R")

RESULTS_VERSION = 1
# How long the nodes may take to answer and elect a leader at start.
READY_SECONDS_MAX = 30.0
# How often the progress line is redrawn.
PROGRESS_SECONDS = 0.5


def supported_nemeses(options: RunOptions | None = None) -> tuple[str, ...]:
    """The fault kinds a live run on this machine can inject (with namespaces or without, or
    on the hosts of ``--ssh-hosts``)."""
    if options is not None and options.ssh_hosts:
        return SSH_NEMESES
    method, _ = planned_method()
    kinds = LIVE_NEMESES[method]
    if loss.unavailable_reason() is not None:
        kinds = tuple(k for k in kinds if k != "loss")
    return kinds


class _Clock:
    """Seconds of the run: 0 when the workload starts (trio's monotonic clock underneath)."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def __call__(self) -> float:
        if self.t0 is None:
            return 0.0
        return trio.current_time() - self.t0

    def us(self) -> int:
        return int(self() * 1_000_000)


def _is_interrupt(exc: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc))


class _StopSignals:
    """While a run is on, SIGTERM stops it as Ctrl-C does (the ``finally`` blocks kill the
    nodes and remove the namespaces; SIGTERM's default action would exit without cleaning up),
    and the first of them is remembered. Later ones are ignored, so a second Ctrl-C cannot cut
    the cleanup short."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.active = False  # handlers installed (only the main thread can)
        self._previous: dict[int, Any] = {}

    def note(self, signum: int) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def _handler(self, signum: int, frame: Any) -> None:
        # Outside Trio (setup, checking): interrupt where the program is.
        if self.received is not None:
            return  # already stopping: the cleanup must finish
        self.note(signum)
        raise KeyboardInterrupt

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
            self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _raise_setup_error(group: BaseExceptionGroup[BaseException]) -> None:
    """Trio wraps task errors in groups; a setup error inside one is still one line."""
    for leaf in _leaves(group):
        if isinstance(leaf, OptionsError):
            raise leaf from None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


# The files of a live run directory, as results.json names them.
RUN_FILES: dict[str, str] = {
    "history": "history.jsonl",
    "nemesis": "nemesis.json",
    "node_log": "nodes.log",
    "node_outputs": "nodes/node-N.log",
    "node_data": "nodes/node-N/",
}


class RunBase(Generic[T]):
    """One live run inside Trio, whatever the target: the run's clock (0 when the workload
    starts), its event log (``nodes.log``), the workload and the history its clients record,
    and the phases every target goes through. A subclass runs its cluster in ``_drive`` and
    returns its outcome (``T``)."""

    def __init__(self, options: RunOptions, events: list[str], progress: RunProgress,
                 ledger: Ledger, stop: _StopSignals) -> None:
        self.options = options
        self.progress = progress
        self.ledger = ledger
        self.stop = stop
        self.clock = _Clock()
        self._events = events
        self.workload = make_workload(options.workload, self._rng("workload"))
        self.history = HistoryRecorder(self.clock.us, self.workload.keyed)
        self._next_process = 0

    def _rng(self, name: str) -> random.Random:
        """An independent stream for one purpose, named as the simulator names its streams."""
        return random.Random(f"{self.options.seed}:{name}")

    def _stamp(self) -> str:
        # Startup lines carry no time: the run's clock starts once the cluster is ready.
        return f"[{self.clock():12.6f}]" if self.clock.t0 is not None else "[   startup  ]"

    def log(self, text: str) -> None:
        self._events.append(f"{self._stamp()} -- {text}")

    def node_log(self, node: int, text: str) -> None:
        self._events.append(f"{self._stamp()} n{node} {text}")

    def _new_process(self) -> int:
        process = self._next_process
        self._next_process += 1
        return process

    async def drive(self) -> T:
        """The run inside Trio; SIGINT and SIGTERM reach it through Trio, never mid-step."""
        async with trio.open_nursery() as guard:
            if self.stop.active:
                await guard.start(self._watch_signals)
            outcome = await self._drive()
            guard.cancel_scope.cancel()
        return outcome

    async def _drive(self) -> T:
        raise NotImplementedError

    async def _watch_signals(self, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.stop.note(signum)
                # Raised in a task, the interrupt cancels the run; its ``finally`` stops the
                # nodes (shielded) before trio.run returns.
                raise KeyboardInterrupt

    def _workload_starts(self, startup: float) -> None:
        """The cluster is ready: the run's clock starts."""
        self.clock.t0 = trio.current_time()
        self.log(f"cluster ready after {startup:.2f} s; workload and faults start")
        self.ledger.phase("workload")

    async def _report_progress(self) -> None:
        total = self.options.time_limit + self.options.recovery_time
        self.progress.phase("workload and faults")
        while True:
            done = self.clock()
            if done >= self.options.time_limit:
                self.progress.phase("recovery")
            self.progress.advance(min(done, total), total)
            await trio.sleep(PROGRESS_SECONDS)

    async def _workload_phase(
        self, nemesis: LiveNemesis, schedule: Schedule, clients: Sequence[Worker],
        recover: Callable[[float], Awaitable[R]],
    ) -> R:
        """``[0, time_limit)``: the clients run the workload at the run's rate while the
        nemesis injects ``schedule``; then every fault still on is healed and ``recover`` runs
        (given the run's time at the heal) while the clients' last operations end by their
        own timeouts. Returns what ``recover`` returns."""
        options = self.options
        started = self.clock.t0
        assert started is not None, "the workload phase follows _workload_starts"
        async with trio.open_nursery() as work:
            faults = trio.CancelScope()

            async def inject() -> None:
                with faults:
                    await nemesis.run(schedule, self.clock)

            work.start_soon(inject)
            think_mean = options.clients / options.rate
            for i, client in enumerate(clients):
                work.start_soon(run_worker, client, self.workload, self._rng(f"think:{i}"),
                                think_mean, self.clock, options.time_limit)
            await trio.sleep_until(started + options.time_limit)
            faults.cancel()
            await nemesis.heal_all(self.clock)
            healed = self.clock()
            self.log("all faults healed; recovery window starts")
            return await recover(healed)


def run_in_trio(drive: Callable[[], Awaitable[T]], *, kill_all: Callable[[], None],
                events: list[str], run_dir: Path, ledger: Ledger) -> T:
    """``trio.run(drive)``; whatever happens, every node is killed and ``nodes.log`` written."""
    try:
        return trio.run(drive)
    except BaseExceptionGroup as group:
        _raise_setup_error(group)
        raise
    finally:
        ledger.phase("stopping")
        kill_all()
        (run_dir / "nodes.log").write_text("\n".join(events) + "\n", encoding="utf-8")


def check_fields(all_checks: Sequence[Check]) -> dict[str, Any]:
    """The fields of results.json that say what each check found."""
    return {"checks": {c.name: c.to_json() for c in all_checks},
            "failed_checks": [c.name for c in all_checks if c.valid is False]}


def run_stats(wall: float, startup: float, run: float, history: HistoryRecorder,
              nemesis: LiveNemesis) -> dict[str, Any]:
    """The statistics every live run reports; each target's runner adds its own."""
    return {
        "wall_seconds": round(wall, 3),
        "startup_seconds": round(startup, 3),
        "run_seconds": round(run, 3),
        "operations": dict(history.counts),
        "faults_started": dict(sorted(nemesis.fired.items())),
        "fault_windows": nemesis.windows,
    }


def run_results(options: RunOptions, verdict: str, all_checks: Sequence[Check],
                stats: dict[str, Any], command: str | None, out_dir: Path | None,
                **fields: Any) -> dict[str, Any]:
    """results.json of a finished live run: what every run says, then ``fields`` (what the
    target under test adds). ``command`` reproduces the run (printed from the options when
    None)."""
    cmd = command or command_line([*options.to_argv(), *(["--out", str(out_dir)] if out_dir
                                                          else [])])
    return {
        "version": RESULTS_VERSION,
        "verdict": verdict,
        "seed": options.seed,
        "backend": "live",
        "options": options.to_json(),
        **fields,
        **check_fields(all_checks),
        "stats": stats,
        "command": cmd,
        "replay": f"raft-harness replay {out_dir}" if out_dir is not None else None,
    }


def save_run(run_dir: Path, results: dict[str, Any], history: HistoryRecorder,
             schedule: Schedule, linearizable: live_checks.LinearizableCheck,
             workload: str) -> str:
    """Write a finished live run's files: the history, the schedule, lincheck's page when the
    history is not linearizable, and results.json last (a run directory with results.json is
    complete). ``results["files"]`` gets the page's name. Returns the history as JSON lines."""
    lin, checked, result = linearizable
    page = lin.valid is False and checked is not None and result is not None
    results["files"] = {**RUN_FILES, "lincheck_report": "lincheck.html" if page else None}
    jsonl = history.jsonl()
    (run_dir / "history.jsonl").write_text(jsonl, encoding="utf-8")
    (run_dir / "nemesis.json").write_text(schedule.dumps(), encoding="utf-8")
    if page:
        assert checked is not None and result is not None
        lincheck.write_html(checked, result, run_dir / "lincheck.html",
                            model=live_checks.model_for(workload))
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n",
                                          encoding="utf-8")
    return jsonl
