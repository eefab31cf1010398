"""The network of a live run: where nodes listen, how the harness reaches them, how links are cut.

Two implementations of ``LiveNetwork`` (see the package docstring for what each one means):

- ``NetnsNetwork``: a network namespace per node on a private bridge; links are cut by packet
  filtering (nft, else iptables) inside the receiving node's namespace.
- ``ProxyNetwork``: everything on 127.0.0.1; each directed link goes through a TCP proxy in
  the harness that can blackhole it.

``open_network`` chooses (``RAFT_HARNESS_PARTITIONS``), sets up, and tears down in ``finally``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

import trio

from harness.options import OptionsError

NAME_PREFIX = "rh-"
BRIDGE = "rh-br0"
SUBNET = "10.77.0"  # /24; node N is SUBNET.N, the harness SUBNET.254
HOST_ADDRESS = f"{SUBNET}.254"
RAFT_PORT = 7000
CLIENT_PORT = 6379
LOCK_PATH = "/run/raft-harness-live.lock"
# How long one ``ip``/``nft``/``iptables`` command may take, and how long a run waits for
# another live run on this machine to release the namespaces.
COMMAND_SECONDS_MAX = 10.0
LOCK_WAIT_SECONDS_MAX = 300.0
NODES_MAX = 250  # addresses SUBNET.1 .. SUBNET.250
# Bytes a proxy moves per read.
PROXY_CHUNK_BYTES_MAX = 64 * 1024
PARTITIONS_ENV = "RAFT_HARNESS_PARTITIONS"
Link = tuple[int, int]


class LiveSetupError(OptionsError):
    """The live backend cannot run here as asked; ``str()`` is one line saying why."""


class LiveNetwork(Protocol):
    method: str  # as results.json and the verdict line report it

    def peers_for(self, node: int) -> dict[int, tuple[str, int]]:
        """The ``--peers`` map node ``node`` is started with (its own entry: where it listens)."""
        ...

    def client_port(self, node: int) -> int:
        """The ``--client-port`` node ``node`` listens on (127.0.0.1 in its own network)."""
        ...

    def client_address(self, node: int) -> str:
        """HOST:PORT where the harness (and a redirect) reaches node ``node``'s client port."""
        ...

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside node ``node``'s network."""
        ...

    async def set_blocked(self, links: frozenset[Link]) -> None:
        """Make exactly ``links`` (directed [src, dst]) drop traffic; every other link works."""
        ...

    def describe(self) -> dict[str, object]: ...


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=COMMAND_SECONDS_MAX, check=False)


def _must(argv: Sequence[str], stdin: str | None = None) -> None:
    done = _run(argv, stdin)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace("\n", " ")
        raise LiveSetupError(f"live: `{' '.join(argv)}` failed: {detail}")


# --- network namespaces -------------------------------------------------------------------


