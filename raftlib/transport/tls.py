"""Mutual TLS between Raft peers, and the TLS contexts of the RESP port and the client.

    security = MutualTls(node_id, NodeFiles.in_directory(Path("certs"), node_id))
    transport = TcpTransport(addresses, security=security)

``MutualTls`` implements the transport's ``StreamSecurity`` hook (see ``tcp``): every connection
in either direction runs a TLS 1.3 handshake (stdlib ``ssl`` under ``trio.SSLStream``) inside
the transport's ``handshake_timeout_seconds``, before the hello. Both sides present a
certificate and both verify the other's against the cluster CA. Then identity:

- outbound: the certificate of the node we dialled must name exactly the node we meant
  (URI SAN ``raft://node/N``, see ``raftlib.certs``), or we hang up before sending the hello;
- inbound: the caller's certificate must name a node, and ``check_peer`` refuses the
  connection when the hello claims any other node, before a single frame is read.

A failed handshake or identity check raises ``PeerRefused``, which the transport counts as
``refused`` and logs (warning, with the peer's address). Host names are not checked between
peers: the node id in the certificate is the identity, and addresses may change.

Idle limit: ``idle_timeout_seconds`` (0 disables) closes an authenticated inbound connection
that delivers nothing for that long. Leaders send heartbeats every few ticks, so a healthy
leader-follower link is never idle; a follower-to-follower link may be, and is then simply
reopened by its sender, so keep the limit well above the election timeout (default 300 s).
Unauthenticated connections are bounded far tighter by the transport: the whole TLS handshake
plus hello must finish within ``handshake_timeout_seconds``, with at most
``inbound_handshakes_max`` in progress; after authentication each member holds at most ONE
inbound connection (a newer one replaces the older), so connections per peer are bounded by 1.

``Insecure`` is the ``--insecure`` mode: plain TCP (trusted networks only) with the same idle
limit.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

import trio

from raftlib.certs import (
    NODE_URI_PREFIX,
    CertificateError,
    NodeFiles,
    certificate_node_id,
    check_file,
    check_node_files,
    node_id_from_uris,
)
from raftlib.core.types import NodeId
from raftlib.transport.tcp import PeerRefused

PEER_IDLE_TIMEOUT_SECONDS_DEFAULT: Final = 300.0
TLS_VERSION_MIN: Final = ssl.TLSVersion.TLSv1_3


class IdleTimeout(trio.BrokenResourceError):
    """Nothing arrived on a connection for its idle limit; the connection is closed."""


def _context(purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx.minimum_version = TLS_VERSION_MIN
    return ctx


def _load_verify(ctx: ssl.SSLContext, ca: Path) -> None:
    check_file(ca, secret=False)
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(f"CA file {ca} cannot be loaded: {_ssl_reason(exc)}") from None


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    check_file(cert, secret=False)
    check_file(key, secret=True)
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"certificate {cert} with key {key} cannot be loaded: {_ssl_reason(exc)}"
        ) from None


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def peer_contexts(files: NodeFiles) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for mutual TLS between peers: both require a certificate
    chaining to ``files.ca`` and present ``files.cert``."""
    check_node_files(files)
    server = _context(ssl.Purpose.CLIENT_AUTH)
    server.verify_mode = ssl.CERT_REQUIRED
    client = _context(ssl.Purpose.SERVER_AUTH)
    # The node id in the certificate is checked instead of a host name (see module docstring).
    client.check_hostname = False
    client.verify_mode = ssl.CERT_REQUIRED
    for ctx in (server, client):
        _load_verify(ctx, files.ca)
        _load_chain(ctx, files.cert, files.key)
    return server, client


def resp_server_context(
    files: NodeFiles, *, client_ca: Path | None = None, require_client_cert: bool = False
) -> ssl.SSLContext:
    """The RESP port's context: presents the node's certificate; when ``require_client_cert``,
    clients must present one chaining to ``client_ca`` (default: the cluster CA)."""
    check_node_files(files)
    ctx = _context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, files.cert, files.key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_verify(ctx, client_ca or files.ca)
    elif client_ca is not None:
        raise CertificateError("a client CA only makes sense with client certificates required")
    return ctx


def client_context(
    ca: Path, *, cert: Path | None = None, key: Path | None = None, check_hostname: bool = True
) -> ssl.SSLContext:
    """A client's context: trusts ``ca`` (and checks the server's host name, which node
    certificates satisfy for localhost and 127.0.0.1); presents ``cert``/``key`` if given."""
    ctx = _context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_verify(ctx, ca)
    if (cert is None) != (key is None):
        raise CertificateError("a client certificate needs both its cert and key files")
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx


