"""Raft messages over TCP: one outbound connection per peer, length-prefixed batched frames.

    transport = TcpTransport({1: ("127.0.0.1", 7001), 2: ("127.0.0.1", 7002), ...})
    async with transport.open(1) as endpoint:      # listens on 127.0.0.1:7001
        endpoint.send_nowait(messages)             # never blocks
        batch = await endpoint.receive()

Shape of a node's connections
-----------------------------
Each node listens on its own address and keeps ONE outbound connection to every peer, used
only to send; it receives on the connections its peers opened to it. A pair of nodes therefore
uses two connections, one per direction, which keeps each side's code one-way and simple.

Outbound, per peer: a bounded queue (``send_queue_max`` messages) filled by ``send_nowait`` and
one sender task that connects (``connect_timeout_seconds``), exchanges hellos
(``handshake_timeout_seconds``; see ``codec`` for the format) and then writes whatever the queue
holds, coalesced into frames of up to ``frame_messages_max`` messages and writes of up to
``write_bytes_max`` bytes: under load one syscall carries many messages. On a plain TCP
connection whose sender task is idle, ``send_nowait`` makes that write itself, and leaves the
task only what the socket did not take at once (``_Peer``). A second task per
connection waits for the peer to close it (the peer never sends after its hello), so a restarted
peer is noticed at once rather than at the next failed write. On failure the sender waits an
exponential backoff with jitter (``backoff_initial_seconds`` doubling up to
``backoff_max_seconds``, each wait drawn uniformly in [b/2, b]) and reconnects; messages still
queued are sent on the new connection.

When a peer's queue is full the OLDEST queued message is dropped (counted as
``dropped_queue_full``): Raft retries everything that matters, and after an outage the freshest
messages (current term, latest commit index) are the useful ones, not a backlog of stale
heartbeats. A message addressed to a node that is not in ``addresses`` is dropped and counted.

Inbound: every accepted connection must send a valid hello from a known member (not this
node), addressed to this node, with the same cluster id, before the handshake timeout; anything
else is refused and logged with the peer address. With an identity (``use_identity``), a peer
must also show the data directory this node first saw it on (``raftlib.identity``), both ways:
a refused one is told, and both sides log an error (the first, then every
``_CONNECT_FAILURES_WARN``-th). A newer connection from the same member
replaces the older one (a restarted peer's old connection may be half-dead). Frames are decoded
with ``FrameDecoder``; a frame that fails to decode, exceeds ``max_frame_bytes``, or holds a
message whose ``src``/``dst`` disagree with the hello CLOSES THAT CONNECTION and is logged on
logger ``raftlib.transport`` with the peer's node id and address; the node keeps running.
Decoded batches go to a bounded inbox (``inbox_messages_max``) that ``receive()`` drains; when
it is full the connection readers wait (TCP backpressure reaches the senders, whose bounded
queues then drop) instead of growing memory.

Security hook (TLS, issue 7)
----------------------------
Every stream passes through a ``StreamSecurity`` object before the hello: ``wrap_outbound``
after connecting, ``wrap_inbound`` after accepting, and ``check_peer`` once the inbound hello
names the member the peer claims to be. The default ``PLAINTEXT`` returns the raw stream and
accepts every claim. A TLS implementation returns a ``trio.SSLStream`` (after its handshake,
inside the handshake timeout) and checks the certificate's node id against the claim;
everything after that is unchanged.

Everything runs in the nursery of ``open()``: leaving the block closes the listeners and every
connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import trio

from raftlib.core.types import Message, NodeId
from raftlib.errors import ConfigError
from raftlib.identity import NO_DATA_ID, DataIdentity, format_data_id
from raftlib.transport.base import Sink
from raftlib.transport.codec import (
    FRAME_HEADER_BYTES,
    FRAME_MESSAGES_MAX_DEFAULT,
    HELLO_BYTES,
    HELLO_HEAD_BYTES,
    MAX_FRAME_BYTES_DEFAULT,
    CodecError,
    FrameDecoder,
    Hello,
    check_hello_head,
    decode_hello,
    encode_frame,
    encode_hello,
)

logger = logging.getLogger("raftlib.transport")

Address = tuple[str, int]


def parse_host_port(text: str) -> Address | None:
    """``HOST:PORT`` (``[v6]:PORT`` too) as an address, or None when it is not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


