"""The network of a live run: where nodes listen, how the harness reaches them, how links are cut.

Two implementations of ``LiveNetwork`` (see the package docstring for what each one means):

- ``NetnsNetwork`` (root on Linux): a network namespace per node on a private bridge, all made
  through netlink from Python (pyroute2), so no ``ip``, ``nft`` or ``iptables`` binary is
  needed. A cut link is a policy-routing rule in the receiving node's namespace that
  blackholes every packet from the sender: real packet loss at the kernel, silence for TCP.
- ``ProxyNetwork``: everything on 127.0.0.1; each directed link goes through a TCP proxy in
  the harness that can blackhole it (the weaker fallback when namespaces are not possible).

``open_network`` chooses (``RAFT_HARNESS_PARTITIONS``), sets up, and tears down in ``finally``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import random
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import trio

from harness.live import filelock, ledger, netns
from harness.live.shaper import Delay, pump_both
from harness.options import OptionsError

NAME_PREFIX = "rh-"
BRIDGE = "rh-br0"
SUBNET = "10.77.0"  # /24; node N is SUBNET.N, the harness SUBNET.254
HOST_ADDRESS = f"{SUBNET}.254"
RAFT_PORT = 7000
CLIENT_PORT = 6379
LOCK_PATH = "/run/raft-harness-live.lock"
# How long a run waits for another live run on this machine to release the namespaces.
LOCK_WAIT_SECONDS_MAX = 300.0
NODES_MAX = 250  # addresses SUBNET.1 .. SUBNET.250
# Connections a client relay accepts at once before the kernel queues them.
RELAY_BACKLOG_CONNECTIONS = 128
# Node N reaches peer M through the harness's relay on 127.0.0.1:(base + M) inside N's
# namespace (only in runs with delay faults).
PEER_RELAY_PORT_BASE = 7100
PARTITIONS_ENV = "RAFT_HARNESS_PARTITIONS"
# How long removing leftovers waits for killed processes to exit and for the kernel to
# dismantle removed namespaces, and how often it looks.
LEFTOVER_WAIT_SECONDS_MAX = 10.0
LEFTOVER_POLL_SECONDS = 0.05
# Policy-routing priorities inside a node's namespace. The kernel's rule 0 ("lookup local")
# delivers every packet addressed to the node before any later rule is read, so setup moves
# it behind the partition rules: blocks first, then local delivery, then the main table.
BLOCK_RULE_PRIORITY = 100
LOCAL_RULE_PRIORITY = 1000
LOCAL_TABLE = 255
# A blocked link's rule action is "blackhole": it fails the input route lookup, and the kernel
# drops the packet without an ICMP answer, so the sender sees silence (a test checks it).
Link = tuple[int, int]
# The harness's end of node N's veth; it goes away by itself with the node's namespace.
VETH_HOST_END = re.compile(re.escape(NAME_PREFIX) + r"n[0-9]+h")


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

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the harness side of the network (proxies, relays) until cancelled."""
        ...

    async def set_blocked(self, links: frozenset[Link]) -> None:
        """Make exactly ``links`` (directed [src, dst]) drop traffic; every other link works."""
        ...

    def set_loss(self, probability: float | None) -> None:
        """Drop each packet between nodes with ``probability`` (``None``: no loss)."""
        ...

    delay: Delay  # what every link between nodes adds while a delay fault is on

    def describe(self) -> dict[str, object]: ...


# --- network namespaces -------------------------------------------------------------------


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or ``None`` when they can."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return "not root"
    if importlib.util.find_spec("pyroute2") is None:
        return "pyroute2 is not installed (pip install 'raft-toolkit[harness]')"
    if not os.path.exists("/proc/self/ns/net"):
        return "the kernel has no network namespaces"
    return None


def _rtnl(namespace: str | None = None) -> Any:
    # Imported here: pyroute2 is needed only where namespaces are used.
    from harness.live.rtnl import Rtnl

    return Rtnl(namespace)


def _links() -> list[str]:
    with _rtnl() as rt:
        return list(rt.links())


def remove_leftovers() -> list[str]:
    """Delete every ``rh-`` namespace (and what runs in it) and ``rh-`` link; what was removed.

    In order, waiting at each step: the processes exit (their sockets hold the namespace),
    the namespaces go, the kernel dismantles them in the background (taking their veths
    along), and only then is anything left deleted by name, so a new run never creates
    links while the kernel still dismantles old ones of the same names.
    """
    from harness.live.rtnl import NetlinkFailure

    removed = []
    doomed = [name for name in netns.names() if name.startswith(NAME_PREFIX)]
    pids = [pid for name in doomed for pid in netns.kill_inside(name)]
    _wait_until(lambda: not any(_pid_exists(pid) for pid in pids), LEFTOVER_WAIT_SECONDS_MAX)
    for name in doomed:
        netns.remove(name)
        removed.append(f"netns {name}")
    with _rtnl() as rt:
        veths = {n for n in rt.links() if VETH_HOST_END.fullmatch(n)}
        _wait_until(lambda: not veths & set(rt.links()), LEFTOVER_WAIT_SECONDS_MAX)
        for name, index in rt.links().items():
            if name.startswith(NAME_PREFIX):
                try:
                    rt.delete_link(index)
                except NetlinkFailure as exc:
                    if exc.code != errno.ENODEV:
                        raise
                    continue  # a veth end went away with its peer meanwhile
                removed.append(f"link {name}")
    return removed


