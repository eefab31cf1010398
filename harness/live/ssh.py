"""Nodes on other hosts, reached over SSH as Jepsen reaches its nodes (``--ssh-hosts``).

One node per host (``--ssh-hosts h1,h2,h3``: node N on the N-th), each a ``raftlib serve``
process started over SSH (asyncssh, a maintained SSH library; user ``--ssh-user``, private key
``--ssh-key``, host keys checked against ``--ssh-known-hosts`` when given). What the hosts
need: a POSIX shell with ``kill``, ``tail``, ``mktemp``, ``ls`` and ``rm``; ``nft`` (nftables)
for partitions; SFTP; and raftlib at the same path as on this machine (the harness's own
interpreter path and ``PYTHONPATH``, or ``--ssh-python``). Nodes listen for peers on the
address the harness resolves each host name to, port ``RAFT_PORT``; their client port listens
on 127.0.0.1 of their host, and the harness reaches it through an SSH port forward (as the
namespace relays do: client traffic is never cut).

Faults: ``partition`` is packet filtering on each host, Jepsen's way: an nftables table
``NFT_TABLE`` of the harness's own whose input chain drops every packet from the blocked
peers' addresses (silence, not errors); one ``nft -f`` transaction per host replaces it, and
healing deletes it. ``kill`` is SIGKILL and ``pause`` SIGSTOP/SIGCONT, sent with ``kill`` over
SSH. The others are refused (``SSH_NEMESES`` in ``harness.live.remote``).

Each host gets a temporary directory (``mktemp -d /tmp/raft-harness-ssh-XXXXXXXX``) holding
its node's data directory and log. When the run ends, normally, on an error or on Ctrl-C,
``open_ssh_network`` kills whatever node process still runs there, deletes the filter table,
fetches the node's log, data directory (the safety and durability checks read it) and a
listing of it into the run directory (``nodes/node-N.log``, ``nodes/node-N/``,
``nodes/node-N.files.txt``), removes the temporary directory and closes the connections. A
harness killed outright (SIGKILL) leaves them; only one SSH run from this machine runs at a
time (``LOCK_NAME``), so runs of a campaign never share the hosts' ports.

asyncssh runs on asyncio; the harness on Trio. The connections live on an asyncio loop in a
thread of their own, and each call from the harness waits (with a bound) for its answer, as
the netlink calls of ``harness.live.net`` do: a partition is applied whole before any other
task of the run goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from harness.live import filelock
from harness.live.net import CLIENT_PORT, RAFT_PORT, Link, LiveSetupError
from harness.live.remote import Completed, HostProcess, signal_name
from harness.live.shaper import Delay
from harness.options import SSH_PORT, RunOptions, ssh_host_list
from raftlib.supervisor import CUT_NOTE, REAP_SECONDS_MAX

with warnings.catch_warnings():
    # asyncssh imports DSA support, which cryptography marks deprecated on import.
    warnings.simplefilter("ignore", UserWarning)
    import asyncssh

T = TypeVar("T")

NFT_TABLE = "raft_harness"
SSH_USER = "root"  # who logs in when --ssh-user is not given (nft needs root)
TEMP_PREFIX = "raft-harness-ssh-"
LOCK_NAME = "raft-harness-ssh.lock"
# How long a run waits for another SSH run from this machine to finish.
LOCK_WAIT_SECONDS_MAX = 300.0
# Bounds of each kind of exchange with a host: connecting (and logging in), one short
# command, a spawned node saying its pid, fetching a node's files back.
CONNECT_SECONDS_MAX = 10.0
COMMAND_SECONDS_MAX = 10.0
SPAWN_SECONDS_MAX = 10.0
FETCH_SECONDS_MAX = 120.0
# The exit status given to a node whose SSH channel closed without one (the connection was
# lost): ssh(1)'s own status for that.
LOST_STATUS = 255
# Variables of the nodes' environment passed to the remote command (the rest of this
# machine's environment means nothing there).
ENV_FORWARDED = ("PYTHONPATH",)
# Ends the input of a command run by a host's control shell.
HEREDOC_END = "RAFT_HARNESS_INPUT_END"
# Spawning a node fails with this status when its log cannot be written.
LOG_FAILED_STATUS = 97


class SshError(LiveSetupError):
    """A host could not do what the harness asked; ``str()`` is one line naming it."""


def filter_script(sources: Sequence[str]) -> str:
    """The ``nft -f`` transaction that makes a host drop every packet from ``sources`` (IPv4
    addresses), replacing whatever the harness had set there; no sources: no table at all.
    (Adding the table before deleting it makes the delete valid when there was none.)"""
    lines = [f"add table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}"]
    if sources:
        lines += [
            f"table inet {NFT_TABLE} {{",
            "  chain input {",
            "    type filter hook input priority filter; policy accept;",
            f"    ip saddr {{ {', '.join(sorted(sources))} }} drop",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def spawn_command(argv: Sequence[str], *, log: str, marker: str,
                  env: Mapping[str, str]) -> str:
    """The remote shell command that starts a node: the start marker appended to ``log`` (on
    a line of its own, said to be cut when the previous output was cut mid-line), its pid on
    stdout, then ``exec`` (so the pid is the node's own) with its output appended to ``log``.
    """
    q = shlex.quote
    cut = CUT_NOTE.decode()
    settings = [f"{name}={env[name]}" for name in ENV_FORWARDED if env.get(name)]
    return (
        f'if [ -s {q(log)} ] && [ -n "$(tail -c 1 {q(log)})" ]; '
        f"then printf '\\n%s%s\\n' {q(marker)} {q(cut)}; "
        f"else printf '%s\\n' {q(marker)}; fi >> {q(log)} || exit {LOG_FAILED_STATUS}; "
        f"echo $$; exec env {shlex.join([*settings, *argv])} >> {q(log)} 2>&1 < /dev/null"
    )


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _LoopThread:
    """An asyncio loop on a thread of its own; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="raft-harness-ssh")
        self._thread.start()

    def call(self, awaitable: Awaitable[T], seconds: float, what: str) -> T:
        future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self.loop)
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise SshError(f"{what}: no answer within {seconds:g} s") from None

    def spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(SshError):
            self.call(cancel_rest(), COMMAND_SECONDS_MAX, "ssh: stopping the connection loop")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=COMMAND_SECONDS_MAX)
        if not self._thread.is_alive():
            self.loop.close()