class PeerRefused(Exception):
    """A connection's peer failed the hello or security checks; the message is one line."""


class IdentityRefused(PeerRefused):
    """A peer's data directory is not the one known for its node id, or a peer refused this
    node's (``raftlib.identity``): a node that lost its state. Logged as an error."""

    def __init__(self, message: str, peer_id: NodeId) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class StreamSecurity(Protocol):
    """Turns a raw TCP stream into the stream Raft frames travel on (see module docstring)."""

    async def wrap_outbound(self, stream: trio.SocketStream, peer_id: NodeId) -> trio.abc.Stream:
        """Called right after connecting to ``peer_id``; raise to refuse the peer."""
        ...

    async def wrap_inbound(self, stream: trio.SocketStream) -> trio.abc.Stream:
        """Called right after accepting a connection; raise to refuse it."""
        ...

    def check_peer(self, stream: trio.abc.Stream, claimed_id: NodeId) -> None:
        """Raise ``PeerRefused`` if the peer behind ``stream`` may not act as ``claimed_id``."""
        ...


class Plaintext:
    """No encryption and no authentication beyond the hello: trusted networks only."""

    async def wrap_outbound(self, stream: trio.SocketStream, peer_id: NodeId) -> trio.abc.Stream:
        return stream

    async def wrap_inbound(self, stream: trio.SocketStream) -> trio.abc.Stream:
        return stream

    def check_peer(self, stream: trio.abc.Stream, claimed_id: NodeId) -> None:
        return None


PLAINTEXT = Plaintext()


def _positive(name: str, value: float) -> None:
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"TcpTransport: {name} must be a finite number > 0, got {value!r}")


