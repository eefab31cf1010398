"""The machines a live run's nodes run on: this one (inside a network namespace) or another.

A ``Host`` is what the harness needs from the machine of one node, Jepsen's control-node view
of it: run a short command, spawn a long-running process and know its pid, signal a pid,
fetch a file back, clean up everything the run left there. Two implementations:

- ``LocalHost``: this machine; a node is a child process of the harness (the network's
  ``command`` hook wraps it into its namespace, ``harness.live.nsexec``), its files are the
  run directory's own;
- ``harness.live.ssh.SshHost``: another machine reached over SSH (asyncssh), its files in a
  temporary directory there, fetched back into the run directory at the end.

``HostSupervisor`` is raftlib's ``Supervisor`` with one change: it starts each node through its
host. Everything else the supervisor does (stop, kill, pause, resume, reap, noticing crashes)
goes through the process handle a host returns, which offers the part of ``subprocess.Popen``
the supervisor uses (``HostProcess``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, cast, runtime_checkable

import attrs

from raftlib.supervisor import Supervisor, write_start_marker

# One short command on a host (not a node: those are spawned) finishes within this.
COMMAND_SECONDS_MAX = 10.0
# The faults a run on hosts reached over SSH injects (``harness.live.ssh``), and why not others.
SSH_NEMESES: tuple[str, ...] = ("partition", "kill", "pause")
SSH_REFUSED = ("over SSH (--ssh-hosts) the harness injects partition, kill and pause only "
               "(use local namespaces or --backend sim for the others)")


@attrs.frozen
class Completed:
    """What a short command on a host did."""

    returncode: int
    stdout: str
    stderr: str


class HostProcess(Protocol):
    """A process a host spawned: the part of ``subprocess.Popen`` the supervisor uses."""

    pid: int
    returncode: int | None
    stdout: None
    stdin: None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        ...

    def send_signal(self, sig: int) -> None:
        """Nothing once it has exited (its pid may belong to another process by then)."""
        ...

    def kill(self) -> None: ...


class Host(Protocol):
    name: str  # as events and results name it
    # The host's processes are this machine's: the harness's ledger may record their pids
    # (for the next run to kill them after a harness killed outright).
    local: bool
    python: str  # the interpreter that runs raftlib there

    def path(self, local: Path) -> str:
        """Where a file of the run's ``nodes/`` directory lives on the host."""
        ...

    def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        """Run a short command (at most ``COMMAND_SECONDS_MAX``); what it did."""
        ...

    def spawn(self, argv: Sequence[str], *, log: Path, marker: str,
              env: Mapping[str, str]) -> HostProcess:
        """Start a long-running process: ``marker`` on a line of its own at the end of the
        host's ``log`` (said to be cut when the previous line was cut off), then ``argv``
        with stdout and stderr appended to it and ``env`` as its environment."""
        ...

    def signal(self, pid: int, sig: int) -> bool:
        """Send ``sig`` to ``pid`` on the host; False when no such process exists."""
        ...

    def fetch(self, remote: str, local: Path) -> None:
        """Copy the host's file or directory ``remote`` to ``local`` (a directory: all of it).
        """
        ...

    def cleanup(self) -> list[str]:
        """Remove everything the run left on the host (processes, filter rules, files); what
        was removed."""
        ...


@runtime_checkable
class HostedNetwork(Protocol):
    """A live network whose nodes run on hosts of their own (``LiveNetwork`` plus ``hosts``)."""

    hosts: Mapping[int, Host]


class LocalHost:
    """This machine: a node is a child of the harness, its files the run directory's own."""

    name = "localhost"
    local = True

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def path(self, local: Path) -> str:
        return str(local)

    def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_SECONDS_MAX, check=False)
        return Completed(done.returncode, done.stdout, done.stderr)

    def spawn(self, argv: Sequence[str], *, log: Path, marker: str,
              env: Mapping[str, str]) -> HostProcess:
        with log.open("ab") as out:
            write_start_marker(out, log, marker)
            # Its own session: a Ctrl-C at the terminal reaches only the harness, which then
            # stops the nodes in order.
            proc = subprocess.Popen(list(argv), stdout=out, stderr=out, env=dict(env),
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        # Popen's stdout/stdin are None here (no pipes), as HostProcess says.
        return cast(HostProcess, proc)

    def signal(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def fetch(self, remote: str, local: Path) -> None:
        source = Path(remote)
        if source.resolve() == local.resolve():
            return  # the run directory's own file
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
        else:
            shutil.copy2(source, local)

    def cleanup(self) -> list[str]:
        # Local node processes belong to the supervisor (and the ledger), the namespaces to
        # harness.live.net: nothing else is left here.
        return []


LOCAL_HOST = LocalHost()


def hosts_of(network: object, nodes: Iterable[int]) -> Mapping[int, Host]:
    """The host of each node: the network's own when it has hosts, else this machine."""
    if isinstance(network, HostedNetwork):
        hosts = network.hosts
        missing = sorted(set(nodes) - set(hosts))
        assert not missing, f"no host for nodes {missing}"
        return hosts
    return dict.fromkeys(nodes, LOCAL_HOST)


class HostSupervisor(Supervisor):
    """raftlib's supervisor, starting each node through its host (see the module doc)."""

    def __init__(
        self,
        hosts: Mapping[int, Host],
        root: Path,
        nodes: Iterable[int],
        command: Callable[[int], Sequence[str]],
        *,
        env: Mapping[str, str],
        on_event: Callable[[int, str], None],
        on_spawn: Callable[[int], None],
    ) -> None:
        super().__init__(root, nodes, command, env=env, on_event=on_event, on_spawn=on_spawn)
        self.hosts = hosts

    def _spawn(self, node: int, argv: list[str],
               marker: str) -> tuple[subprocess.Popen[bytes], str | None]:
        """On ``node``'s host; the supervisor uses only the part of Popen HostProcess offers
        (a remote pid is never this machine's: no ledger entry)."""
        host = self.hosts[node]
        assert self._env is not None, "a host supervisor is always given the nodes' environment"
        proc = host.spawn(argv, log=self.log_path(node), marker=marker, env=self._env)
        return cast("subprocess.Popen[bytes]", proc), None if host.local else f" on {host.name}"


def signal_name(sig: int) -> str:
    """``STOP`` for SIGSTOP: the name ``kill -s`` takes on any POSIX host."""
    return signal.Signals(sig).name.removeprefix("SIG")