def netns_unavailable_reason() -> str | None:
    """Why namespaces with packet filtering cannot be used here, or ``None`` when they can."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no `ip` command (apt-get install iproute2)"
    if filter_tool() is None:
        return "neither nft nor iptables is installed (apt-get install -y nftables)"
    return None


def filter_tool() -> str | None:
    for tool in ("nft", "iptables"):
        if shutil.which(tool) is not None:
            return tool
    return None


def _namespaces() -> list[str]:
    done = _run(["ip", "netns", "list"])
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    done = _run(["ip", "-o", "link", "show"])
    names = []
    for line in done.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def _kill_namespace_processes(namespace: str) -> None:
    done = _run(["ip", "netns", "pids", namespace])
    for word in done.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(word), 9)


def remove_leftovers() -> list[str]:
    """Delete every ``rh-`` namespace (and what runs in it) and ``rh-`` link; what was removed."""
    removed = []
    for namespace in _namespaces():
        if namespace.startswith(NAME_PREFIX):
            _kill_namespace_processes(namespace)
            _run(["ip", "netns", "del", namespace])
            removed.append(f"netns {namespace}")
    for link in _links():
        if link.startswith(NAME_PREFIX):
            _run(["ip", "link", "del", link])
            removed.append(f"link {link}")
    return removed


def leftovers() -> list[str]:
    """``rh-`` namespaces and links that exist now."""
    return [n for n in _namespaces() if n.startswith(NAME_PREFIX)] + [
        link for link in _links() if link.startswith(NAME_PREFIX)
    ]


def leftovers_when_idle() -> list[str]:
    """``rh-`` namespaces and links that exist while no live run holds the machine lock: what
    finished runs left behind (a test asserts there is nothing)."""
    with _machine_lock("to check for leftovers"):
        return leftovers()


@contextlib.contextmanager
def _machine_lock(note: str) -> Iterator[None]:
    # One namespace run per machine: the names and the subnet are fixed, and cleaning up
    # leftovers must never delete a running run's namespaces.
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS_MAX
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise LiveSetupError(f"live: another live run held {LOCK_PATH} for "
                                     f"{LOCK_WAIT_SECONDS_MAX:g} s; giving up")
            if not told:
                print(f"live: waiting for another live run ({LOCK_PATH}) {note}",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _namespace(node: int) -> str:
    return f"{NAME_PREFIX}n{node}"


def _address(node: int) -> str:
    return f"{SUBNET}.{node}"


class NetnsNetwork:
    def __init__(self, nodes: int, tool: str) -> None:
        if not 1 <= nodes <= NODES_MAX:
            raise LiveSetupError(f"live: --nodes must be in [1, {NODES_MAX}] with namespaces")
        self.nodes = nodes
        self.tool = tool
        self.method = f"netns+{tool}"
        self.removed_leftovers: list[str] = []
        self._blocked: frozenset[Link] = frozenset()
        self.blocks_applied = 0

    # --- addresses ----------------------------------------------------------------------------

    def peers_for(self, node: int) -> dict[int, tuple[str, int]]:
        return {n: (_address(n), RAFT_PORT) for n in range(1, self.nodes + 1)}

    def client_port(self, node: int) -> int:
        return CLIENT_PORT

    def client_address(self, node: int) -> str:
        return f"{_address(node)}:{CLIENT_PORT}"

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        # ``ip netns exec`` execs the command itself: the pid Popen returns is the node's.
        return ["ip", "netns", "exec", _namespace(node), *argv]

    def describe(self) -> dict[str, object]:
        return {
            "partitions": self.method,
            "subnet": f"{SUBNET}.0/24",
            "harness_address": HOST_ADDRESS,
            "bridge": BRIDGE,
            "namespaces": [_namespace(n) for n in range(1, self.nodes + 1)],
            "removed_leftovers": self.removed_leftovers,
            "filter_updates": self.blocks_applied,
        }

    # --- setup and teardown ---------------------------------------------------------------

    def setup(self) -> None:
        self.removed_leftovers = remove_leftovers()
        self._check_subnet_free()
        _must(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _must(["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE])
        _must(["ip", "link", "set", BRIDGE, "up"])
        for node in range(1, self.nodes + 1):
            self._add_node(node)

    def _check_subnet_free(self) -> None:
        done = _run(["ip", "-4", "-o", "addr", "show"])
        for line in done.stdout.splitlines():
            if f" {SUBNET}." in line:
                raise LiveSetupError(f"live: {SUBNET}.0/24 is already in use on this machine "
                                     f"({line.split()[1]}); it must be free for the namespaces")

    def _add_node(self, node: int) -> None:
        ns = _namespace(node)
        host_end, node_end = f"{NAME_PREFIX}n{node}h", f"{NAME_PREFIX}n{node}p"
        _must(["ip", "netns", "add", ns])
        _must(["ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end])
        _must(["ip", "link", "set", host_end, "master", BRIDGE, "up"])
        _must(["ip", "link", "set", node_end, "netns", ns])
        inside = ["ip", "netns", "exec", ns]
        _must([*inside, "ip", "link", "set", node_end, "name", "eth0"])
        _must([*inside, "ip", "addr", "add", f"{_address(node)}/24", "dev", "eth0"])
        _must([*inside, "ip", "link", "set", "eth0", "up"])
        _must([*inside, "ip", "link", "set", "lo", "up"])
        # The node's client port listens on 127.0.0.1 only; DNAT to a loopback address needs
        # route_localnet on the incoming interface.
        _must([*inside, "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1",
               "net.ipv4.conf.eth0.route_localnet=1"])
        if self.tool == "nft":
            _must([*inside, "nft", "-f", "-"], self._nft_tables(node))
        else:
            _must([*inside, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp",
                   "-d", _address(node), "--dport", str(CLIENT_PORT), "-j", "DNAT",
                   "--to-destination", f"127.0.0.1:{CLIENT_PORT}"])
            _must([*inside, "iptables", "-N", "RH_BLOCK"])
            _must([*inside, "iptables", "-I", "INPUT", "-j", "RH_BLOCK"])

    @staticmethod
    def _nft_tables(node: int) -> str:
        return (
            "table inet rh {\n"
            "  set blocked { type ipv4_addr; }\n"
            "  chain input { type filter hook input priority -10; policy accept;\n"
            "    ip saddr @blocked drop; }\n"
            "}\n"
            "table ip rh_nat {\n"
            "  chain pre { type nat hook prerouting priority -100; policy accept;\n"
            f"    ip daddr {_address(node)} tcp dport {CLIENT_PORT} "
            f"dnat to 127.0.0.1:{CLIENT_PORT}; }}\n"
            "}\n"
        )

    def teardown(self) -> list[str]:
        """Remove everything this network created (and any other ``rh-`` leftover)."""
        remove_leftovers()
        return leftovers()

    # --- faults -------------------------------------------------------------------------------

    def _filter_argv(self, dst: int, sources: Sequence[int]) -> tuple[list[str], str | None]:
        inside = ["ip", "netns", "exec", _namespace(dst)]
        if self.tool == "nft":
            script = "flush set inet rh blocked\n"
            if sources:
                elements = ", ".join(_address(s) for s in sources)
                script += f"add element inet rh blocked {{ {elements} }}\n"
            return [*inside, "nft", "-f", "-"], script
        # iptables: rebuild the chain in one restore so the change is atomic.
        rules = "".join(f"-A RH_BLOCK -s {_address(s)}/32 -j DROP\n" for s in sources)
        return [*inside, "iptables-restore", "--noflush"], f"*filter\n-F RH_BLOCK\n{rules}COMMIT\n"

    async def set_blocked(self, links: frozenset[Link]) -> None:
        previous, self._blocked = self._blocked, links
        changed = {dst for _, dst in previous ^ links}
        if not links:
            # Healing rewrites every node's rules: an update cut short (a cancelled run)
            # cannot leave a link blocked behind.
            changed = set(range(1, self.nodes + 1))
        errors: list[str] = []

        async def apply(dst: int) -> None:
            sources = sorted(src for src, d in links if d == dst)
            argv, stdin = self._filter_argv(dst, sources)
            done = await trio.run_process(argv, stdin=(stdin or "").encode(),
                                          capture_stdout=True, capture_stderr=True, check=False)
            if done.returncode != 0:
                errors.append(f"{' '.join(argv)}: {done.stderr.decode(errors='replace').strip()}")

        with trio.fail_after(COMMAND_SECONDS_MAX):
            async with trio.open_nursery() as nursery:
                for dst in sorted(changed):
                    nursery.start_soon(apply, dst)
        self.blocks_applied += len(changed)
        if errors:
            raise RuntimeError(f"live: packet filter update failed: {errors[0]}")


# --- the proxy fallback -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _ProxyLink:
    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self.dst = dst
        self.port = 0
        self.blocked = False
        self.live: set[trio.CancelScope] = set()  # connections being forwarded
        self.held: set[trio.CancelScope] = set()  # connections accepted while blocked

    def close_all(self, scopes: set[trio.CancelScope]) -> None:
        for scope in list(scopes):
            scope.cancel()


class ProxyNetwork:
    """The weaker fallback: per directed link a proxy on 127.0.0.1 the harness can blackhole."""

    method = "proxy (weaker)"

    def __init__(self, nodes: int, reason: str) -> None:
        self.nodes = nodes
        self.reason = reason
        ids = range(1, nodes + 1)
        self._raft_port = {n: _free_port() for n in ids}
        self._client_port = {n: _free_port() for n in ids}
        self._links = {(a, b): _ProxyLink(a, b) for a in ids for b in ids if a != b}
        self.connections = 0

    def peers_for(self, node: int) -> dict[int, tuple[str, int]]:
        peers = {node: ("127.0.0.1", self._raft_port[node])}
        for (src, dst), link in self._links.items():
            if src == node:
                if not link.port:
                    raise AssertionError("proxies must be listening before nodes start")
                peers[dst] = ("127.0.0.1", link.port)
        return peers

    def client_port(self, node: int) -> int:
        return self._client_port[node]

    def client_address(self, node: int) -> str:
        return f"127.0.0.1:{self._client_port[node]}"

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def describe(self) -> dict[str, object]:
        return {
            "partitions": self.method,
            "why_not_netns": self.reason,
            "note": "blocked links close their TCP connections and hold new ones unanswered; "
                    "senders see an error before the silence, and client traffic is never cut",
            "proxied_connections": self.connections,
        }

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for link in self._links.values():
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                link.port = listeners[0].socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, self._handler(link), listeners)
            task_status.started()

    def _handler(self, link: _ProxyLink) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(stream: trio.SocketStream) -> None:
            self.connections += 1
            with trio.CancelScope() as scope:
                async with stream:
                    # A blocked link accepts and then says nothing: the sender's bytes pile up
                    # unread until the link heals and this connection is closed.
                    scopes = link.held if link.blocked else link.live
                    scopes.add(scope)
                    try:
                        if link.blocked:
                            await trio.sleep_forever()
                        await self._forward(stream, link.dst)
                    finally:
                        scopes.discard(scope)

        return handle

    async def _forward(self, inbound: trio.SocketStream, dst: int) -> None:
        try:
            outbound = await trio.open_tcp_stream("127.0.0.1", self._raft_port[dst])
        except OSError:
            return  # the node is down: the sender sees its connection close
        async with outbound:

            async def pump(a: trio.SocketStream, b: trio.SocketStream) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                         OSError):
                    while True:
                        data = await a.receive_some(PROXY_CHUNK_BYTES_MAX)
                        if not data:
                            break
                        await b.send_all(data)
                nursery.cancel_scope.cancel()  # one direction ended: the connection is over

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, inbound, outbound)
                nursery.start_soon(pump, outbound, inbound)

    async def set_blocked(self, links: frozenset[Link]) -> None:
        for key, link in self._links.items():
            blocked = key in links
            if blocked and not link.blocked:
                link.blocked = True
                link.close_all(link.live)
            elif not blocked and link.blocked:
                link.blocked = False
                link.close_all(link.held)  # the sender reconnects through a working proxy


# --- choosing -------------------------------------------------------------------------------


def partitions_mode() -> str:
    mode = os.environ.get(PARTITIONS_ENV, "auto").strip() or "auto"
    if mode not in ("auto", "netns", "proxy"):
        raise LiveSetupError(f"{PARTITIONS_ENV}: must be auto, netns or proxy, got {mode!r}")
    return mode


@contextlib.contextmanager
def open_network(nodes: int) -> Iterator[LiveNetwork]:
    """The run's network, set up; torn down (namespaces, links, rules) when the block ends."""
    mode = partitions_mode()
    reason = netns_unavailable_reason() if mode != "proxy" else f"{PARTITIONS_ENV}=proxy"
    if mode == "netns" and reason is not None:
        raise LiveSetupError(f"live: {PARTITIONS_ENV}=netns but namespaces are unavailable: "
                             f"{reason}")
    if reason is not None:
        yield ProxyNetwork(nodes, reason)
        return
    tool = filter_tool()
    assert tool is not None
    with _machine_lock(f"to finish ({nodes} nodes)"):
        network = NetnsNetwork(nodes, tool)
        try:
            network.setup()
            yield network
        finally:
            left = network.teardown()
            if left:
                print(f"live: could not remove {', '.join(left)}", file=sys.stderr)
