"""The node processes of a live run: start, SIGKILL, SIGSTOP / SIGCONT, restart, stop.

Each node is ``python -m raftlib.cli serve`` (wrapped by the network, e.g. ``python -m
harness.live.nsexec rh-nN``) with its data directory ``DIR/nodes/node-N`` and its output
appended to ``DIR/nodes/node-N.log`` across restarts. Events go to ``log(node, text)`` in the
report's node-line vocabulary (``start``, ``crash``, ``pause``, ``resume``). The cluster
remembers every exit it caused; any other exit is a crash of the system under test and is
reported (``unexpected_exits``).
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

import attrs
import trio

import raftlib
from harness.live import lazyfs
from harness.live.clocked import ClockControl, write_control
from harness.live.net import LiveNetwork

# How long a SIGKILLed process may take to be reaped, and a SIGTERMed node to stop by itself.
REAP_SECONDS_MAX = 5.0
# How long a node under harness.live.lazyfs may take to act on its crash signal (hand its
# unsynced writes to the OS, or say what it drops) and kill itself, before a plain SIGKILL.
CRASH_SIGNAL_SECONDS_MAX = 3.0
STOP_SECONDS_MAX = 10.0
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


@attrs.define
class NodeProcess:
    node: int
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    kills: int = 0
    pauses: int = 0
    pids: list[int] = attrs.field(factory=list)
    # Started on a damaged directory to see it refuse: its exit is expected, not a crash.
    expecting_exit: bool = False


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


def _peers_text(peers: dict[int, tuple[str, int]]) -> str:
    return ",".join(f"{n}={host}:{port}" for n, (host, port) in sorted(peers.items()))


class LiveCluster:
    def __init__(
        self, nodes: int, network: LiveNetwork, run_dir: Path, seed: int,
        log: Callable[[int, str], None], on_spawn: Callable[[int], None] = lambda pid: None,
        clocked: bool = False, snapshot_flags: Sequence[str] = (), lazy_disk: bool = False,
        bug: str = "",
    ) -> None:
        self.network = network
        # ``raftlib serve --snapshot-*`` flags (the run's snapshot thresholds).
        self.snapshot_flags = tuple(snapshot_flags)
        # Nodes run under harness.live.clocked (a Trio clock whose rate the harness sets).
        self.clocked = clocked
        # Nodes run under harness.live.lazyfs (unsynced writes held in the process until
        # fsync): a kill then chooses between a process crash and a power loss.
        self.lazy_disk = lazy_disk
        # A zoo bug switched on inside every node (harness.zoo.live); "" for none.
        self.bug = bug
        self._on_spawn = on_spawn  # told every new node pid (the ledger records it)
        self.run_dir = run_dir
        self.seed = seed
        self._log = log
        self.members = {n: NodeProcess(n) for n in range(1, nodes + 1)}
        # (node, exit status, what the harness had done to it) of exits it did not cause
        self.unexpected_exits: list[tuple[int, int, str]] = []
        self.stop_statuses: dict[int, int | None] = {}
        self.forced_stops: list[int] = []
        (run_dir / "nodes").mkdir(parents=True, exist_ok=True)

    def data_dir(self, node: int) -> Path:
        return self.run_dir / "nodes" / f"node-{node}"

    def log_path(self, node: int) -> Path:
        return self.run_dir / "nodes" / f"node-{node}.log"

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

    def client_addresses(self) -> list[str]:
        return [self.network.client_address(n) for n in sorted(self.members)]

    def _argv(self, node: int) -> list[str]:
        member = self.members[node]
        client_peers = ",".join(f"{n}={self.network.client_address(n)}" for n in self.members)
        # Harness-owned wrappers, each running the next module as __main__; clocked first,
        # so that it replaces time.time before anything imports raftlib.
        chain = [
            *(["harness.live.clocked", str(self.clock_control(node))] if self.clocked else []),
            *(["harness.zoo.live", self.bug] if self.bug else []),
            *(["harness.live.lazyfs", "--sync-ms", repr(SYNC_MS)] if self.lazy_disk else []),
            "raftlib.cli",
        ]
        wrapper = ["-m", *chain]
        argv = [
            sys.executable, *wrapper, "serve", "--id", str(node),
            "--peers", _peers_text(self.network.peers_for(node)),
            "--data", str(self.data_dir(node)),
            "--client-port", str(self.network.client_port(node)),
            "--client-peers", client_peers,
            "--tick-ms", repr(TICK_MS),
            # A different election jitter for every node and every restart.
            "--seed", str((self.seed * 1009 + node * 101 + member.starts) % (2**31)),
            *serve_flags(),
            *self.snapshot_flags,
        ]
        return self.network.command(node, argv)

    # --- acting on processes -------------------------------------------------------------

    def running(self, node: int) -> bool:
        return self.members[node].proc is not None

    def start(self, node: int) -> None:
        member = self.members[node]
        if member.proc is not None:
            return
        env = _child_env()
        with self.log_path(node).open("ab") as out:
            out.write(f"--- harness: start #{member.starts + 1} of node {node}\n".encode())
            out.flush()
            member.proc = subprocess.Popen(
                self._argv(node), stdout=out, stderr=subprocess.STDOUT, env=env,
                stdin=subprocess.DEVNULL,
                # Own session: a Ctrl-C at the terminal reaches the harness only, which then
                # stops the nodes itself.
                start_new_session=True,
            )
        member.starts += 1
        member.paused = False
        member.pids.append(member.proc.pid)
        self._on_spawn(member.proc.pid)
        self._log(node, f"start #{member.starts} (pid {member.proc.pid})")

    def kill(self, node: int, how: CrashKind = "process") -> bool:
        return bool(self.kill_many([node], how))

    def kill_many(self, nodes: Sequence[int], how: CrashKind = "process") -> list[int]:
        """Crash ``nodes`` at once (the ones running; returned): ``process`` keeps what each
        wrote (the page cache survives a SIGKILL); ``power`` loses every write it had not
        synced, and ``torn`` too but keeps a prefix of its newest unsynced write (both need
        ``lazy_disk``). Every node gets its signal before the harness waits for any, so one
        power loss hits them within the same moment."""
        assert how == "process" or self.lazy_disk, "power losses need harness.live.lazyfs"
        hit = [n for n in nodes if self.members[n].proc is not None]
        for node in hit:
            member = self.members[node]
            assert member.proc is not None
            if self.lazy_disk and not (how == "power" and member.paused):
                # The node's layer acts on its signal, then SIGKILLs itself. A paused node is
                # resumed for it (a power loss of a paused node needs nothing from it).
                if member.paused:
                    member.proc.send_signal(signal.SIGCONT)
                member.proc.send_signal(_CRASH_SIGNALS[how])
            else:
                member.proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + CRASH_SIGNAL_SECONDS_MAX
        for node in hit:
            self._reap_killed(node, how, deadline)
        return hit

    def _reap_killed(self, node: int, how: CrashKind, deadline: float) -> None:
        member = self.members[node]
        proc = member.proc
        assert proc is not None
        said = ""
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            said = f"; it did not act on its crash signal within {CRASH_SIGNAL_SECONDS_MAX:g} s"
            proc.send_signal(signal.SIGKILL)
        try:
            status = proc.wait(timeout=REAP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"live: node {node} (pid {proc.pid}) survived SIGKILL for "
                               f"{REAP_SECONDS_MAX:g} s") from None
        member.proc = None
        member.paused = False
        member.kills += 1
        what = {"process": "SIGKILL", "power": "power loss: unsynced writes lost",
                "torn": "power loss: unsynced writes lost, the newest torn"}[how]
        self._log(node, f"crash: {what} (pid {proc.pid}, status {status}){said}")

    async def run_until_exit(self, node: int, seconds: float) -> tuple[int | None, list[str]]:
        """Start ``node`` and wait (at most ``seconds``) for it to exit by itself, as a node
        started on a damaged directory must; returns its status (None: still running, then
        killed) and what it printed in this start."""
        member = self.members[node]
        member.expecting_exit = True
        try:
            self.start(node)
            proc = member.proc
            assert proc is not None
            deadline = trio.current_time() + seconds
            while proc.poll() is None and trio.current_time() < deadline:
                await trio.sleep(0.05)
            status = proc.poll()
            if status is None:
                proc.kill()
                proc.wait(timeout=REAP_SECONDS_MAX)
            member.proc = None
            member.paused = False
        finally:
            member.expecting_exit = False
        text = self.log_path(node).read_text(encoding="utf-8", errors="replace")
        said = text.rsplit(f"--- harness: start #{member.starts} ", 1)[-1].splitlines()[1:]
        self._log(node, f"exit after start on a damaged directory: status {status}: "
                  f"{said[-1] if said else '(nothing said)'}")
        return status, [line for line in said if line.strip()]

    def pause(self, node: int) -> bool:
        member = self.members[node]
        if member.proc is None or member.paused:
            return False
        member.proc.send_signal(signal.SIGSTOP)
        member.paused = True
        member.pauses += 1
        self._log(node, f"pause (SIGSTOP pid {member.proc.pid})")
        return True

    def resume(self, node: int) -> bool:
        member = self.members[node]
        if member.proc is None or not member.paused:
            return False
        member.proc.send_signal(signal.SIGCONT)
        member.paused = False
        self._log(node, f"resume (SIGCONT pid {member.proc.pid})")
        return True

    def reap_unexpected(self) -> list[int]:
        """Nodes whose process exited although the harness did not stop it (a crash)."""
        dead = []
        for node, member in self.members.items():
            proc = member.proc
            if member.expecting_exit:
                continue
            if proc is not None and proc.poll() is not None:
                doing = "paused" if member.paused else "running"
                self.unexpected_exits.append((node, proc.returncode, doing))
                self._log(node, f"crash: EXITED on its own with status {proc.returncode} "
                          f"(pid {proc.pid}); see {self.log_path(node)}")
                member.proc = None
                member.paused = False
                dead.append(node)
        return dead

    async def stop_all(self) -> None:
        """Graceful stop: SIGCONT, SIGTERM, wait; SIGKILL whatever is still up after the bound."""
        self.reap_unexpected()
        for member in self.members.values():
            if member.proc is not None:
                member.proc.send_signal(signal.SIGCONT)
                member.proc.send_signal(signal.SIGTERM)
        deadline = trio.current_time() + STOP_SECONDS_MAX
        while trio.current_time() < deadline and any(
            m.proc is not None and m.proc.poll() is None for m in self.members.values()
        ):
            await trio.sleep(0.05)
        for node, member in self.members.items():
            proc = member.proc
            if proc is None:
                continue
            if proc.poll() is None:
                self.forced_stops.append(node)
                self._log(node, f"did not stop within {STOP_SECONDS_MAX:g} s of SIGTERM; "
                          "SIGKILL")
                proc.kill()
                proc.wait(timeout=REAP_SECONDS_MAX)
            self.stop_statuses[node] = proc.returncode
            self._log(node, f"stopped (status {proc.returncode})")
            member.proc = None
            member.paused = False

    def kill_all(self) -> None:
        """The last resort in ``finally``: no node process outlives the run."""
        for member in self.members.values():
            proc = member.proc
            if proc is None:
                continue
            try:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=REAP_SECONDS_MAX)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            member.proc = None

    def all_pids(self) -> list[int]:
        return [pid for m in self.members.values() for pid in m.pids]

    def statistics(self) -> dict[str, object]:
        return {
            str(n): {"starts": m.starts, "kills": m.kills, "pauses": m.pauses, "pids": m.pids}
            for n, m in sorted(self.members.items())
        }


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
