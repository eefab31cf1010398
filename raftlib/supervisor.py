"""A local cluster of node processes: the one supervisor behind ``raftlib cluster``, the live
harness, the benchmarks and the tests.

A ``Supervisor`` owns the processes of its nodes, each started from a command the caller builds
per node (``serve_argv`` writes a ``raftlib serve`` command; a caller may wrap it, e.g. in a
network namespace or under a clock wrapper, or run another script). For every node it keeps a
data directory ``ROOT/node-N`` and a log ``ROOT/node-N.log`` (stdout and stderr, appended
across restarts, each start marked on a line of its own), and acts on the process: start, stop
(SIGTERM, SIGKILL after a bound), kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT), wait until
its port accepts connections, reap (after a signal of the caller's own). It remembers the exits
it caused; any other exit is a crash of the system under test, reported by ``reap_unexpected``,
unless the caller said it expects that node to exit (``NodeProcess.expecting_exit``). Leaving
its ``with`` block SIGKILLs whatever still runs: no node outlives its supervisor.

Events go to ``on_event(node, text)`` in the live report's node-line vocabulary (``start``,
``crash``, ``pause``, ``resume``, ``stopped``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import attrs

# A SIGKILLed process is reaped within this; a SIGTERMed node stops by itself within that.
REAP_SECONDS_MAX = 5.0
STOP_SECONDS_MAX = 10.0
# How often waits poll a process or a port, and how long one connection attempt may take.
POLL_SECONDS = 0.05
PORT_PROBE_SECONDS = 0.2
# Attempts at finding a run of consecutive free ports before giving up.
PORT_RUN_ATTEMPTS_MAX = 50
LOOPBACK = "127.0.0.1"
# Ends a start marker in a node's log when the line above it was cut off mid-line (the
# previous process died while writing it).
CUT_NOTE = b" (the line above was cut off)"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports the kernel calls free on ``host`` right now (a later bind may
    still lose a race with another program; callers that can retry should)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def consecutive_free_ports(count: int, avoid: Collection[int] = (), host: str = LOOPBACK) -> int:
    """The first of ``count`` consecutive free ports (for a cluster numbering its ports from a
    base), none of them in ``avoid``."""
    for _ in range(PORT_RUN_ATTEMPTS_MAX):
        (base,) = free_ports(1, host)
        run = range(base, base + count)
        if run.stop > 65536 or any(port in avoid for port in run):
            continue
        sockets: list[socket.socket] = []
        try:
            for port in run:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no run of {count} free ports found in {PORT_RUN_ATTEMPTS_MAX} attempts")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` accepts a TCP connection now."""
    with socket.socket() as sock:
        sock.settimeout(PORT_PROBE_SECONDS)
        return sock.connect_ex((host, port)) == 0


def addresses_text(addresses: Mapping[int, str]) -> str:
    """``{1: "h:1", 2: "h:2"}`` -> ``1=h:1,2=h:2`` (``--peers``, ``--client-peers``)."""
    return ",".join(f"{node}={address}" for node, address in sorted(addresses.items()))


def serve_argv(
    node: int,
    *,
    peers: Mapping[int, str],
    data: Path,
    client_port: int | None = None,
    client_peers: Mapping[int, str] | None = None,
    tick_ms: float | None = None,
    seed: int | None = None,
    flags: Sequence[str] = (),
    program: Sequence[str] = (sys.executable, "-m", "raftlib.cli"),
) -> list[str]:
    """The ``raftlib serve`` command of ``node``. ``program`` is what runs the CLI (a wrapper
    module may go there); ``flags`` are passed as they are (security, snapshots, core)."""
    argv = [*program, "serve", "--id", str(node), "--peers", addresses_text(peers),
            "--data", str(data)]
    if client_port is not None:
        argv += ["--client-port", str(client_port)]
    if client_peers:
        argv += ["--client-peers", addresses_text(client_peers)]
    if tick_ms is not None:
        argv += ["--tick-ms", repr(float(tick_ms))]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return [*argv, *flags]


@attrs.define
class NodeProcess:
    """One node's process (while it runs) and what was done to it."""

    node: int
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    kills: int = 0
    pauses: int = 0
    pids: list[int] = attrs.field(factory=list)
    # The caller awaits this process's exit itself (e.g. a node started on a damaged data
    # directory, which must refuse to run): ``reap_unexpected`` leaves it alone.
    expecting_exit: bool = False


def _ignore(*_: object) -> None:
    pass


def write_start_marker(log: IO[bytes], path: Path, marker: str) -> None:
    """Append ``marker`` to a node's log (open for appending at ``path``) on a line of its own,
    even after a SIGKILL cut the previous output mid-line, and saying so: a reader of the log
    must not take that line for a whole one."""
    cut = bool(log.tell()) and not _ends_with_newline(path)
    log.write(b"\n" * cut + marker.encode() + CUT_NOTE * cut + b"\n")
    log.flush()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as log:
        log.seek(-1, 2)
        return log.read(1) == b"\n"