def peer_node_id(stream: trio.SSLStream[trio.SocketStream]) -> NodeId | None:
    """The node id in the (verified) certificate of the peer behind ``stream``."""
    cert = stream.getpeercert()
    if not cert:
        return None
    uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
    try:
        return node_id_from_uris(uris)
    except CertificateError as exc:
        raise PeerRefused(str(exc)) from None


class PeerStream(trio.abc.Stream):
    """An inbound peer stream with its authenticated node id (``None`` in insecure mode) and an
    idle limit on receives."""

    def __init__(
        self, inner: trio.abc.Stream, node_id: NodeId | None, idle_timeout_seconds: float
    ) -> None:
        self.inner = inner
        self.node_id = node_id
        self.idle_timeout_seconds = idle_timeout_seconds

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        idle = self.idle_timeout_seconds
        with trio.move_on_after(idle if idle > 0 else float("inf")):
            return await self.inner.receive_some(max_bytes)
        raise IdleTimeout(f"nothing received for {idle:g} s (idle_timeout_seconds)")

    async def aclose(self) -> None:
        await self.inner.aclose()


def _check_idle(idle_timeout_seconds: float) -> None:
    if not idle_timeout_seconds >= 0 or idle_timeout_seconds == float("inf"):
        raise CertificateError(
            f"idle_timeout_seconds must be >= 0 (0 disables), got {idle_timeout_seconds!r}"
        )


class MutualTls:
    """``StreamSecurity`` with mutual TLS 1.3 and node-id certificates (module docstring)."""

    def __init__(
        self,
        node_id: NodeId,
        files: NodeFiles,
        *,
        idle_timeout_seconds: float = PEER_IDLE_TIMEOUT_SECONDS_DEFAULT,
    ) -> None:
        _check_idle(idle_timeout_seconds)
        self.node_id = node_id
        self.idle_timeout_seconds = idle_timeout_seconds
        self._server, self._client = peer_contexts(files)
        named = certificate_node_id(files.cert.read_bytes(), where=f"certificate {files.cert}")
        if named != node_id:
            what = "no node" if named is None else f"node {named}"
            raise CertificateError(
                f"certificate {files.cert} names {what}, but this is node {node_id} "
                f"(expected a URI SAN {NODE_URI_PREFIX}{node_id})"
            )

    async def wrap_outbound(self, stream: trio.SocketStream, peer_id: NodeId) -> trio.abc.Stream:
        tls = trio.SSLStream(stream, self._client, server_hostname=f"node-{peer_id}")
        await _handshake(tls)
        answered = peer_node_id(tls)
        if answered != peer_id:
            raise PeerRefused(
                f"dialled node {peer_id} but its certificate names "
                f"{'no node' if answered is None else f'node {answered}'}"
            )
        return tls

    async def wrap_inbound(self, stream: trio.SocketStream) -> trio.abc.Stream:
        tls = trio.SSLStream(stream, self._server, server_side=True)
        await _handshake(tls)
        node_id = peer_node_id(tls)
        if node_id is None:
            raise PeerRefused("its certificate names no node (a client certificate?)")
        return PeerStream(tls, node_id, self.idle_timeout_seconds)

    def check_peer(self, stream: trio.abc.Stream, claimed_id: NodeId) -> None:
        if not isinstance(stream, PeerStream) or stream.node_id is None:
            raise PeerRefused("connection did not pass the TLS handshake")
        if stream.node_id != claimed_id:
            raise PeerRefused(
                f"its certificate is node {stream.node_id}'s but its hello claims node "
                f"{claimed_id}"
            )


class Insecure:
    """``--insecure``: plain TCP, anyone who knows a member id may join; the idle limit
    still applies to inbound connections."""

    def __init__(
        self, *, idle_timeout_seconds: float = PEER_IDLE_TIMEOUT_SECONDS_DEFAULT
    ) -> None:
        _check_idle(idle_timeout_seconds)
        self.idle_timeout_seconds = idle_timeout_seconds

    async def wrap_outbound(self, stream: trio.SocketStream, peer_id: NodeId) -> trio.abc.Stream:
        return stream

    async def wrap_inbound(self, stream: trio.SocketStream) -> trio.abc.Stream:
        return PeerStream(stream, None, self.idle_timeout_seconds)

    def check_peer(self, stream: trio.abc.Stream, claimed_id: NodeId) -> None:
        return None


async def _handshake(tls: trio.SSLStream[trio.SocketStream]) -> None:
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        reason = _ssl_reason(cause) if cause is not None else "connection closed"
        raise PeerRefused(f"TLS handshake failed: {reason}") from None
