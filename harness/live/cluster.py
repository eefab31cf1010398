"""The node processes of a live run: start, SIGKILL, SIGSTOP / SIGCONT, restart, stop.

Each node is ``python -m raftlib.cli serve`` (wrapped by the network, e.g. ``python -m
harness.live.nsexec rh-nN``, and by harness wrappers: ``harness.live.clocked`` for clock
faults, ``harness.zoo.live`` for a zoo bug, ``harness.live.lazyfs`` for disk faults) with its
data directory ``DIR/nodes/node-N`` and its output appended to ``DIR/nodes/node-N.log`` across
restarts. The processes themselves are kept by ``raftlib.supervisor.Supervisor`` (the one
process supervisor of local clusters), which starts each through the node's host
(``harness.live.remote``: this machine, or another one reached over SSH); this module adds
what a live run needs on top: the command of each node (network wrapper, harness wrappers,
seed per start), clock control, crashes of several kinds (process crash, power loss, torn
power loss: signals the lazyfs wrapper acts on) and starts of a node expected to exit (on a
damaged data directory). Events go to ``log(node, text)`` in the report's node-line
vocabulary (``start``, ``crash``, ``pause``, ``resume``). The supervisor remembers every exit
it caused; any other exit is a crash of the system under test and is reported
(``unexpected_exits``).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import trio

import raftlib
from harness.live import lazyfs, scrape
from harness.live.clocked import ClockControl, write_control
from harness.live.net import LiveNetwork
from harness.live.remote import HostSupervisor, hosts_of
from raftlib.supervisor import (
    POLL_SECONDS,
    REAP_SECONDS_MAX,
    STOP_SECONDS_MAX,
    NodeProcess,
    serve_argv,
)

__all__ = ["CRASH_SIGNAL_SECONDS_MAX", "REAP_SECONDS_MAX", "STOP_SECONDS_MAX", "CrashKind",
           "LiveCluster", "NodeProcess", "serve_flags"]

# How long a node under harness.live.lazyfs may take to act on its crash signal (hand its
# unsynced writes to the OS, or say what it drops) and kill itself, before a plain SIGKILL.
CRASH_SIGNAL_SECONDS_MAX = 3.0
TICK_MS = 25.0
HELP_SECONDS_MAX = 30.0
# Under harness.live.lazyfs, every fsync of a node takes this long (ms) with its data still
# unsynced: a disk with slow syncs (a spinning disk or a busy SSD), so that a power loss can
# find written but unsynced data, as on real machines, not only in the microseconds a fast
# disk leaves.
SYNC_MS = 10.0


CrashKind = Literal["process", "power", "torn"]
_CRASH_SIGNALS = {"process": lazyfs.PROCESS_CRASH_SIGNAL, "power": lazyfs.POWER_LOSS_SIGNAL,
                  "torn": lazyfs.TORN_LOSS_SIGNAL}
_CRASH_WORDS = {"process": "SIGKILL", "power": "power loss: unsynced writes lost",
                "torn": "power loss: unsynced writes lost, the newest torn"}


@functools.lru_cache(maxsize=1)
def serve_flags() -> tuple[str, ...]:
    """Extra ``raftlib serve`` flags: plain TCP where the CLI demands TLS otherwise (the test
    network is private to this machine, and TLS is not what this harness tests)."""
    done = subprocess.run([sys.executable, "-m", "raftlib.cli", "serve", "--help"],
                          capture_output=True, text=True, timeout=HELP_SECONDS_MAX, check=False,
                          env=child_env())
    return ("--insecure",) if "--insecure" in done.stdout else ()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(raftlib.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class LiveCluster:
    def __init__(
        self, nodes: int, network: LiveNetwork, run_dir: Path, seed: int,
        log: Callable[[int, str], None], on_spawn: Callable[[int], None] = lambda pid: None,
        clocked: bool = False, node_flags: Sequence[str] = (), lazy_disk: bool = False,
        bug: str = "", spares: int = 0,
    ) -> None:
        # The founding voters; ``spares`` more nodes start with ``--join`` (knowing no
        # configuration) for the membership nemesis to add.
        self.founders = frozenset(range(1, nodes + 1))
        # Nodes whose machine died for good (the membership nemesis's wipe-replace): never
        # started again, since a node that lost its disk must not come back under its id.
        self.retired: set[int] = set()
        # Every node serves Prometheus /metrics on this port inside its own namespace (the
        # monitor scrapes it); None without namespaces, where the ports would collide.
        self.metrics_port: int | None = (scrape.METRICS_PORT if network.method == "netns"
                                         else None)
        self.network = network
        # ``raftlib serve`` flags for the run's snapshot thresholds and core settings.
        self.node_flags = tuple(node_flags)
        # Nodes run under harness.live.clocked (a Trio clock whose rate the harness sets).
        self.clocked = clocked
        # Nodes run under harness.live.lazyfs (unsynced writes held in the process until
        # fsync): a kill then chooses between a process crash and a power loss.
        self.lazy_disk = lazy_disk
        # A zoo bug switched on inside every node (harness.zoo.live); "" for none.
        self.bug = bug
        self.run_dir = run_dir
        self.seed = seed
        self._log = log
        ids = range(1, nodes + spares + 1)
        # The machine of each node (harness.live.remote): this one unless the network has
        # hosts of its own (nodes reached over SSH).
        self.hosts = hosts_of(network, ids)
        self.supervisor = HostSupervisor(self.hosts, run_dir / "nodes", ids, self._argv,
                                         env=child_env(), on_event=log, on_spawn=on_spawn)
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
        self.set_clock(node, ClockControl(rate=rate))

    def set_clock(self, node: int, value: ClockControl) -> None:
        """Node ``node``'s clocks from now (restarts too): timer rate, wall-clock bump/strobe."""
        assert self.clocked, "clock faults need nodes started under harness.live.clocked"
        write_control(self.clock_control(node), value)
        wall = ""
        if value.offset_s:
            wall += f", wall clock bumped {value.offset_s:+g} s"
        if value.strobe_period_ms:
            wall += (f", wall clock strobing {value.strobe_delta_s:+g} s every "
                     f"{value.strobe_period_ms:g} ms")
        self._log(node, f"clock rate {value.rate:g}{wall}")

    def raft_address(self, node: int) -> str:
        """Where the other nodes reach ``node`` (the same address from each of them with
        namespaces, relays included; per-link proxies have none, hence no member nemesis)."""
        other = min(n for n in self.members if n != node)
        host, port = self.network.peers_for(other)[node]
        return f"{host}:{port}"

    def client_addresses(self) -> list[str]:
        return [self.network.client_address(n) for n in sorted(self.members)]

    def _argv(self, node: int) -> list[str]:
        member = self.members[node]
        # Harness-owned wrappers, each running the next module as __main__; clocked first,
        # so that it replaces time.time before anything imports raftlib.
        host = self.hosts[node]
        chain = [
            *(["harness.live.clocked", host.path(self.clock_control(node))]
              if self.clocked else []),
            *(["harness.zoo.live", self.bug] if self.bug else []),
            *(["harness.live.lazyfs", "--sync-ms", repr(SYNC_MS)] if self.lazy_disk else []),
            "raftlib.cli",
        ]
        program = [host.python, "-m", *chain]
        host_ports = self.network.peers_for(node)
        # A founder knows the founders (its voters); a spare knows them and itself, and joins.
        known = self.founders | {node}
        join = [] if node in self.founders else ["--join"]
        argv = serve_argv(
            node,
            program=program,
            peers={n: f"{host}:{port}" for n, (host, port) in host_ports.items() if n in known},
            data=Path(host.path(self.data_dir(node))),
            client_port=self.network.client_port(node),
            client_peers={n: self.network.client_address(n) for n in self.members if n in known},
            tick_ms=TICK_MS,
            # A different election jitter for every node and every restart.
            seed=(self.seed * 1009 + node * 101 + member.starts) % (2**31),
            flags=[*serve_flags(), *self.node_flags, *join,
                   *([] if self.metrics_port is None else
                     ["--metrics-port", str(self.metrics_port)])],
        )
        # The network's hook: e.g. run the node inside its own network namespace.
        return self.network.command(node, argv)

    # --- acting on processes -------------------------------------------------------------

    def running(self, node: int) -> bool:
        return self.supervisor.running(node)

    def start(self, node: int) -> None:
        if node in self.retired:
            return  # a kill window's end restarts what it killed: not a dead machine
        self.supervisor.start(node)

    def retire(self, node: int) -> None:
        """``node``'s machine died with its disk: it is stopped and never started again (its
        data directory stays as the dead disk left it, for the safety checks to read)."""
        self.kill(node)
        self.retired.add(node)
        self._log(node, "retired: its disk is lost, it never runs again under this id")

    def kill(self, node: int, how: CrashKind = "process") -> bool:
        return bool(self.kill_many([node], how))

    def kill_many(self, nodes: Sequence[int], how: CrashKind = "process") -> list[int]:
        """Crash ``nodes`` at once (the ones running; returned): ``process`` keeps what each
        wrote (the page cache survives a SIGKILL); ``power`` loses every write it had not
        synced, and ``torn`` too but keeps a prefix of its newest unsynced write (both need
        ``lazy_disk``). Every node gets its signal before the harness waits for any, so one
        power loss hits them within the same moment."""
        assert how == "process" or self.lazy_disk, "power losses need harness.live.lazyfs"
        hit = [n for n in nodes if self.running(n)]
        for node in hit:
            member = self.members[node]
            proc = self.supervisor.process(node)
            if self.lazy_disk and not (how == "power" and member.paused):
                # The node's layer acts on its signal, then SIGKILLs itself. A paused node is
                # resumed for it (a power loss of a paused node needs nothing from it).
                if member.paused:
                    proc.send_signal(signal.SIGCONT)
                proc.send_signal(_CRASH_SIGNALS[how])
            else:
                proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + CRASH_SIGNAL_SECONDS_MAX
        for node in hit:
            self._reap_killed(node, how, deadline)
        return hit

    def _reap_killed(self, node: int, how: CrashKind, deadline: float) -> None:
        member = self.members[node]
        proc = self.supervisor.process(node)
        said = ""
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            said = f"; it did not act on its crash signal within {CRASH_SIGNAL_SECONDS_MAX:g} s"
        status = self.supervisor.reap(node)  # SIGKILL first if it did not act in time
        member.kills += 1
        self._log(node, f"crash: {_CRASH_WORDS[how]} (pid {proc.pid}, status {status}){said}")

    async def run_until_exit(self, node: int, seconds: float) -> tuple[int | None, list[str]]:
        """Start ``node`` and wait (at most ``seconds``) for it to exit by itself, as a node
        started on a damaged directory must; returns its status (None: still running, then
        killed) and what it printed in this start."""
        member = self.members[node]
        member.expecting_exit = True
        try:
            self.start(node)
            proc = self.supervisor.process(node)
            deadline = trio.current_time() + seconds
            while proc.poll() is None and trio.current_time() < deadline:
                await trio.sleep(POLL_SECONDS)
            status = proc.poll()
            self.supervisor.reap(node)  # SIGKILL first if it is still running
        finally:
            member.expecting_exit = False
        text = self.log_path(node).read_text(encoding="utf-8", errors="replace")
        marker = f"--- supervisor: start #{member.starts} of node {node}"
        said = text.rsplit(marker, 1)[-1].splitlines()[1:]
        self._log(node, f"exit after start on a damaged directory: status {status}: "
                  f"{said[-1] if said else '(nothing said)'}")
        return status, [line for line in said if line.strip()]

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