class Supervisor:
    """The processes of nodes ``nodes``, each started as ``command(node)``; see the module doc.

    ``env`` is the children's environment (default: this process's). ``pipe_stdout`` gives each
    child a stdout pipe (``process(node).stdout``) instead of its log; stderr still goes to the
    log. ``pipe_stdin`` gives each a stdin pipe that is never written to: its end of file tells
    a child that watches it that the parent is gone, even after a SIGKILL of the parent.
    ``on_spawn(pid)`` is told every new process. Children run in their own session, so a
    Ctrl-C at the terminal reaches only the parent, which then stops them in order.
    """

    def __init__(
        self,
        root: Path,
        nodes: Iterable[int],
        command: Callable[[int], Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        pipe_stdout: bool = False,
        pipe_stdin: bool = False,
        on_event: Callable[[int, str], None] = _ignore,
        on_spawn: Callable[[int], None] = _ignore,
    ) -> None:
        self.root = root
        self.members = {node: NodeProcess(node) for node in nodes}
        self._command = command
        self._env = None if env is None else dict(env)
        self._pipe_stdout = pipe_stdout
        self._pipe_stdin = pipe_stdin
        self._stop_seconds = STOP_SECONDS_MAX
        self._on_event = on_event
        self._on_spawn = on_spawn
        # (node, exit status, what it was doing) of exits the supervisor did not cause.
        self.unexpected_exits: list[tuple[int, int, str]] = []
        # Exit status of each node's last stop; nodes that needed SIGKILL to stop.
        self.stop_statuses: dict[int, int | None] = {}
        self.forced_stops: list[int] = []
        root.mkdir(parents=True, exist_ok=True)

    # --- layout ---------------------------------------------------------------------------

    def data_dir(self, node: int) -> Path:
        return self.root / f"node-{node}"

    def log_path(self, node: int) -> Path:
        return self.root / f"node-{node}.log"

    def log_tail(self, node: int, lines: int = 3) -> str:
        """The last lines of a node's log, joined by `` | `` (for one-line errors)."""
        try:
            text = self.log_path(node).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    # --- acting on processes ----------------------------------------------------------------

    def running(self, node: int) -> bool:
        return self.members[node].proc is not None

    def process(self, node: int) -> subprocess.Popen[bytes]:
        proc = self.members[node].proc
        if proc is None:
            raise RuntimeError(f"node {node} is not running")
        return proc

    def start(self, node: int) -> int:
        """Start ``node`` unless it runs; return its pid."""
        member = self.members[node]
        if member.proc is not None:
            return member.proc.pid
        marker = f"--- supervisor: start #{member.starts + 1} of node {node}"
        proc, where = self._spawn(node, list(self._command(node)), marker)
        member.proc = proc
        member.starts += 1
        member.paused = False
        member.pids.append(proc.pid)
        if where is None:
            self._on_spawn(proc.pid)  # a process of this machine
        self._on_event(node, f"start #{member.starts} (pid {proc.pid}{where or ''})")
        return proc.pid

    def _spawn(self, node: int, argv: list[str],
               marker: str) -> tuple[subprocess.Popen[bytes], str | None]:
        """Run ``argv`` as ``node``'s process, its output appended to its log after ``marker``;
        the process and where it runs (None: this machine). A subclass may run it elsewhere."""
        with self.log_path(node).open("ab") as log:
            write_start_marker(log, self.log_path(node), marker)
            stdout: int | IO[bytes] = subprocess.PIPE if self._pipe_stdout else log
            proc = subprocess.Popen(
                argv, stdout=stdout, stderr=log, env=self._env,
                stdin=subprocess.PIPE if self._pipe_stdin else subprocess.DEVNULL,
                start_new_session=True,
            )
        return proc, None

    def kill(self, node: int) -> bool:
        """SIGKILL (a crash); False when the node was not running."""
        member = self.members[node]
        if member.proc is None:
            return False
        pid = member.proc.pid
        status = self.reap(node)
        member.kills += 1
        self._on_event(node, f"crash: SIGKILL (pid {pid}, status {status})")
        return True

    def reap(self, node: int) -> int:
        """SIGKILL ``node``'s process unless it has exited already, wait for it and forget it;
        its exit status. Counts and reports nothing: for a caller that caused the exit (``kill``;
        a signal of its own that a wrapper in the node acts on) or awaited it, and says so."""
        member = self.members[node]
        proc = self.process(node)
        # Popen sends nothing to a process it has reaped, so a pid reused since is safe.
        proc.send_signal(signal.SIGKILL)
        try:
            status = proc.wait(timeout=REAP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"node {node} (pid {proc.pid}) survived SIGKILL for "
                               f"{REAP_SECONDS_MAX:g} s") from None
        self._forget(member)
        return status

    def pause(self, node: int) -> bool:
        """SIGSTOP; False when the node was not running or already paused."""
        member = self.members[node]
        if member.proc is None or member.paused:
            return False
        member.proc.send_signal(signal.SIGSTOP)
        member.paused = True
        member.pauses += 1
        self._on_event(node, f"pause (SIGSTOP pid {member.proc.pid})")
        return True

    def resume(self, node: int) -> bool:
        """SIGCONT; False when the node was not paused."""
        member = self.members[node]
        if member.proc is None or not member.paused:
            return False
        member.proc.send_signal(signal.SIGCONT)
        member.paused = False
        self._on_event(node, f"resume (SIGCONT pid {member.proc.pid})")
        return True

    def stop(self, node: int, seconds: float = STOP_SECONDS_MAX) -> int | None:
        """Graceful stop of one node (SIGCONT, SIGTERM, SIGKILL after ``seconds``); its exit
        status, or None when it was not running."""
        member = self.members[node]
        if member.proc is None:
            return None
        self._stop_seconds = seconds
        self._terminate(member.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            member.proc.wait(timeout=seconds)
        return self._finish_stop(member)

    def reap_unexpected(self) -> list[int]:
        """Nodes whose process exited although the supervisor did not stop it (a crash)."""
        dead = []
        for node, member in self.members.items():
            proc = member.proc
            if member.expecting_exit:
                continue
            if proc is not None and proc.poll() is not None:
                doing = "paused" if member.paused else "running"
                self.unexpected_exits.append((node, proc.returncode, doing))
                self._on_event(node, f"crash: EXITED on its own with status {proc.returncode} "
                               f"(pid {proc.pid}); see {self.log_path(node)}")
                self._forget(member)
                dead.append(node)
        return dead

    # Stopping everything, in three steps so that an async caller can wait without blocking
    # its event loop: begin_stop_all(), poll stopping() with its own sleep, end_stop_all().

    def begin_stop_all(self, seconds: float = STOP_SECONDS_MAX) -> None:
        """SIGCONT and SIGTERM to every running node (after noting those that died alone);
        ``seconds`` is the bound the caller will wait before ``end_stop_all``."""
        self._stop_seconds = seconds
        self.reap_unexpected()
        for member in self.members.values():
            if member.proc is not None:
                self._terminate(member.proc)

    def stopping(self) -> bool:
        """Whether some node has not exited yet."""
        return any(m.proc is not None and m.proc.poll() is None for m in self.members.values())

    def end_stop_all(self) -> None:
        """SIGKILL whatever still runs; record every node's exit status."""
        for member in self.members.values():
            if member.proc is not None:
                self._finish_stop(member)

    def stop_all(self, seconds: float = STOP_SECONDS_MAX) -> None:
        """Graceful stop of every node: SIGTERM, wait up to ``seconds``, SIGKILL the rest."""
        self.begin_stop_all(seconds)
        deadline = time.monotonic() + seconds
        while self.stopping() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        self.end_stop_all()

    def kill_all(self) -> None:
        """The last resort (``finally``, leaving the ``with`` block): SIGKILL and reap."""
        for member in self.members.values():
            proc = member.proc
            if proc is None:
                continue
            try:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=REAP_SECONDS_MAX)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            self._forget(member)

    def wait_ready(self, ports: Mapping[int, int], seconds: float, host: str = LOOPBACK,
                   give_up: Callable[[], bool] = lambda: False) -> list[int]:
        """Wait until each node's port in ``ports`` accepts connections, at most ``seconds``,
        or until a node exits or ``give_up()`` says so. Returns the nodes still not ready."""
        waiting = sorted(ports)
        deadline = time.monotonic() + seconds
        while waiting and time.monotonic() < deadline and not give_up():
            waiting = [n for n in waiting if not port_open(ports[n], host)]
            if any(m.proc is not None and m.proc.poll() is not None
                   for m in self.members.values()):
                break
            if waiting:
                time.sleep(POLL_SECONDS)
        return waiting

    # --- reporting ----------------------------------------------------------------------------

    def all_pids(self) -> list[int]:
        return [pid for m in self.members.values() for pid in m.pids]

    def statistics(self) -> dict[str, object]:
        return {
            str(n): {"starts": m.starts, "kills": m.kills, "pauses": m.pauses, "pids": m.pids}
            for n, m in sorted(self.members.items())
        }

    # --- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill_all()

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            # A paused process handles SIGTERM only once it runs again.
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)

    def _finish_stop(self, member: NodeProcess) -> int | None:
        proc = member.proc
        assert proc is not None
        if proc.poll() is None:
            self.forced_stops.append(member.node)
            self._on_event(member.node, f"did not stop within {self._stop_seconds:g} s of "
                                        "SIGTERM; SIGKILL")
            proc.kill()
            proc.wait(timeout=REAP_SECONDS_MAX)
        self.stop_statuses[member.node] = proc.returncode
        self._on_event(member.node, f"stopped (status {proc.returncode})")
        self._forget(member)
        return proc.returncode

    def _forget(self, member: NodeProcess) -> None:
        proc = member.proc
        if proc is not None:
            for pipe in (proc.stdout, proc.stdin):
                if pipe is not None:
                    pipe.close()
        member.proc = None
        member.paused = False
