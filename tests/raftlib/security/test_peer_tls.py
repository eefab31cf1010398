"""Mutual TLS between peers: messages flow; wrong CA, wrong identity, old TLS, silence and
duplicate connections are refused or bounded; TLS material is checked when loaded."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from raftlib.certs import CertificateError, NodeFiles
from raftlib.core.types import ReadIndexRequest
from raftlib.supervisor import free_ports
from raftlib.transport.codec import HELLO_BYTES, Hello, decode_hello, encode_hello
from raftlib.transport.tcp import TcpEndpoint, TcpTransport
from raftlib.transport.tls import Insecure, MutualTls
from tests.raftlib.security.tls_cluster import attack, peer_client_context

TIMEOUT_SECONDS = 10.0


def transports(
    pki: Path, ids: tuple[int, ...] = (1, 2, 3), *, addresses: dict[int, tuple[str, int]] | None
    = None, **options: float,
) -> dict[int, TcpTransport]:
    if addresses is None:
        addresses = {n: ("127.0.0.1", p) for n, p in zip(ids, free_ports(len(ids)), strict=True)}
    return {
        n: TcpTransport(addresses, security=MutualTls(n, NodeFiles.in_directory(pki, n)),
                        backoff_initial_seconds=0.01, backoff_max_seconds=0.05, rng_seed=n,
                        **options)  # type: ignore[arg-type]
        for n in ids
    }


@asynccontextmanager
async def opened(ts: dict[int, TcpTransport]) -> AsyncIterator[dict[int, TcpEndpoint]]:
    async with AsyncExitStack() as stack:
        yield {n: await stack.enter_async_context(t.open(n)) for n, t in ts.items()}


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(TIMEOUT_SECONDS):
        while not predicate():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out waiting until {what}")


async def test_members_exchange_messages_over_mutual_tls(pki: Path) -> None:
    async with opened(transports(pki)) as eps:
        eps[1].send_nowait([ReadIndexRequest(term=1, src=1, dst=3, request_id=5)])
        with trio.fail_after(TIMEOUT_SECONDS):
            got = await eps[3].receive()
        assert got == [ReadIndexRequest(term=1, src=1, dst=3, request_id=5)]
        await eventually(lambda: all(e.statistics()["accepted"] == 2 for e in eps.values()),
                         "every node accepted both peers")
        assert all(e.statistics()["refused"] == 0 for e in eps.values())


async def test_a_node_whose_certificate_names_another_member_is_refused_when_dialled(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    ports = free_ports(2)
    # Node 1 believes node 2 listens where node 3 actually does (a hijacked address).
    one = transports(pki, (1,), addresses={1: ("127.0.0.1", ports[0]),
                                           2: ("127.0.0.1", ports[1])})
    impostor = transports(pki, (3,), addresses={3: ("127.0.0.1", ports[1]),
                                                1: ("127.0.0.1", ports[0])})
    async with opened({**one, **impostor}) as eps:
        await eventually(lambda: eps[1].statistics()["connect_failures"] >= 1,
                         "node 1 gave up on the impostor")
        assert eps[1].statistics()["connects"] == 0
        assert any("dialled node 2 but its certificate names node 3" in r.getMessage()
                   for r in caplog.records)


async def test_tls_below_1_3_is_refused(pki: Path) -> None:
    ts = transports(pki)
    async with opened(ts) as eps:
        ctx = peer_client_context(pki / "ca.pem", pki / "node-2.pem", pki / "node-2.key")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        refused_before = eps[1].statistics()["refused"]
        received, _ = await attack(ts[1].address(1), ctx, src=2, dst=1, wait_seconds=2)
        assert received == b""
        await eventually(lambda: eps[1].statistics()["refused"] > refused_before,
                         "the TLS 1.2 connection was refused")


async def test_a_silent_connection_is_dropped_at_the_handshake_timeout(pki: Path) -> None:
    ts = transports(pki, handshake_timeout_seconds=0.3)
    async with opened(ts) as eps:
        refused = eps[1].statistics()["refused"]
        stream = await trio.open_tcp_stream(*ts[1].address(1))
        started = trio.current_time()
        with trio.fail_after(TIMEOUT_SECONDS):
            data = await stream.receive_some(100)
        assert data == b""
        assert 0.25 < trio.current_time() - started < 5
        assert eps[1].statistics()["refused"] == refused + 1
        await stream.aclose()


async def test_an_authenticated_but_silent_peer_connection_is_closed_at_the_idle_limit() -> None:
    (port,) = free_ports(1)
    transport = TcpTransport({1: ("127.0.0.1", port), 2: ("127.0.0.1", free_ports(1)[0])},
                             security=Insecure(idle_timeout_seconds=0.3))
    async with transport.open(1) as endpoint:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(encode_hello(Hello(2, 1, 0)))
        reply = b""
        with trio.fail_after(TIMEOUT_SECONDS):
            while len(reply) < HELLO_BYTES:
                reply += await stream.receive_some(HELLO_BYTES - len(reply))
        assert decode_hello(reply).src == 1
        await eventually(lambda: endpoint.statistics()["inbound_connections"] == 1, "accepted")
        with trio.fail_after(TIMEOUT_SECONDS):
            assert await stream.receive_some(100) == b""  # closed by node 1, idle
        assert endpoint.statistics()["inbound_connections"] == 0
        await stream.aclose()


async def test_each_member_holds_at_most_one_inbound_connection(pki: Path) -> None:
    ts = transports(pki)
    async with opened(ts) as eps:
        await eventually(lambda: eps[1].statistics()["inbound_connections"] == 2, "peers in")
        ctx = peer_client_context(pki / "ca.pem", pki / "node-2.pem", pki / "node-2.key")
        streams = []
        for _ in range(3):
            raw = await trio.open_tcp_stream(*ts[1].address(1))
            tls = trio.SSLStream(raw, ctx, server_hostname="node-1")
            await tls.send_all(encode_hello(Hello(2, 1, 0)))
            streams.append(tls)
            await eventually(lambda: eps[1].statistics()["accepted"] >= 2 + len(streams),
                             "the duplicate was accepted")
            assert eps[1].statistics()["inbound_connections"] == 2
        for tls in streams:
            await trio.aclose_forcefully(tls)


def test_a_key_readable_by_others_is_refused_with_one_line(pki: Path, tmp_path: Path) -> None:
    copy = tmp_path / "certs"
    shutil.copytree(pki, copy)
    os.chmod(copy / "node-1.key", 0o640)
    with pytest.raises(CertificateError) as info:
        MutualTls(1, NodeFiles.in_directory(copy, 1))
    text = str(info.value)
    assert "\n" not in text
    assert str(copy / "node-1.key") in text and "0640" in text and "chmod 600" in text


def test_a_ca_file_writable_by_others_is_refused(pki: Path, tmp_path: Path) -> None:
    copy = tmp_path / "certs"
    shutil.copytree(pki, copy)
    os.chmod(copy / "ca.pem", 0o666)
    with pytest.raises(CertificateError, match=r"ca\.pem is writable by group or others"):
        MutualTls(1, NodeFiles.in_directory(copy, 1))


def test_a_certificate_for_another_node_is_refused_at_start(pki: Path) -> None:
    files = NodeFiles(pki / "ca.pem", pki / "node-2.pem", pki / "node-2.key")
    with pytest.raises(CertificateError, match="names node 2, but this is node 1"):
        MutualTls(1, files)


def test_a_key_that_does_not_match_its_certificate_is_refused(pki: Path) -> None:
    files = NodeFiles(pki / "ca.pem", pki / "node-1.pem", pki / "node-2.key")
    with pytest.raises(CertificateError, match="cannot be loaded"):
        MutualTls(1, files)