class TcpTransport:
    """Implements ``Transport`` over TCP. ``addresses`` maps every member to its listen address.

    A port of 0 asks the system for a free port when that node opens; ``address(node_id)`` then
    reports the port in use, and peers sharing this ``TcpTransport`` object connect to it (tests
    run whole clusters on ephemeral ports this way).
    """

    def __init__(
        self,
        addresses: Mapping[NodeId, Address],
        *,
        cluster_id: int = 0,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
        frame_messages_max: int = FRAME_MESSAGES_MAX_DEFAULT,
        send_queue_max: int = 10_000,
        write_bytes_max: int = 1024 * 1024,
        inbox_messages_max: int = 10_000,
        receive_messages_max: int = 4096,
        receive_bytes_max: int = 256 * 1024,
        connect_timeout_seconds: float = 2.0,
        handshake_timeout_seconds: float = 2.0,
        backoff_initial_seconds: float = 0.05,
        backoff_max_seconds: float = 2.0,
        inbound_handshakes_max: int = 64,
        rng_seed: int | None = None,
        security: StreamSecurity = PLAINTEXT,
    ) -> None:
        if not addresses:
            raise ConfigError("TcpTransport: addresses must name at least one node")
        for node_id, address in addresses.items():
            if not isinstance(node_id, int) or node_id <= 0:
                raise ConfigError(f"TcpTransport: node id {node_id!r} must be a positive int")
            if (
                not isinstance(address, tuple)
                or len(address) != 2
                or not isinstance(address[0], str)
                or not isinstance(address[1], int)
                or not 0 <= address[1] <= 65535
            ):
                raise ConfigError(
                    f"TcpTransport: address of node {node_id} must be (host, port), got {address!r}"
                )
        if not 0 <= cluster_id <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ConfigError(f"TcpTransport: cluster_id must be a u64, got {cluster_id}")
        if not 2 <= max_frame_bytes <= 0xFFFF_FFFF:
            raise ConfigError(
                f"TcpTransport: max_frame_bytes must be in [2, 2**32-1], got {max_frame_bytes}"
            )
        for name, int_value in (
            ("frame_messages_max", frame_messages_max),
            ("send_queue_max", send_queue_max),
            ("write_bytes_max", write_bytes_max),
            ("inbox_messages_max", inbox_messages_max),
            ("receive_messages_max", receive_messages_max),
            ("receive_bytes_max", receive_bytes_max),
            ("inbound_handshakes_max", inbound_handshakes_max),
        ):
            _positive(name, int_value)
        for name, seconds in (
            ("connect_timeout_seconds", connect_timeout_seconds),
            ("handshake_timeout_seconds", handshake_timeout_seconds),
            ("backoff_initial_seconds", backoff_initial_seconds),
            ("backoff_max_seconds", backoff_max_seconds),
        ):
            _positive(name, seconds)
        if backoff_max_seconds < backoff_initial_seconds:
            raise ConfigError(
                f"TcpTransport: backoff_max_seconds {backoff_max_seconds} is below "
                f"backoff_initial_seconds {backoff_initial_seconds}"
            )
        self._addresses: dict[NodeId, Address] = dict(addresses)
        self.cluster_id = cluster_id
        self.max_frame_bytes = max_frame_bytes
        self.frame_messages_max = frame_messages_max
        self.send_queue_max = send_queue_max
        self.write_bytes_max = write_bytes_max
        self.inbox_messages_max = inbox_messages_max
        self.receive_messages_max = receive_messages_max
        self.receive_bytes_max = receive_bytes_max
        self.connect_timeout_seconds = connect_timeout_seconds
        self.handshake_timeout_seconds = handshake_timeout_seconds
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.inbound_handshakes_max = inbound_handshakes_max
        self.security = security
        self._rng = random.Random(rng_seed)
        # Per node opened here: its data directory's identity (``use_identity``).
        self._identities: dict[NodeId, DataIdentity] = {}

    def use_identity(self, node_id: NodeId, identity: DataIdentity) -> None:
        """Have node ``node_id`` (opened later) show ``identity``'s data directory id in its
        hellos and refuse peers whose data directory is not the one it knew for them
        (``raftlib.identity``). ``open_node`` calls it for a storage that has an identity."""
        self._identities[node_id] = identity

    @property
    def members(self) -> frozenset[NodeId]:
        return frozenset(self._addresses)

    def address(self, node_id: NodeId) -> Address:
        """Where ``node_id`` listens (the actual port once a port-0 node has opened)."""
        return self._addresses[node_id]

    @asynccontextmanager
    async def open(self, node_id: NodeId) -> AsyncIterator[TcpEndpoint]:
        if node_id not in self._addresses:
            raise ConfigError(f"TcpTransport: node {node_id} has no address in addresses")
        host, port = self._addresses[node_id]
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise OSError(
                exc.errno, f"node {node_id} cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
        if port == 0:
            port = listeners[0].socket.getsockname()[1]
            self._addresses[node_id] = (host, port)
        endpoint = TcpEndpoint(self, node_id)
        logger.info("node %d listening on %s:%d", node_id, host, port)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, endpoint._handle_inbound, listeners)
                endpoint._nursery = nursery
                for peer in endpoint._peers.values():
                    nursery.start_soon(endpoint._run_sender, peer)
                try:
                    yield endpoint
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            endpoint._close()
            logger.info("node %d transport closed", node_id)


# One write's worth of frames: (bytes, messages, frames, bytes of frames) - the last three for
# the counters once the bytes are all written.
_Write = tuple[bytes, int, int, int]


class _Peer:
    """Outbound state for one peer: its bounded queue and the sender task's wake-up.

    On a plain TCP connection ``send_nowait`` writes to the socket itself (``fd``) while the
    sender task is idle: a Ready's appends leave at once, without waking that task (a task
    switch per peer per Ready was a good part of what a write round cost the leader). Whatever
    the socket does not take at once (``backlog``), and everything while the task writes, is
    the task's to send, in order."""

    def __init__(self, node_id: NodeId, queue_max: int) -> None:
        self.node_id = node_id
        self.queue: deque[Message] = deque()
        self.queue_max = queue_max
        self.wakeup = trio.Event()
        self.connected = False
        self.fd: int | None = None  # the plain connection's socket, while connected
        self.writing = False  # the sender task is in a write: nobody else writes now
        self.backlog: _Write | None = None  # the rest of a write the socket did not take
        self.write_error: OSError | None = None  # a direct write failed: the task ends it


class _ConnectionDone(Exception):
    """Internal: why a connection ended (a one-line reason), raised out of its tasks."""


_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
# Consecutive failed connection attempts to one peer before a warning is logged.
_CONNECT_FAILURES_WARN = 5


