"""The RESP port over TLS: raftlib.client talks to it, client certificates are enforced when
required, and slow handshakes, idle clients and excess connections are cut off."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from raftlib.certs import NodeFiles
from raftlib.client import NotDelivered, TcpConnector
from raftlib.resp.protocol import Reply, SimpleString
from raftlib.resp.server import RespServer, ServerLimits, open_tcp_listeners
from raftlib.transport.tls import client_context, resp_server_context

TIMEOUT_SECONDS = 10.0


async def echo(args: list[bytes]) -> Reply:
    return SimpleString("PONG") if args[0].upper() == b"PING" else args[-1]


async def start_server(
    nursery: trio.Nursery, pki: Path, limits: ServerLimits, *, client_auth: bool = False
) -> tuple[RespServer, str]:
    ctx = resp_server_context(NodeFiles.in_directory(pki, 1), require_client_cert=client_auth)
    listeners = await open_tcp_listeners(0, ssl_context=ctx)
    server = RespServer(echo, limits=limits)
    await nursery.start(functools.partial(server.serve, listeners))
    inner = listeners[0].transport_listener  # type: ignore[attr-defined]
    return server, f"127.0.0.1:{inner.socket.getsockname()[1]}"


async def test_the_client_speaks_tls_to_the_resp_port(pki: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, address = await start_server(nursery, pki, ServerLimits())
        connector = TcpConnector(ssl_context=client_context(pki / "ca.pem"))
        assert await connector.call(address, [b"PING"]) == SimpleString("PONG")
        assert await connector.call(address, [b"ECHO", b"x" * 100_000]) == b"x" * 100_000
        await connector.aclose()
        assert server.statistics().handshake_failures == 0
        nursery.cancel_scope.cancel()


async def test_a_server_from_another_ca_is_not_delivered_to(pki: Path, rogue_pki: Path) -> None:
    async with trio.open_nursery() as nursery:
        _, address = await start_server(nursery, rogue_pki, ServerLimits())
        connector = TcpConnector(ssl_context=client_context(pki / "ca.pem"))
        with pytest.raises(NotDelivered, match="CERTIFICATE_VERIFY_FAILED"):
            await connector.call(address, [b"PING"])
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("client_has_cert", [True, False])
async def test_client_certificates_are_enforced_when_required(
    pki: Path, client_has_cert: bool
) -> None:
    async with trio.open_nursery() as nursery:
        server, address = await start_server(nursery, pki, ServerLimits(), client_auth=True)
        cert, key = (pki / "client.pem", pki / "client.key") if client_has_cert else (None, None)
        connector = TcpConnector(ssl_context=client_context(pki / "ca.pem", cert=cert, key=key))
        if client_has_cert:
            assert await connector.call(address, [b"PING"]) == SimpleString("PONG")
        else:
            # TLS 1.3: the server refuses after the client thinks the handshake is done.
            with pytest.raises((trio.BrokenResourceError, NotDelivered, OSError)):
                await connector.call(address, [b"PING"])
            with trio.fail_after(TIMEOUT_SECONDS):
                while server.statistics().handshake_failures == 0:
                    await trio.sleep(0.01)
            assert server.statistics().commands == 0
        await connector.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_that_never_handshakes_is_closed_at_the_deadline(pki: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, address = await start_server(
            nursery, pki, ServerLimits(handshake_timeout_seconds=0.3))
        host, port = address.split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        started = trio.current_time()
        with trio.fail_after(TIMEOUT_SECONDS):
            assert await stream.receive_some(100) == b""
        assert 0.25 < trio.current_time() - started < 5
        assert server.statistics().handshake_failures == 1
        assert server.statistics().connections_open == 0
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_idle_tls_client_is_closed_and_frees_its_slot(pki: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, address = await start_server(
            nursery, pki, ServerLimits(connections_max=1, idle_timeout_seconds=0.3))
        idle = TcpConnector(ssl_context=client_context(pki / "ca.pem"))
        assert await idle.call(address, [b"PING"]) == SimpleString("PONG")
        # The slot is taken: one more client is refused.
        other = TcpConnector(ssl_context=client_context(pki / "ca.pem"))
        reply = await other.call(address, [b"PING"])
        assert reply is not None and "max number of clients" in str(reply)
        await other.aclose()
        with trio.fail_after(TIMEOUT_SECONDS):
            while server.statistics().idle_closed == 0:
                await trio.sleep(0.02)
        late = TcpConnector(ssl_context=client_context(pki / "ca.pem"))
        assert await late.call(address, [b"PING"]) == SimpleString("PONG")
        await late.aclose()
        await idle.aclose()
        nursery.cancel_scope.cancel()


def test_server_limits_refuse_nonsense_values() -> None:
    with pytest.raises(ValueError, match="connections_max"):
        ServerLimits(connections_max=0)
    with pytest.raises(ValueError, match="idle_timeout_seconds"):
        ServerLimits(idle_timeout_seconds=float("nan"))
    with pytest.raises(ValueError, match="handshake_timeout_seconds"):
        ServerLimits(handshake_timeout_seconds=-1)
