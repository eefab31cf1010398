"""A 3-node KV cluster in one Trio run over real TCP on 127.0.0.1, plain or mutual TLS, with
stop/start of single nodes; and attackers that speak the peer protocol by hand."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

import attrs
import trio

from raftlib.certs import NodeFiles
from raftlib.client import KvClient, TcpConnector
from raftlib.core.types import Role, TimeoutNow
from raftlib.node import NodeConfig
from raftlib.resp.server import ServerLimits
from raftlib.service import KvCommandHandler, serve_kv
from raftlib.storage.memory import MemoryStorage
from raftlib.supervisor import free_ports
from raftlib.transport.codec import Hello, encode_frame, encode_hello
from raftlib.transport.tcp import TcpTransport
from raftlib.transport.tls import Insecure, MutualTls, client_context, resp_server_context

TICK_SECONDS = 0.02


@attrs.define
class _Member:
    storage: MemoryStorage = attrs.field(factory=MemoryStorage)
    scope: trio.CancelScope | None = None
    handler: KvCommandHandler | None = None
    done: trio.Event = attrs.field(factory=trio.Event)


class TcpKvCluster:
    """``pki`` None: plain TCP (``Insecure``); else mutual TLS between peers and TLS clients."""

    def __init__(self, nursery: trio.Nursery, pki: Path | None, size: int = 3) -> None:
        self.nursery = nursery
        self.pki = pki
        self.ids = tuple(range(1, size + 1))
        ports = free_ports(2 * size)
        self.raft_ports = dict(zip(self.ids, ports[:size], strict=True))
        self.client_ports = dict(zip(self.ids, ports[size:], strict=True))
        self.members = {nid: _Member() for nid in self.ids}

    def client_address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.client_ports[node_id]}"

    def raft_address(self, node_id: int) -> tuple[str, int]:
        return ("127.0.0.1", self.raft_ports[node_id])

    def client_ssl(self) -> ssl.SSLContext | None:
        if self.pki is None:
            return None
        return client_context(self.pki / "ca.pem")

    def client(self, *, request_timeout_seconds: float = 1.0,
               op_timeout_seconds: float = 10.0) -> KvClient:
        return KvClient([self.client_address(n) for n in self.ids],
                        connector=TcpConnector(ssl_context=self.client_ssl()),
                        request_timeout_seconds=request_timeout_seconds,
                        op_timeout_seconds=op_timeout_seconds)

    async def start(self, node_id: int) -> None:
        member = self.members[node_id]
        member.done = trio.Event()
        config = NodeConfig(
            node_id=node_id,
            peers={n: f"127.0.0.1:{p}" for n, p in self.raft_ports.items()},
            tick_seconds=TICK_SECONDS,
            seed=node_id,
        )
        addresses = {n: self.raft_address(n) for n in self.ids}
        if self.pki is None:
            transport = TcpTransport(addresses, security=Insecure(), handshake_timeout_seconds=1.0)
            client_tls = None
        else:
            files = NodeFiles.in_directory(self.pki, node_id)
            transport = TcpTransport(addresses, security=MutualTls(node_id, files),
                                     handshake_timeout_seconds=1.0)
            client_tls = resp_server_context(files)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with trio.CancelScope() as scope:
                    member.scope = scope
                    async with trio.open_nursery() as inner:
                        member.handler = await inner.start(functools.partial(
                            serve_kv, config, storage=member.storage, transport=transport,
                            client_port=self.client_ports[node_id],
                            client_addresses={n: self.client_address(n) for n in self.ids},
                            server_limits=ServerLimits(handshake_timeout_seconds=2.0),
                            ssl_context=client_tls))
                        task_status.started()
            finally:
                member.handler = None
                member.scope = None
                member.done.set()

        await self.nursery.start(run)

    async def stop(self, node_id: int) -> None:
        member = self.members[node_id]
        if member.scope is not None:
            member.scope.cancel()
            await member.done.wait()

    def leader(self) -> int | None:
        for nid, member in self.members.items():
            if member.handler is not None and member.handler.node.status().role is Role.LEADER:
                return nid
        return None

    async def wait_leader(self, timeout_seconds: float = 10.0) -> int:
        with trio.fail_after(timeout_seconds):
            while (leader := self.leader()) is None:
                await trio.sleep(0.02)
        return leader


def peer_client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """What an attacker with these files would use to dial a node (trusting ``ca``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def attack(
    address: tuple[str, int], ctx: ssl.SSLContext | None, *, src: int, dst: int,
    cluster_id: int = 0, wait_seconds: float = 2.0,
) -> tuple[bytes, str]:
    """Dial ``address``, (TLS if ``ctx``), send a hello claiming ``src`` and a TimeoutNow frame
    (which would start an election if it reached the core); return what came back before the
    node closed the connection (or ``wait_seconds`` passed), and the attacker's address."""
    raw = await trio.open_tcp_stream(*address)
    host, port = raw.socket.getsockname()[:2]
    stream: trio.abc.Stream = raw
    received = b""
    try:
        if ctx is not None:
            stream = trio.SSLStream(raw, ctx, server_hostname="node")
        with trio.move_on_after(wait_seconds):
            await stream.send_all(encode_hello(Hello(src, dst, cluster_id)))
            await stream.send_all(encode_frame([TimeoutNow(term=1000, src=src, dst=dst)]))
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                received += data
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)
    return received, f"{host}:{port}"
