"""What every live run shares, raftlib's or another target's (``harness.targets.run``): the
fault kinds this machine can inject, the run's clock, Ctrl-C and SIGTERM handling, and how a
setup error inside Trio's exception groups becomes one line. Kept apart from
``harness.live.runner`` so that target runs need not import raftlib's run (an import circle).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import trio

from harness.live import loss
from harness.live.nemesis import LIVE_NEMESES
from harness.live.net import planned_method
from harness.live.remote import SSH_NEMESES
from harness.nemesis import Schedule
from harness.options import OptionsError, RunOptions

RESULTS_VERSION = 1
# How long the nodes may take to answer and elect a leader at start.
READY_SECONDS_MAX = 30.0


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


def save_run(run_dir: Path, results: dict[str, Any], history_jsonl: str,
             schedule: Schedule, write_lincheck: Any | None) -> None:
    """Write a finished live run's files: the history, the schedule, lincheck's page when
    ``write_lincheck`` (a callable taking the path) is given, and results.json last (a run
    directory with results.json is complete)."""
    (run_dir / "history.jsonl").write_text(history_jsonl, encoding="utf-8")
    (run_dir / "nemesis.json").write_text(schedule.dumps(), encoding="utf-8")
    if write_lincheck is not None:
        write_lincheck(run_dir / "lincheck.html")
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n",
                                          encoding="utf-8")