class TcpEndpoint:
    """One node's TCP transport (implements ``Endpoint``)."""

    def __init__(self, transport: TcpTransport, node_id: NodeId) -> None:
        self.transport = transport
        self.node_id = node_id
        self._peers = {
            peer: _Peer(peer, transport.send_queue_max)
            for peer in transport.members
            if peer != node_id
        }
        self._inbox: deque[list[Message]] = deque()
        # Where peers added later (``add_peer``) get their sender task.
        self._nursery: trio.Nursery | None = None
        self._inbox_messages = 0
        self._inbox_ready = trio.lowlevel.ParkingLot()
        self._inbox_space = trio.lowlevel.ParkingLot()
        self._inbound: dict[NodeId, trio.CancelScope] = {}
        self._handshakes = 0
        # Refusals of each peer's data directory (members only), for the throttled error log.
        self._identity_refusals: dict[NodeId, int] = {}
        self._closed = False
        self._sink: Sink | None = None  # deliver_to's: batches go there, not to the inbox
        self._identity = transport._identities.get(node_id)
        self._data_id = self._identity.own if self._identity is not None else NO_DATA_ID
        self._counters = dict.fromkeys(
            (
                "sent",  # messages queued by send_nowait for a peer
                "dropped_queue_full",  # oldest queued messages pushed out by newer ones
                "dropped_unknown_peer",  # dst not in addresses, or this node itself
                "dropped_too_large",  # one message alone exceeds max_frame_bytes
                "dropped_write_failed",  # taken from the queue, lost with a broken connection
                "messages_written",
                "writes_direct",  # writes made by send_nowait itself (plain TCP, task idle)
                "frames_written",
                "bytes_written",
                "connects",  # outbound connections that completed the hello
                "connect_failures",
                "disconnects",
                "accepted",  # inbound connections that passed the hello
                "refused",  # inbound connections refused at the hello (or over the limit)
                # Connections (either way) refused because the peer's data directory is not
                # the one known for its id; and outbound ones a peer refused for this node's.
                "refused_identity",
                "refused_by_peer_identity",
                "closed_bad_frame",  # inbound connections closed for an invalid frame
                "received",  # messages decoded and put in the inbox
                "frames_received",
                "bytes_received",
                "inbox_full_waits",  # times a connection reader waited for inbox space
            ),
            0,
        )

    # --- Endpoint -----------------------------------------------------------------------------

    def send_nowait(self, messages: Sequence[Message]) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"transport of node {self.node_id} is closed")
        counters = self._counters
        peers = self._peers
        touched: list[_Peer] = []
        for message in messages:
            peer = peers.get(message.dst)
            if peer is None:
                counters["dropped_unknown_peer"] += 1
                continue
            queue = peer.queue
            if len(queue) >= peer.queue_max:
                queue.popleft()
                counters["dropped_queue_full"] += 1
            queue.append(message)
            counters["sent"] += 1
            if len(queue) == 1:
                touched.append(peer)
        for peer in touched:
            if peer.fd is not None and not peer.writing and peer.backlog is None:
                self._write_now(peer, peer.fd)
            else:
                peer.wakeup.set()

    async def receive(self) -> list[Message]:
        while not self._inbox:
            if self._closed:
                raise trio.ClosedResourceError(f"transport of node {self.node_id} is closed")
            await self._inbox_ready.park()
        inbox = self._inbox
        batch = inbox.popleft()
        limit = self.transport.receive_messages_max
        while inbox and len(batch) + len(inbox[0]) <= limit:
            batch.extend(inbox.popleft())
        self._inbox_messages -= len(batch)
        self._inbox_space.unpark_all()
        return batch

    def statistics(self) -> dict[str, int]:
        return {
            **self._counters,
            "send_queue_messages": sum(len(p.queue) for p in self._peers.values()),
            "connected_peers": sum(p.connected for p in self._peers.values()),
            "inbound_connections": len(self._inbound),
            "inbox_messages": self._inbox_messages,
        }

    def add_peer(self, node_id: NodeId, address: str) -> None:
        """A member added by a configuration change, reached at ``address`` (``HOST:PORT``,
        optionally followed by ``,...`` that the transport ignores). A known peer gets the new
        address (its sender reads it at the next connection attempt)."""
        if node_id == self.node_id or self._closed:
            return
        parsed = parse_host_port(address.split(",", 1)[0])
        if parsed is None:
            logger.warning("node %d: member %d has an unusable address %r", self.node_id,
                           node_id, address)
            return
        self.transport._addresses[node_id] = parsed
        if node_id not in self._peers and self._nursery is not None:
            peer = _Peer(node_id, self.transport.send_queue_max)
            self._peers[node_id] = peer
            self._nursery.start_soon(self._run_sender, peer)

    def _close(self) -> None:
        self._closed = True
        self._inbox_ready.unpark_all()
        self._inbox_space.unpark_all()

    # --- Outbound -----------------------------------------------------------------------------

    async def _run_sender(self, peer: _Peer) -> None:
        """Connect, send until the connection breaks, back off, repeat; until cancelled."""
        transport = self.transport
        backoff = transport.backoff_initial_seconds
        failures = 0
        while True:
            # Read on every attempt: a restarted peer may listen on a new port (port 0 in tests).
            address = transport.address(peer.node_id)
            try:
                stream = await self._connect(peer, address)
            except (*_NETWORK_ERRORS, trio.TooSlowError, PeerRefused, CodecError) as exc:
                self._counters["connect_failures"] += 1
                failures += 1
                # Peers start in any order, so one failure is routine; a peer that stays
                # unreachable is worth one warning; its further retries are not news.
                if isinstance(exc, IdentityRefused) and (
                        failures == 1 or failures % _CONNECT_FAILURES_WARN == 0):
                    log = logger.error  # a node that lost its state: the operator must act
                elif failures == 1:
                    log = logger.info
                elif failures == _CONNECT_FAILURES_WARN:
                    log = logger.warning
                else:
                    log = logger.debug
                log(
                    "node %d: cannot connect to node %d at %s (attempt %d): %s",
                    self.node_id,
                    peer.node_id,
                    _format_address(address),
                    failures,
                    _describe(exc),
                )
            else:
                failures = 0
                backoff = transport.backoff_initial_seconds
                self._counters["connects"] += 1
                peer.connected = True
                logger.info("node %d: connected to node %d", self.node_id, peer.node_id)
                try:
                    reason = await self._serve_outbound(peer, stream)
                finally:
                    peer.connected = False
                    await trio.aclose_forcefully(stream)
                self._counters["disconnects"] += 1
                logger.info(
                    "node %d: connection to node %d lost: %s", self.node_id, peer.node_id, reason
                )
            await trio.sleep(transport._rng.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, transport.backoff_max_seconds)

    async def _connect(self, peer: _Peer, address: Address) -> trio.abc.Stream:
        transport = self.transport
        host, port = address
        with trio.fail_after(transport.connect_timeout_seconds):
            raw = await trio.open_tcp_stream(host, port)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            with trio.fail_after(transport.handshake_timeout_seconds):
                stream = await transport.security.wrap_outbound(raw, peer.node_id)
                await stream.send_all(encode_hello(Hello(
                    self.node_id, peer.node_id, transport.cluster_id, self._data_id)))
                reply = await _receive_hello(stream)
                expected = (peer.node_id, self.node_id, transport.cluster_id)
                if (reply.src, reply.dst, reply.cluster_id) != expected:
                    raise PeerRefused(
                        f"answered as node {reply.src} to node {reply.dst} in cluster "
                        f"{reply.cluster_id}, expected node {expected[0]} to node {expected[1]} "
                        f"in cluster {expected[2]}"
                    )
                if reply.refused:
                    self._counters["refused_by_peer_identity"] += 1
                    if reply.data_id == NO_DATA_ID:  # it knows no other: see its log
                        raise IdentityRefused(
                            f"node {peer.node_id} refuses this node's data directory "
                            f"{format_data_id(self._data_id)} (its log says why)", peer.node_id)
                    raise IdentityRefused(
                        f"node {peer.node_id} refuses this node: it knew node {self.node_id} "
                        f"on data directory {format_data_id(reply.data_id)}, and this one is "
                        f"{format_data_id(self._data_id)}: this node has lost the votes and "
                        f"entries it promised; replace it under a new node id (README: "
                        f"Replacing a node)", peer.node_id)
                await self._check_identity(peer.node_id, reply.data_id)
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        return stream

    async def _serve_outbound(self, peer: _Peer, stream: trio.abc.Stream) -> str:
        """Write queued messages until the connection fails; return why it ended."""
        reason = "closed"
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal reason
                try:
                    data = await stream.receive_some(1)
                    reason = "peer closed the connection" if not data else "peer sent bytes"
                except _NETWORK_ERRORS as exc:
                    reason = _describe(exc)
                nursery.cancel_scope.cancel()

            async def pump() -> None:
                nonlocal reason
                try:
                    await self._pump(peer, stream)
                except _NETWORK_ERRORS as exc:
                    reason = _describe(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(pump)
        return reason

    async def _pump(self, peer: _Peer, stream: trio.abc.Stream) -> None:
        counters = self._counters
        queue = peer.queue
        if isinstance(stream, trio.SocketStream):
            peer.fd = stream.socket.fileno()  # plain TCP: send_nowait may write itself
        try:
            while True:
                while not queue and peer.backlog is None and peer.write_error is None:
                    peer.wakeup = trio.Event()
                    await peer.wakeup.wait()
                if peer.write_error is not None:
                    raise peer.write_error  # a direct write broke the connection
                write = peer.backlog or self._take_write(peer)
                peer.backlog = None
                if write is None:
                    continue
                data, messages, frames, write_bytes = write
                peer.writing = True
                try:
                    await stream.send_all(data)
                except BaseException:
                    # A partial write cannot be resumed on a new connection: these messages
                    # are lost.
                    counters["dropped_write_failed"] += messages
                    raise
                finally:
                    peer.writing = False
                self._wrote(messages, frames, write_bytes)
        finally:
            peer.fd = None
            peer.write_error = None
            if peer.backlog is not None:  # half a frame: never the start of a new connection
                counters["dropped_write_failed"] += peer.backlog[1]
                peer.backlog = None

    def _take_write(self, peer: _Peer) -> _Write | None:
        """Coalesce: what is queued now, in as few frames and one write as limits allow."""
        transport = self.transport
        queue = peer.queue
        chunks: list[bytes] = []
        write_bytes = 0
        messages = 0
        while queue and write_bytes < transport.write_bytes_max:
            count = min(len(queue), transport.frame_messages_max)
            batch = [queue.popleft() for _ in range(count)]
            for frame in self._encode(batch):
                chunks.append(frame)
                write_bytes += len(frame)
            messages += count
        if not chunks:
            return None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data, messages, len(chunks), write_bytes

    def _write_now(self, peer: _Peer, fd: int) -> None:
        """Write what ``peer`` has queued on its idle plain connection, from ``send_nowait``;
        the sender task gets what the socket does not take at once."""
        write = self._take_write(peer)
        if write is None:
            return
        data, messages, frames, write_bytes = write
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            # As a failed write of the task: these are lost, and the task ends the connection.
            self._counters["dropped_write_failed"] += messages
            peer.write_error = exc
            peer.fd = None
            peer.wakeup.set()
            return
        self._counters["writes_direct"] += 1
        if written < len(data):
            peer.backlog = (data[written:], messages, frames, write_bytes)
            peer.wakeup.set()
            return
        self._wrote(messages, frames, write_bytes)
        if peer.queue:  # more than one write's worth was queued
            peer.wakeup.set()

    def _wrote(self, messages: int, frames: int, write_bytes: int) -> None:
        counters = self._counters
        counters["messages_written"] += messages
        counters["frames_written"] += frames
        counters["bytes_written"] += write_bytes

    def _encode(self, batch: list[Message]) -> list[bytes]:
        """Frames for ``batch`` that each fit ``max_frame_bytes``, halving a batch too big."""
        frame = encode_frame(batch)
        if len(frame) - FRAME_HEADER_BYTES <= self.transport.max_frame_bytes:
            return [frame]
        if len(batch) == 1:
            self._counters["dropped_too_large"] += 1
            logger.warning(
                "node %d: dropping a %s to node %d: its frame of %d bytes exceeds "
                "max_frame_bytes %d",
                self.node_id,
                type(batch[0]).__name__,
                batch[0].dst,
                len(frame) - FRAME_HEADER_BYTES,
                self.transport.max_frame_bytes,
            )
            return []
        middle = len(batch) // 2
        return self._encode(batch[:middle]) + self._encode(batch[middle:])

    # --- Inbound ------------------------------------------------------------------------------

    async def _handle_inbound(self, raw: trio.SocketStream) -> None:
        """One accepted connection, start to end. Never raises (but Cancelled): nothing a peer
        sends may take down the node."""
        address = _peer_address(raw)
        stream: trio.abc.Stream = raw
        peer_id: NodeId | None = None
        if self._handshakes >= self.transport.inbound_handshakes_max:
            self._counters["refused"] += 1
            logger.warning(
                "node %d: refusing connection from %s: %d handshakes in progress",
                self.node_id,
                address,
                self._handshakes,
            )
            await trio.aclose_forcefully(raw)
            return
        try:
            self._handshakes += 1
            try:
                stream, peer_id = await self._accept_handshake(raw)
            finally:
                self._handshakes -= 1
            self._counters["accepted"] += 1
            logger.info(
                "node %d: accepted connection from node %d at %s", self.node_id, peer_id, address
            )
            with trio.CancelScope() as scope:
                previous = self._inbound.get(peer_id)
                if previous is not None:
                    # Newest wins: the old one belongs to a peer that restarted or reconnected.
                    previous.cancel()
                self._inbound[peer_id] = scope
                try:
                    reason = await self._receive_frames(stream, peer_id)
                finally:
                    if self._inbound.get(peer_id) is scope:
                        del self._inbound[peer_id]
            if scope.cancelled_caught:
                reason = "replaced by a newer connection from the same node"
            logger.info(
                "node %d: connection from node %d at %s closed: %s",
                self.node_id,
                peer_id,
                address,
                reason,
            )
        except (PeerRefused, CodecError, trio.TooSlowError) as exc:
            self._counters["refused"] += 1
            level = logging.WARNING
            if isinstance(exc, IdentityRefused):
                # An error, as each failed connection of the refused node logs one: the first
                # and then every _CONNECT_FAILURES_WARN-th (its retries come every backoff).
                count = self._identity_refusals.get(exc.peer_id, 0) + 1
                self._identity_refusals[exc.peer_id] = count
                level = (logging.ERROR if count == 1 or count % _CONNECT_FAILURES_WARN == 0
                         else logging.DEBUG)
            logger.log(
                level, "node %d: refused connection from %s: %s", self.node_id, address,
                _describe(exc)
            )
        except _FrameRejected as exc:
            self._counters["closed_bad_frame"] += 1
            logger.warning(
                "node %d: closing connection from node %s at %s: %s",
                self.node_id,
                peer_id,
                address,
                exc,
            )
        except _NETWORK_ERRORS as exc:
            logger.info(
                "node %d: connection from %s failed: %s", self.node_id, address, _describe(exc)
            )
        except Exception:
            # A bug, not the peer's fault; still confined to this connection.
            logger.exception(
                "node %d: unexpected error on connection from %s", self.node_id, address
            )
        finally:
            await trio.aclose_forcefully(stream)
            if stream is not raw:
                await trio.aclose_forcefully(raw)

    async def _accept_handshake(self, raw: trio.SocketStream) -> tuple[trio.abc.Stream, NodeId]:
        transport = self.transport
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        with trio.fail_after(transport.handshake_timeout_seconds):
            stream = await transport.security.wrap_inbound(raw)
            hello = await _receive_hello(stream)
            if hello.cluster_id != transport.cluster_id:
                raise PeerRefused(
                    f"cluster id {hello.cluster_id} is not this cluster's {transport.cluster_id}"
                )
            if hello.dst != self.node_id:
                raise PeerRefused(f"hello is addressed to node {hello.dst}, this is {self.node_id}")
            if hello.src == self.node_id or (
                hello.src not in self._peers and hello.src not in transport.members
            ):
                raise PeerRefused(f"node id {hello.src} is not a member of this cluster")
            transport.security.check_peer(stream, hello.src)
            try:
                await self._check_identity(hello.src, hello.data_id)
            except IdentityRefused:
                # Say why before closing: the refused node logs it (its operator must act).
                known = self._identity.known(hello.src) if self._identity is not None else None
                with contextlib.suppress(*_NETWORK_ERRORS):
                    await stream.send_all(encode_hello(Hello(
                        self.node_id, hello.src, transport.cluster_id, known or NO_DATA_ID,
                        refused=True)))
                raise
            reply = Hello(self.node_id, hello.src, transport.cluster_id, self._data_id)
            await stream.send_all(encode_hello(reply))
        return stream, hello.src

    async def _check_identity(self, peer_id: NodeId, data_id: int) -> None:
        """Refuse (``IdentityRefused``) a peer whose data directory is not the one this node
        knew for it; record it, durably, the first time (before anything is taken from it)."""
        identity = self._identity
        if identity is None:
            return
        refusal = identity.check(peer_id, data_id)
        if refusal is None and identity.known(peer_id) is None and data_id != NO_DATA_ID:
            try:
                refusal = await trio.to_thread.run_sync(identity.record, peer_id, data_id)
            except OSError as exc:
                # Not the peer's fault, but nothing may be taken from it unrecorded.
                refusal = (f"cannot record node {peer_id}'s data directory in "
                           f"{identity.directory}: {exc.strerror or exc}")
        if refusal is not None:
            self._counters["refused_identity"] += 1
            raise IdentityRefused(refusal, peer_id)

    async def _receive_frames(self, stream: trio.abc.Stream, peer_id: NodeId) -> str:
        transport = self.transport
        counters = self._counters
        decoder = FrameDecoder(
            max_frame_bytes=transport.max_frame_bytes,
            frame_messages_max=transport.frame_messages_max,
        )
        node_id = self.node_id
        while True:
            data = await stream.receive_some(transport.receive_bytes_max)
            if not data:
                return "peer closed the connection"
            counters["bytes_received"] += len(data)
            try:
                batches = decoder.feed(data)
            except CodecError as exc:
                raise _FrameRejected(f"bad frame: {exc}") from None
            for batch in batches:
                for message in batch:
                    # The hello said who is talking; a message claiming otherwise is a forgery
                    # (or a bug) and must not reach the core.
                    if message.src != peer_id or message.dst != node_id:
                        raise _FrameRejected(
                            f"{type(message).__name__} from {message.src} to {message.dst} "
                            f"on the connection of node {peer_id} to node {node_id}"
                        )
                counters["frames_received"] += 1
                counters["received"] += len(batch)
                await self._inbox_put(batch)

    def deliver_to(self, sink: Sink) -> None:
        """Hand every batch received from now on to ``sink`` rather than to ``receive``
        (``raftlib.transport.base``): a batch holds the messages of one peer's frame, whose
        senders ``_receive_frames`` checked. A full sink holds that connection's reader, as a
        full inbox does."""
        self._sink = sink

    async def _inbox_put(self, batch: list[Message]) -> None:
        sink = self._sink
        if sink is not None:
            if not sink.put_nowait(batch):
                self._counters["inbox_full_waits"] += 1
                await sink.put(batch)
            return
        while self._inbox_messages >= self.transport.inbox_messages_max:
            self._counters["inbox_full_waits"] += 1
            await self._inbox_space.park()
        self._inbox.append(batch)
        self._inbox_messages += len(batch)
        self._inbox_ready.unpark_all()


class _FrameRejected(Exception):
    """Internal: a frame on an established connection was invalid; close the connection."""


async def _receive_hello(stream: trio.abc.Stream) -> Hello:
    """A peer's hello; its head first (``check_hello_head``): a peer of another version sends
    a hello of another length, and is named as such instead of timing out."""
    head = await _receive_exactly(stream, HELLO_HEAD_BYTES)
    check_hello_head(head)
    return decode_hello(head + await _receive_exactly(stream, HELLO_BYTES - HELLO_HEAD_BYTES))


async def _receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        if not chunk:
            raise PeerRefused(f"connection closed after {len(buf)} of {size} hello bytes")
        buf += chunk
    return bytes(buf)


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "<unknown address>"
    if isinstance(name, tuple) and len(name) >= 2:
        return _format_address((str(name[0]), int(name[1])))
    return str(name)


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    # trio wraps the informative error (ECONNREFUSED, an SSL alert) in a generic one.
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if cause is not None and isinstance(exc, OSError | trio.BrokenResourceError):
        text = f"{text}: {cause}"
    return " ".join(text.split())
