"""The node processes of a live run: start, SIGKILL, SIGSTOP / SIGCONT, restart, stop.

Each node is ``python -m raftlib.cli serve`` (wrapped by the network, e.g. ``python -m
harness.live.nsexec rh-nN``, and by ``harness.live.clocked`` for clock faults) with its data
directory ``DIR/nodes/node-N`` and its output appended to ``DIR/nodes/node-N.log`` across
restarts. The processes themselves are kept by ``raftlib.supervisor.Supervisor`` (the one
process supervisor of local clusters); this module adds what a live run needs on top: the
command of each node (network wrapper, clock wrapper, seed per start) and clock control.
Events go to ``log(node, text)`` in the report's node-line vocabulary (``start``, ``crash``,
``pause``, ``resume``). The supervisor remembers every exit it caused; any other exit is a
crash of the system under test and is reported (``unexpected_exits``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

import raftlib
from harness.live.clocked import write_rate
from harness.live.net import LiveNetwork
from raftlib.supervisor import (
    POLL_SECONDS,
    REAP_SECONDS_MAX,
    STOP_SECONDS_MAX,
    NodeProcess,
    Supervisor,
    serve_argv,
)

__all__ = ["REAP_SECONDS_MAX", "STOP_SECONDS_MAX", "LiveCluster", "NodeProcess", "serve_flags"]

TICK_MS = 25.0
HELP_SECONDS_MAX = 30.0


@functools.lru_cache(maxsize=1)
def serve_flags() -> tuple[str, ...]:
    """Extra ``raftlib serve`` flags: plain TCP where the CLI demands TLS otherwise (the test
    network is private to this machine, and TLS is not what this harness tests)."""
    done = subprocess.run([sys.executable, "-m", "raftlib.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=HELP_SECONDS_MAX, check=False,
                          env=_child_env())
    return ("--insecure",) if "--insecure" in done.stdout else ()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(raftlib.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class LiveCluster:
    def __init__(
        self, nodes: int, network: LiveNetwork, run_dir: Path, seed: int,
        log: Callable[[int, str], None], on_spawn: Callable[[int], None] = lambda pid: None,
        clocked: bool = False, snapshot_flags: Sequence[str] = (),
    ) -> None:
        self.network = network
        # ``raftlib serve --snapshot-*`` flags (the run's snapshot thresholds).
        self.snapshot_flags = tuple(snapshot_flags)
        # Nodes run under harness.live.clocked (a Trio clock whose rate the harness sets).
        self.clocked = clocked
        self.run_dir = run_dir
        self.seed = seed
        self._log = log
        self.supervisor = Supervisor(run_dir / "nodes", range(1, nodes + 1), self._argv,
                                     env=_child_env(), on_event=log, on_spawn=on_spawn)
        self.members = self.supervisor.members
        # (node, exit status, what the harness had done to it) of exits it did not cause
        self.unexpected_exits = self.supervisor.unexpected_exits
        self.stop_statuses = self.supervisor.stop_statuses
        self.forced_stops = self.supervisor.forced_stops

    def data_dir(self, node: int) -> Path:
        return self.supervisor.data_dir(node)

    def log_path(self, node: int) -> Path:
        return self.supervisor.log_path(node)

    def clock_control(self, node: int) -> Path:
        return self.run_dir / "nodes" / f"node-{node}.clock.json"

    def set_clock_rate(self, node: int, rate: float) -> None:
        """Node ``node``'s Trio clock runs ``rate`` times as fast from now (restarts too)."""
        assert self.clocked, "clock faults need nodes started under harness.live.clocked"
        write_rate(self.clock_control(node), rate)
        self._log(node, f"clock rate {rate:g}")

    def client_addresses(self) -> list[str]:
        return [self.network.client_address(n) for n in sorted(self.members)]

    def _argv(self, node: int) -> list[str]:
        member = self.members[node]
        program = [sys.executable, "-m", "raftlib.cli"]
        if self.clocked:
            program = [sys.executable, "-m", "harness.live.clocked", str(self.clock_control(node)),
                       "raftlib.cli"]
        host_ports = self.network.peers_for(node)
        argv = serve_argv(
            node,
            program=program,
            peers={n: f"{host}:{port}" for n, (host, port) in host_ports.items()},
            data=self.data_dir(node),
            client_port=self.network.client_port(node),
            client_peers={n: self.network.client_address(n) for n in self.members},
            tick_ms=TICK_MS,
            # A different election jitter for every node and every restart.
            seed=(self.seed * 1009 + node * 101 + member.starts) % (2**31),
            flags=[*serve_flags(), *self.snapshot_flags],
        )
        # The network's hook: e.g. run the node inside its own network namespace.
        return self.network.command(node, argv)

    # --- acting on processes -------------------------------------------------------------

    def running(self, node: int) -> bool:
        return self.supervisor.running(node)

    def start(self, node: int) -> None:
        self.supervisor.start(node)

    def kill(self, node: int) -> bool:
        return self.supervisor.kill(node)

    def pause(self, node: int) -> bool:
        return self.supervisor.pause(node)

    def resume(self, node: int) -> bool:
        return self.supervisor.resume(node)

    def reap_unexpected(self) -> list[int]:
        """Nodes whose process exited although the harness did not stop it (a crash)."""
        return self.supervisor.reap_unexpected()

    async def stop_all(self) -> None:
        """Graceful stop: SIGCONT, SIGTERM, wait; SIGKILL whatever is still up after the bound."""
        self.supervisor.begin_stop_all(STOP_SECONDS_MAX)
        deadline = trio.current_time() + STOP_SECONDS_MAX
        while trio.current_time() < deadline and self.supervisor.stopping():
            await trio.sleep(POLL_SECONDS)
        self.supervisor.end_stop_all()

    def kill_all(self) -> None:
        """The last resort in ``finally``: no node process outlives the run."""
        self.supervisor.kill_all()

    def all_pids(self) -> list[int]:
        return self.supervisor.all_pids()

    def statistics(self) -> dict[str, object]:
        return self.supervisor.statistics()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (for tests that check cleanup)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_pids_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if pid_alive(p)]
    return alive