def _pid_exists(pid: int) -> bool:
    return ledger.start_time(pid) is not None  # a zombie does not count: it holds nothing


def _wait_until(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(LEFTOVER_POLL_SECONDS)
    return True


def leftovers() -> list[str]:
    """``rh-`` namespaces and links that exist now."""
    return [n for n in netns.names() if n.startswith(NAME_PREFIX)] + [
        link for link in _links() if link.startswith(NAME_PREFIX)
    ]


def leftovers_when_idle() -> list[str]:
    """``rh-`` namespaces and links that exist while no live run holds the machine lock: what
    finished runs left behind (a test asserts there is nothing)."""
    with _machine_lock("to check for leftovers"):
        return leftovers()


def _machine_lock(note: str) -> contextlib.AbstractContextManager[None]:
    # One namespace run per machine: the names and the subnet are fixed, and cleaning up
    # leftovers must never delete a running run's namespaces.
    return filelock.held(
        LOCK_PATH, 0o644, LOCK_WAIT_SECONDS_MAX,
        waiting=lambda: print(f"live: waiting for another live run ({LOCK_PATH}) {note}",
                              file=sys.stderr, flush=True),
        too_long=lambda: LiveSetupError(f"live: another live run held {LOCK_PATH} for "
                                        f"{LOCK_WAIT_SECONDS_MAX:g} s; giving up"))


def namespace_of(node: int) -> str:
    return f"{NAME_PREFIX}n{node}"


def address_of(node: int) -> str:
    return f"{SUBNET}.{node}"


class NetnsNetwork:
    method = "netns"

    def __init__(self, nodes: int, *, relay_peers: bool = False,
                 rng: random.Random | None = None) -> None:
        if not 1 <= nodes <= NODES_MAX:
            raise LiveSetupError(f"live: --nodes must be in [1, {NODES_MAX}] with namespaces")
        self.nodes = nodes
        self.relay_peers = relay_peers  # peer traffic through the delay line (delay faults)
        self.delay = Delay(rng or random.Random(0))
        self.loss: float | None = None
        self.loss_updates = 0
        self._peer_relays: dict[Link, socket.socket] = {}  # (src, dst) -> listener in src
        self.removed_leftovers: list[str] = []
        self._blocked: frozenset[Link] = frozenset()
        self.rule_updates = 0
        self.relayed_connections = 0
        self._inner: dict[int, Any] = {}  # node -> Rtnl inside its namespace
        self._relays: dict[int, socket.socket] = {}  # node -> listening socket (127.0.0.1)

    # --- addresses ----------------------------------------------------------------------------

    def peers_for(self, node: int) -> dict[int, tuple[str, int]]:
        if not self.relay_peers:
            return {n: (address_of(n), RAFT_PORT) for n in range(1, self.nodes + 1)}
        return {n: (address_of(n), RAFT_PORT) if n == node
                else ("127.0.0.1", PEER_RELAY_PORT_BASE + n) for n in range(1, self.nodes + 1)}

    def client_port(self, node: int) -> int:
        return CLIENT_PORT

    def client_address(self, node: int) -> str:
        # The node serves clients on 127.0.0.1 inside its namespace; the harness reaches it
        # through a relay of its own whose far end is a socket created in that namespace.
        return f"127.0.0.1:{self._relays[node].getsockname()[1]}"

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        # nsexec enters the namespace and execs: the pid Popen returns is the node's own.
        return [sys.executable, "-m", "harness.live.nsexec", namespace_of(node), *argv]

    def describe(self) -> dict[str, object]:
        return {
            "partitions": self.method,
            "partition_mechanism": "policy-routing blackhole rules (netlink) in the receiving "
                                   "node's namespace: every packet from the sender is dropped",
            "subnet": f"{SUBNET}.0/24",
            "harness_address": HOST_ADDRESS,
            "bridge": BRIDGE,
            "namespaces": [namespace_of(n) for n in range(1, self.nodes + 1)],
            "removed_leftovers": self.removed_leftovers,
            "rule_updates": self.rule_updates,
            "relayed_client_connections": self.relayed_connections,
            "loss_mechanism": "eBPF classifier (bpf(2) + netlink tc) on every node's ingress: "
                              "each IPv4 packet from a peer dropped with the fault's "
                              "probability",
            "loss_updates": self.loss_updates,
            "delay_mechanism": ("userspace delay line in per-link relays (chunks, not packets; "
                                "weaker than netem)" if self.relay_peers else
                                "none (no delay fault in this run)"),
            "delayed_chunks": self.delay.chunks_delayed,
        }

    # --- setup and teardown ---------------------------------------------------------------

    def setup(self) -> None:
        from harness.live.rtnl import FR_ACT_TO_TBL

        self.removed_leftovers = remove_leftovers()
        with _rtnl() as rt:
            for index, address in rt.addresses():
                if address.startswith(f"{SUBNET}."):
                    raise LiveSetupError(f"live: {SUBNET}.0/24 is already in use on this "
                                         f"machine (interface {index}); it must be free for "
                                         "the namespaces")
            rt.add_link(BRIDGE, "bridge")
            bridge = rt.index(BRIDGE)
            rt.add_address(bridge, HOST_ADDRESS, 24)
            rt.set_link(bridge, up=True)
            for node in range(1, self.nodes + 1):
                ns = namespace_of(node)
                host_end, node_end = f"{NAME_PREFIX}n{node}h", f"{NAME_PREFIX}n{node}p"
                assert VETH_HOST_END.fullmatch(host_end)
                netns.create(ns)
                rt.add_link(host_end, "veth", peer=node_end)
                rt.set_link(rt.index(host_end), master=bridge, up=True)
                fd = os.open(netns.path(ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    rt.set_link(rt.index(node_end), netns_fd=fd)
                finally:
                    os.close(fd)
                inner = _rtnl(ns)
                self._inner[node] = inner
                eth = inner.index(node_end)
                inner.set_link(eth, name="eth0")
                inner.add_address(eth, address_of(node), 24)
                inner.set_link(eth, up=True)
                inner.set_link(inner.index("lo"), up=True)
                inner.add_rule(LOCAL_RULE_PRIORITY, FR_ACT_TO_TBL, table=LOCAL_TABLE)
                inner.delete_rule(0, FR_ACT_TO_TBL, table=LOCAL_TABLE)
        for node in range(1, self.nodes + 1):
            relay = socket.socket()
            relay.bind(("127.0.0.1", 0))
            relay.listen(RELAY_BACKLOG_CONNECTIONS)
            self._relays[node] = relay
        if self.relay_peers:
            for src in range(1, self.nodes + 1):
                for dst in range(1, self.nodes + 1):
                    if src != dst:
                        relay = netns.socket_inside(namespace_of(src))
                        relay.bind(("127.0.0.1", PEER_RELAY_PORT_BASE + dst))
                        relay.listen(RELAY_BACKLOG_CONNECTIONS)
                        self._peer_relays[(src, dst)] = relay

    def teardown(self) -> list[str]:
        """Remove everything this network created (and any other ``rh-`` leftover)."""
        for relay in [*self._relays.values(), *self._peer_relays.values()]:
            relay.close()
        for inner in self._inner.values():
            with contextlib.suppress(Exception):
                inner.close()
        self._inner.clear()
        remove_leftovers()
        return leftovers()

    # --- the client relays --------------------------------------------------------------------

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for node, relay in self._relays.items():
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(relay.dup()))
                nursery.start_soon(trio.serve_listeners, self._relay_handler(node), [listener])
            for (src, dst), relay in self._peer_relays.items():
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(relay.dup()))
                nursery.start_soon(trio.serve_listeners, self._peer_handler(src, dst),
                                   [listener])
            task_status.started()

    def _relay_handler(self, node: int) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(inbound: trio.SocketStream) -> None:
            self.relayed_connections += 1
            async with inbound:
                raw = await trio.to_thread.run_sync(netns.socket_inside, namespace_of(node))
                sock = trio.socket.from_stdlib_socket(raw)
                try:
                    await sock.connect(("127.0.0.1", CLIENT_PORT))
                except OSError:
                    sock.close()
                    return  # the node is down: the client sees its connection close
                async with trio.SocketStream(sock) as outbound:
                    await pump_both(inbound, outbound)

        return handle

    def _peer_handler(self, src: int, dst: int
                      ) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(inbound: trio.SocketStream) -> None:
            async with inbound:
                # Created in the sender's namespace: the packets leave through its eth0 with
                # its address, so partitions and loss at the receiver act on them.
                raw = await trio.to_thread.run_sync(netns.socket_inside, namespace_of(src))
                sock = trio.socket.from_stdlib_socket(raw)
                try:
                    await sock.connect((address_of(dst), RAFT_PORT))
                except OSError:
                    sock.close()
                    return  # the peer is down: the sender sees its connection close
                async with trio.SocketStream(sock) as outbound:
                    await pump_both(inbound, outbound, self.delay)

        return handle

    def set_loss(self, probability: float | None) -> None:
        from harness.live import loss
        from harness.live.rtnl import NetlinkFailure

        for node in range(1, self.nodes + 1):
            inner = self._inner[node]
            eth = inner.index("eth0")
            if self.loss is not None:
                try:
                    inner.delete_clsact(eth)  # and with it the previous classifier
                except NetlinkFailure as exc:
                    if exc.code not in (errno.ENOENT, errno.EINVAL):
                        raise
            if probability is not None:
                inner.add_clsact(eth)
                fd = loss.load(probability)
                try:
                    inner.add_ingress_bpf(eth, fd, "rh-loss")
                finally:
                    os.close(fd)  # the attached filter holds the program
        self.loss = probability
        self.loss_updates += 1

    # --- faults -------------------------------------------------------------------------------

    def _rules(self, dst: int) -> set[str]:
        """Sources blackholed in ``dst``'s namespace now, as the kernel reports them."""
        return {rule.get_attr("FRA_SRC") for rule in self._inner[dst].rules()
                if rule.get_attr("FRA_PRIORITY") == BLOCK_RULE_PRIORITY}

    def _set_sources(self, dst: int, sources: set[str]) -> None:
        from harness.live.rtnl import FR_ACT_BLACKHOLE

        inner = self._inner[dst]
        present = self._rules(dst)
        for src in sorted(present - sources):
            inner.delete_rule(BLOCK_RULE_PRIORITY, FR_ACT_BLACKHOLE, src=src, iif="eth0")
        for src in sorted(sources - present):
            inner.add_rule(BLOCK_RULE_PRIORITY, FR_ACT_BLACKHOLE, src=src, iif="eth0")
        self.rule_updates += 1

    async def set_blocked(self, links: frozenset[Link]) -> None:
        previous, self._blocked = self._blocked, links
        changed = {dst for _, dst in previous ^ links}
        if not links:
            # Healing reads back and rewrites every node's rules: an update cut short (a
            # cancelled run) cannot leave a link blocked behind.
            changed = set(range(1, self.nodes + 1))
        for dst in sorted(changed):
            sources = {address_of(src) for src, d in links if d == dst}
            # Netlink answers in microseconds: done inline, so no other task runs while a
            # partition is half applied.
            self._set_sources(dst, sources)
        if not links:
            stuck = {dst: self._rules(dst) for dst in range(1, self.nodes + 1)}
            assert not any(stuck.values()), f"live: blocks survived the heal: {stuck}"


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

    def __init__(self, nodes: int, reason: str, rng: random.Random | None = None) -> None:
        self.nodes = nodes
        self.delay = Delay(rng or random.Random(0))
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
            "delay_mechanism": "userspace delay line in the proxies (chunks, not packets; "
                               "weaker than netem)",
            "delayed_chunks": self.delay.chunks_delayed,
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
            await pump_both(inbound, outbound, self.delay)

    def set_loss(self, probability: float | None) -> None:
        raise AssertionError("loss is refused before a proxy run starts (validate)")

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


def planned_method() -> tuple[str, str | None]:
    """``("netns", None)`` or ``("proxy", why not namespaces)``: what ``open_network`` will use."""
    mode = partitions_mode()
    reason = netns_unavailable_reason() if mode != "proxy" else f"{PARTITIONS_ENV}=proxy"
    return ("proxy", reason) if reason is not None and mode != "netns" else ("netns", reason)


def partitions_mode() -> str:
    mode = os.environ.get(PARTITIONS_ENV, "auto").strip() or "auto"
    if mode not in ("auto", "netns", "proxy"):
        raise LiveSetupError(f"{PARTITIONS_ENV}: must be auto, netns or proxy, got {mode!r}")
    return mode


@contextlib.contextmanager
def open_network(nodes: int, *, relay_peers: bool = False, seed: int = 0
                 ) -> Iterator[LiveNetwork]:
    """The run's network, set up; torn down (namespaces, links, rules) when the block ends."""
    mode = partitions_mode()
    reason = netns_unavailable_reason() if mode != "proxy" else f"{PARTITIONS_ENV}=proxy"
    if mode == "netns" and reason is not None:
        raise LiveSetupError(f"live: {PARTITIONS_ENV}=netns but namespaces are unavailable: "
                             f"{reason}")
    if reason is not None:
        yield ProxyNetwork(nodes, reason, random.Random(f"{seed}:delay"))
        return
    with _machine_lock(f"to finish ({nodes} nodes)"):
        network = NetnsNetwork(nodes, relay_peers=relay_peers,
                               rng=random.Random(f"{seed}:delay"))
        try:
            network.setup()
            yield network
        finally:
            left = network.teardown()
            if left:
                print(f"live: could not remove {', '.join(left)}", file=sys.stderr)