class SshProcess:
    """A node process on a host: its pid there and its exit status, which sshd reports on
    the SSH channel the process was started on (as a signal's name after a kill)."""

    stdout = None
    stdin = None

    def __init__(self, host: SshHost, pid: int, argv: Sequence[str]) -> None:
        self._host = host
        self.pid = pid
        self.args = list(argv)
        self.returncode: int | None = None
        self._exited = threading.Event()

    def exited(self, status: int) -> None:
        self.returncode = status
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        # As Popen: nothing once it has exited, since its pid may be another process's now.
        if self.returncode is None:
            self._host.signal(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class SshHost:
    """One host reached over SSH; see the module doc."""

    local = False

    def __init__(self, loop: _LoopThread, entry: str, address: str, port: int,
                 options: RunOptions, python: str) -> None:
        self._loop = loop
        self.name = entry  # as --ssh-hosts gives it
        self.address = address  # IPv4: where the other nodes reach it, what filters name
        self.port = port
        self._options = options
        self.python = python
        self.root = ""  # its temporary directory, once made
        self.filtered = False  # an nft table of the harness may exist there
        self.processes: list[SshProcess] = []
        self.client_port = 0  # this machine's end of the forward to its client port
        self._conn: asyncssh.SSHClientConnection | None = None
        self._forward: asyncssh.SSHListener | None = None
        # The control shell (``run``), one command at a time, and the line that ends an
        # answer (random: no command's output is mistaken for it).
        self._shell: asyncssh.SSHClientProcess[str] | None = None
        self._shell_lock = asyncio.Lock()
        self._end_marker = f"raft-harness-done-{secrets.token_hex(8)}"

    # --- connecting ---------------------------------------------------------------------------

    def connect(self) -> None:
        options = self._options
        known_hosts = options.ssh_known_hosts or None
        where = f"{self.name} ({self.address}:{self.port})"
        try:
            self._conn = self._loop.call(asyncssh.connect(
                self.address, self.port, username=options.ssh_user or SSH_USER,
                client_keys=[options.ssh_key], known_hosts=known_hosts,
                agent_path=None, config=None, connect_timeout=CONNECT_SECONDS_MAX,
            ), CONNECT_SECONDS_MAX + 1, f"--ssh-hosts: connecting to {where}")
        except asyncssh.PermissionDenied:
            raise SshError(f"--ssh-key: {where} refused {options.ssh_key} for user "
                           f"{options.ssh_user or SSH_USER!r}") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise SshError(f"--ssh-known-hosts: {where}: {exc.reason}") from None
        except asyncssh.KeyImportError as exc:
            raise SshError(f"--ssh-key: cannot read {options.ssh_key}: {exc}") from None
        except (OSError, asyncssh.Error) as exc:
            raise SshError(f"--ssh-hosts: cannot reach {where}: {exc}") from None

    def _call(self, awaitable: Awaitable[T], seconds: float, what: str) -> T:
        """``awaitable`` run on the SSH loop; a lost connection or a refused channel is an
        ``SshError`` naming the host and what was asked."""
        try:
            return self._loop.call(awaitable, seconds, f"--ssh-hosts: {self.name}: {what}")
        except (OSError, asyncssh.Error) as exc:
            raise SshError(f"--ssh-hosts: {self.name}: {what}: {exc}") from None

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise SshError(f"--ssh-hosts: {self.name}: not connected")
        return self._conn

    def prepare(self, env: Mapping[str, str], partitions: bool) -> None:
        """Check what a node needs there, make the temporary directory, forward the client
        port."""
        settings = [f"{n}={env[n]}" for n in ENV_FORWARDED if env.get(n)]
        found = self.run(["env", *settings, self.python, "-c", "import raftlib"])
        if found.returncode != 0:
            said = (found.stdout.strip().splitlines() or ["no output"])[-1]
            raise SshError(f"--ssh-python: {self.name} cannot run raftlib with {self.python} "
                           f"({said}); raftlib must be at the same path on every host, or "
                           "give --ssh-python")
        if partitions and self.run(["sh", "-c", "command -v nft"]).returncode != 0:
            raise SshError(f"--ssh-hosts: {self.name} has no nft, which partitions need "
                           "(Debian: apt-get install nftables)")
        made = self.run(["mktemp", "-d", f"/tmp/{TEMP_PREFIX}XXXXXXXX"])
        if made.returncode != 0 or not made.stdout.strip():
            raise SshError(f"--ssh-hosts: {self.name}: mktemp failed: {made.stdout.strip()}")
        self.root = made.stdout.strip()
        self._forward = self._call(
            self._connection().forward_local_port("127.0.0.1", 0, "127.0.0.1", CLIENT_PORT),
            COMMAND_SECONDS_MAX, "forwarding the client port")
        self.client_port = self._forward.get_port()

    # --- the Host interface -------------------------------------------------------------------

    def path(self, local: Path) -> str:
        assert self.root, "the host's directory is made before any node starts"
        return f"{self.root}/{local.name}"

    def run(self, argv: Sequence[str], stdin: str = "") -> Completed:
        """``argv`` run by the host's control shell; its stdout and stderr together are
        ``stdout`` (a shell already running answers in milliseconds, where a new SSH session
        per command takes tens to hundreds: signals and filters are on a fault's clock)."""
        command = shlex.join(argv)
        return self._call(self._control(command, stdin), COMMAND_SECONDS_MAX, command)

    async def _control(self, command: str, stdin: str) -> Completed:
        async with self._shell_lock:
            if self._shell is None:
                self._shell = await self._connection().create_process(
                    "sh", stderr=asyncssh.STDOUT)
            shell = self._shell
            if stdin:
                assert HEREDOC_END not in stdin.splitlines(), "the input would end the heredoc"
                command += f" <<'{HEREDOC_END}'\n{stdin.rstrip(chr(10))}\n{HEREDOC_END}"
            else:
                command += " < /dev/null"  # the shell's own input is the next command
            try:
                # The end marker on a line of its own (after output without a final newline
                # too), with the command's status.
                shell.stdin.write(f"{{ {command}\n}} 2>&1; printf '\\n%s %d\\n' "
                                  f"{self._end_marker} \"$?\"\n")
                lines = []
                while True:
                    line = str(await shell.stdout.readline())
                    if not line:
                        raise SshError(f"--ssh-hosts: {self.name}: the control shell exited")
                    if line.startswith(f"{self._end_marker} "):
                        status = int(line.split()[1])
                        break
                    lines.append(line)
            except BaseException:
                # Cut short (a timeout, a lost connection): its state is unknown, so the next
                # command gets a new shell.
                self._shell = None
                shell.close()
                raise
        output = "".join(lines)
        return Completed(status, output[:-1] if output.endswith("\n") else output, "")

    def spawn(self, argv: Sequence[str], *, log: Path, marker: str,
              env: Mapping[str, str]) -> HostProcess:
        command = spawn_command(argv, log=self.path(log), marker=marker, env=env)
        proc = self._call(self._spawn(command, argv), SPAWN_SECONDS_MAX,
                          f"starting {argv[0]}")
        self.processes.append(proc)
        return proc

    async def _spawn(self, command: str, argv: Sequence[str]) -> SshProcess:
        channel = await self._connection().create_process(command)
        channel.stdin.write_eof()
        line = str(await channel.stdout.readline()).strip()
        if not line.isdigit():
            done = await channel.wait(check=False)
            raise SshError(f"--ssh-hosts: {self.name}: could not start {argv[0]} (status "
                           f"{done.returncode}): {str(done.stderr or '').strip()}")
        proc = SshProcess(self, int(line), argv)
        self._loop.spawn_task(self._watch(channel, proc))
        return proc

    async def _watch(self, channel: asyncssh.SSHClientProcess[Any], proc: SshProcess) -> None:
        status: int | None = None
        try:
            await channel.wait(check=False)
            status = channel.returncode
        except (OSError, asyncssh.Error):
            pass
        finally:
            proc.exited(LOST_STATUS if status is None else status)

    def signal(self, pid: int, sig: int) -> bool:
        return self.run(["kill", "-s", signal_name(sig), str(pid)]).returncode == 0

    def fetch(self, remote: str, local: Path) -> None:
        self._call(self._fetch(remote, local), FETCH_SECONDS_MAX, f"fetching {remote}")

    async def _fetch(self, remote: str, local: Path) -> None:
        async with self._connection().start_sftp_client() as sftp:
            if not await sftp.exists(remote):
                return  # the node never started (or never wrote there)
            await sftp.get(remote, local, recurse=True, preserve=True)

    def set_drops(self, sources: Sequence[str]) -> None:
        """Drop every packet from ``sources`` here (none: remove the harness's table)."""
        self.filtered = True
        done = self.run(["nft", "-f", "-"], stdin=filter_script(sources))
        if done.returncode != 0:
            raise SshError(f"--ssh-hosts: {self.name}: nft failed: {done.stdout.strip()}")
        if not sources:
            tables = self.run(["nft", "list", "tables"]).stdout
            assert NFT_TABLE not in tables, f"{self.name}: the filter table survived the heal"
            self.filtered = False

    # --- the end ------------------------------------------------------------------------------

    def stop_processes(self) -> list[str]:
        """SIGKILL every node process still running here and wait for each; what survived."""
        running = [p for p in self.processes if p.returncode is None]
        for proc in running:
            proc.kill()
        deadline = time.monotonic() + REAP_SECONDS_MAX
        survivors = []
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                survivors.append(f"process {proc.pid} on {self.name}")
        return survivors

    def cleanup(self) -> list[str]:
        """Kill node processes, delete the filter table, remove the temporary directory;
        what could not be removed."""
        left: list[str] = []
        if self._conn is None:
            return left
        left += self.stop_processes()
        if self.filtered:
            try:
                self.set_drops([])
            except (SshError, AssertionError) as exc:
                left.append(f"nft table {NFT_TABLE} on {self.name} ({exc})")
        if self.root:
            done = self.run(["rm", "-rf", "--", self.root])
            if done.returncode != 0:
                left.append(f"{self.root} on {self.name} ({done.stdout.strip()})")
        return left

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return

        async def close() -> None:
            if self._forward is not None:
                self._forward.close()
            conn.close()
            await conn.wait_closed()

        with contextlib.suppress(SshError, OSError, asyncssh.Error):
            self._loop.call(close(), COMMAND_SECONDS_MAX, f"--ssh-hosts: closing {self.name}")


class SshNetwork:
    """The ``LiveNetwork`` of a run whose nodes are on other hosts (see the module doc)."""

    method = "ssh (nft)"

    def __init__(self, hosts: Mapping[int, SshHost], options: RunOptions) -> None:
        self.hosts = dict(hosts)
        self.delay = Delay(random.Random(0))  # no delay faults over SSH
        self._options = options
        self._blocked: frozenset[Link] = frozenset()
        self.rule_updates = 0

    def peers_for(self, node: int) -> dict[int, tuple[str, int]]:
        return {n: (host.address, RAFT_PORT) for n, host in self.hosts.items()}

    def client_port(self, node: int) -> int:
        return CLIENT_PORT

    def client_address(self, node: int) -> str:
        return f"127.0.0.1:{self.hosts[node].client_port}"

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        return list(argv)  # the host runs it as it is

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The client forwards run on the SSH loop: nothing to serve from Trio.
        task_status.started()
        await trio.sleep_forever()

    async def set_blocked(self, links: frozenset[Link]) -> None:
        previous, self._blocked = self._blocked, links
        changed = {dst for _, dst in previous ^ links}
        if not links:
            # Healing rewrites every host: an update cut short cannot leave a block behind.
            changed = set(self.hosts)
        for dst in sorted(changed):
            sources = [self.hosts[src].address for src, d in links if d == dst]
            # Done inline (a few ms per host): no other task runs while a partition is half
            # applied.
            self.hosts[dst].set_drops(sources)
            self.rule_updates += 1

    def set_loss(self, probability: float | None) -> None:
        raise AssertionError("loss is refused before an SSH run starts (validate)")

    def describe(self) -> dict[str, object]:
        return {
            "partitions": self.method,
            "partition_mechanism": f"nftables table inet {NFT_TABLE} on each host (nft over "
                                   "SSH): its input chain drops every packet from the blocked "
                                   "peers' addresses",
            "hosts": {str(n): {"host": h.name, "address": h.address, "port": h.port,
                               "temporary_dir": h.root} for n, h in sorted(self.hosts.items())},
            "ssh_user": self._options.ssh_user or SSH_USER,
            "host_keys": (f"checked against {self._options.ssh_known_hosts}"
                          if self._options.ssh_known_hosts else "not checked"),
            "python_on_hosts": sorted({h.python for h in self.hosts.values()}),
            "client_path": "SSH port forward to each node's client port (never cut)",
            "rule_updates": self.rule_updates,
        }


def _resolve(entry: str, host: str) -> str:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise SshError(f"--ssh-hosts: cannot resolve {entry!r} to an IPv4 address: "
                       f"{exc}") from None
    return str(infos[0][4][0])


def _fetch_node_files(host: SshHost, node: int, nodes_dir: Path) -> list[str]:
    """The node's log, data directory and a listing of it, into the run directory."""
    failed = []
    for name in (f"node-{node}.log", f"node-{node}"):
        try:
            host.fetch(host.path(nodes_dir / name), nodes_dir / name)
        except (SshError, OSError) as exc:
            failed.append(f"{name} from {host.name} ({exc})")
    try:
        listing = host.run(["ls", "-lR", "--", host.path(nodes_dir / f"node-{node}")])
        (nodes_dir / f"node-{node}.files.txt").write_text(listing.stdout + "\n",
                                                          encoding="utf-8")
    except (SshError, OSError) as exc:
        failed.append(f"listing of node-{node} from {host.name} ({exc})")
    return failed


def _ssh_lock() -> contextlib.AbstractContextManager[None]:
    # One SSH run from this machine at a time: a campaign's runs would share the hosts' ports.
    return filelock.held(
        os.path.join(tempfile.gettempdir(), LOCK_NAME), 0o600, LOCK_WAIT_SECONDS_MAX,
        waiting=lambda: None,
        too_long=lambda: SshError(f"--ssh-hosts: another SSH run held {LOCK_NAME} for "
                                  f"{LOCK_WAIT_SECONDS_MAX:g} s; giving up"))


@contextlib.contextmanager
def open_ssh_network(options: RunOptions, nodes_dir: Path, env: Mapping[str, str],
                     partitions: bool) -> Iterator[SshNetwork]:
    """The run's hosts, connected and prepared; at the end (whatever ends it) the nodes'
    files are fetched into ``nodes_dir`` and everything the run left on the hosts removed."""
    entries = ssh_host_list(options.ssh_hosts)
    python = options.ssh_python or sys.executable
    with _ssh_lock():
        loop = _LoopThread()
        hosts: dict[int, SshHost] = {}
        try:
            for node, (name, port) in enumerate(entries, start=1):
                hosts[node] = SshHost(loop, f"{name}:{port}" if port != SSH_PORT else name,
                                      _resolve(name, name), port, options, python)
                hosts[node].connect()
                hosts[node].prepare(env, partitions)
            yield SshNetwork(hosts, options)
        finally:
            left = _teardown(hosts, nodes_dir)
            loop.close()
            if left:
                print(f"live: could not remove {', '.join(left)}", file=sys.stderr,
                      flush=True)


def _teardown(hosts: Mapping[int, SshHost], nodes_dir: Path) -> list[str]:
    left = []
    for host in hosts.values():
        with contextlib.suppress(SshError):
            left += host.stop_processes()
    nodes_dir.mkdir(parents=True, exist_ok=True)
    for node, host in hosts.items():
        if host.root:
            for failure in _fetch_node_files(host, node, nodes_dir):
                print(f"live: could not fetch {failure}", file=sys.stderr, flush=True)
    for host in hosts.values():
        try:
            left += host.cleanup()
        except SshError as exc:
            left.append(str(exc))
        host.close()
    return left
