"""A Trio server for RESP2 commands, independent of what the commands mean.

    async def handle(args: list[bytes]) -> Reply: ...
    await serve_resp(handle, [listener], limits=ServerLimits())

One task per connection reads commands and answers them in order. All complete commands of
one read (up to ``batch_commands_max``) go to the handler together as one batch (a
``BatchHandler`` groups their writes and reads; see ``raftlib.service``) and their replies go
out in one send. What the server guarantees whatever the peer sends:

- a protocol error (not RESP, or beyond a ``RespLimits`` limit) is answered, after the replies
  of the commands before it, with one ``-ERR Protocol error: ...`` naming the limit, and that
  connection is closed (its framing is lost); nothing else is affected;
- at most ``connections_max`` connections are served at once; one more is answered with
  ``-ERR max number of clients reached`` and closed;
- a connection silent for ``idle_timeout_seconds`` is closed (0 disables);
- a connection never reads more than its parser may hold (``RespLimits.unparsed_bytes_max``),
  and a command still arriving holds at most ``RespLimits.request_bytes_max`` of finished
  arguments: a client that trickles a huge command, or holds one half-sent, costs at most
  that much, and parsing costs time linear in what it sent;
- replies waiting to be written are those of one batch (``batch_commands_max`` commands), so a
  client that never reads its replies stalls only itself.

- a TLS connection (``open_tcp_listeners(..., ssl_context=ctx)`` wraps the listeners in
  ``trio.SSLListener``) must finish its handshake within ``handshake_timeout_seconds``, inside
  the ``connections_max`` budget, or it is closed; a failed handshake (no client certificate
  when one is required, plain text on a TLS port ...) is logged with the client's address.

Cost per request (plain TCP): with a ``begin`` (``raftlib.resp.reactor.BeginBatch``; the KV
service gives one), one event loop serves every plain TCP connection from one epoll set and
starts each batch without a task (``raftlib.resp.reactor``): no task wake-up per request, no
re-arm per read. Without one, a connection's task reads and writes its socket's file descriptor
directly (``_SocketWire``) rather than through ``trio.SocketStream``, whose every call yields to
the scheduler once more after the syscall. Either way the idle limit is one shared sweep
(``_IdleSweeper``, every ``idle_timeout_seconds / IDLE_SWEEPS_PER_TIMEOUT``) instead of a cancel
scope per read: under ``redis-benchmark -c 50`` those were about a third of the CPU a PING cost.
A silent connection is then closed between ``idle_timeout_seconds`` and that plus one sweep
period. TLS and other streams keep the generic path (``_StreamWire``).

Memory: an idle connection costs its task and, with TLS, its SSL object (a few tens of KiB; see
``bench/idle_connections.py``); a busy one at most ``request_bytes_max`` + ``unparsed_bytes_max``
in its parser (``statistics().parser_bytes_held`` sums what they hold now) plus one batch of
replies. All connections' parsers together hold at most ``parser_bytes_total_max`` (plus one
read): the connection whose read would go past it gets an error naming the limit and is closed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import ssl
from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from raftlib.resp.limits import BatchHandler as BatchHandler  # re-exported
from raftlib.resp.limits import Handler as Handler
from raftlib.resp.limits import ServerLimits as ServerLimits
from raftlib.resp.limits import ServerStatistics as ServerStatistics
from raftlib.resp.protocol import (
    ErrorReply,
    Reply,
    RespParser,
    RespProtocolError,
    encode,
    encode_into,
)
from raftlib.resp.reactor import (
    BATCHES_WITHOUT_YIELD_MAX,
    COMMANDS_WITHOUT_YIELD_MAX,
    BeginBatch,
    Reactor,
)

log = logging.getLogger("raftlib.resp")

# How often, per idle timeout, the sweep looks for connections silent for that long: a silent
# connection is closed at most 1/IDLE_SWEEPS_PER_TIMEOUT of the timeout late.
IDLE_SWEEPS_PER_TIMEOUT = 8


class _Wire(Protocol):
    """How a connection's bytes move: ``receive`` returns b"" at end of stream and None when
    the connection was idle for ``idle_timeout_seconds``."""

    async def receive(self, room_bytes: int) -> bytes | None: ...

    async def send(self, data: bytes | bytearray) -> None: ...

    async def pace(self, commands: int) -> None:
        """A batch of ``commands`` was answered: yield if the connection has not for long."""


class _StreamWire:
    """Any ``trio.abc.Stream`` (TLS, memory streams in tests): a cancel scope per read for the
    idle limit."""

    def __init__(self, stream: trio.abc.Stream, idle_timeout_seconds: float) -> None:
        self._stream = stream
        self._idle = idle_timeout_seconds

    async def receive(self, room_bytes: int) -> bytes | None:
        if self._idle <= 0:
            return bytes(await self._stream.receive_some(room_bytes))
        with trio.move_on_after(self._idle):
            return bytes(await self._stream.receive_some(room_bytes))
        return None

    async def send(self, data: bytes | bytearray) -> None:
        await self._stream.send_all(data)

    async def pace(self, commands: int) -> None:
        pass  # every send_all yields already


class _SocketWire:
    """A plain TCP connection, read and written through its file descriptor (the stream keeps
    owning and closes it). ``waiting_since`` is the trio time a read began to wait (None while
    the connection is busy): what the idle sweep looks at."""

    def __init__(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        self._fd = stream.socket.fileno()
        self.scope = scope  # cancelled by the sweep: the connection was idle
        self.waiting_since: float | None = None
        # Answered since the socket last made this task wait (BATCHES/COMMANDS_WITHOUT_YIELD_MAX).
        self._batches = 0
        self._commands = 0

    async def pace(self, commands: int) -> None:
        self._batches += 1
        self._commands += commands
        if (self._batches >= BATCHES_WITHOUT_YIELD_MAX
                or self._commands >= COMMANDS_WITHOUT_YIELD_MAX):
            self._batches = self._commands = 0
            await trio.lowlevel.checkpoint()

    async def receive(self, room_bytes: int) -> bytes | None:
        fd = self._fd
        try:
            data = os.read(fd, room_bytes)
        except BlockingIOError:
            pass
        else:
            return data
        self._batches = self._commands = 0  # it waits below: a yield
        while True:
            self.waiting_since = trio.current_time()
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.Cancelled:
                if self.scope.cancel_called:
                    return None
                raise
            finally:
                self.waiting_since = None
            if self.scope.cancel_called:
                # The sweep cancelled it as bytes arrived: idle all the same, and nothing of
                # the new command was read, so closing loses nothing half-done.
                return None
            try:
                return os.read(fd, room_bytes)
            except BlockingIOError:
                continue  # woken without data (another reader's wake-up): wait again

    async def send(self, data: bytes | bytearray) -> None:
        fd = self._fd
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                self._batches = self._commands = 0
                await trio.lowlevel.wait_writable(fd)


class _IdleSweeper:
    """Closes connections silent for ``idle_seconds``: one task for all of them, instead of a
    cancel scope per read."""

    def __init__(self, idle_seconds: float, reactor: Reactor | None) -> None:
        assert idle_seconds > 0
        self.idle_seconds = idle_seconds
        self.wires: set[_SocketWire] = set()
        self._reactor = reactor

    async def run(self) -> None:
        period = self.idle_seconds / IDLE_SWEEPS_PER_TIMEOUT
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for wire in self.wires:
                since = wire.waiting_since
                if since is not None and now - since >= self.idle_seconds:
                    wire.scope.cancel()
            if self._reactor is not None:
                self._reactor.close_idle(now, self.idle_seconds)


class RespServer:
    """Serves one handler on any number of listeners; see the module docstring."""

    def __init__(
        self, handler: Handler, *, batch: BatchHandler | None = None,
        begin: BeginBatch | None = None, limits: ServerLimits | None = None,
    ) -> None:
        self._handler = handler
        self._batch: BatchHandler = (
            batch if batch is not None else functools.partial(_one_at_a_time, handler))
        # With ``begin``, ``serve`` runs one loop for all plain TCP connections
        # (``raftlib.resp.reactor``); ``begin`` answers the same as ``batch``.
        self._begin = begin
        self.limits = limits or ServerLimits()
        self.stats = ServerStatistics()
        # Set while ``serve`` runs its sweep; a plain TCP connection served without one (an
        # idle limit but ``serve_connection`` called directly) takes the generic path.
        self._sweeper: _IdleSweeper | None = None
        # Set while ``serve`` runs the loop (with ``begin``).
        self._reactor: Reactor | None = None

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]]
        = trio.TASK_STATUS_IGNORED,
    ) -> None:
        idle = self.limits.idle_timeout_seconds
        # Another ``serve`` of this server may run the loop and the sweep already: its
        # connections share them.
        reactor = (Reactor(self, self._begin)
                   if self._begin is not None and self._reactor is None else None)
        sweeper = (_IdleSweeper(idle, reactor or self._reactor)
                   if idle > 0 and self._sweeper is None else None)
        try:
            async with trio.open_nursery() as nursery:
                if reactor is not None:
                    nursery.start_soon(reactor.run)
                    self._reactor = reactor
                if sweeper is not None:
                    nursery.start_soon(sweeper.run)
                    self._sweeper = sweeper
                started = await nursery.start(functools.partial(
                    trio.serve_listeners, self.serve_connection, list(listeners)))
                task_status.started(started)
        finally:
            # Connections still open keep their wires, which nothing sweeps any more; they end
            # with this nursery's cancellation (serve_listeners' handlers run inside it).
            if sweeper is not None:
                self._sweeper = None
            if reactor is not None:
                self._reactor = None

    @property
    def batch_handler(self) -> BatchHandler:
        return self._batch

    def statistics(self) -> ServerStatistics:
        return attrs.evolve(self.stats)

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted connection until it closes (what ``serve`` runs per accept;
        also for a stream from elsewhere, e.g. ``trio.testing.memory_stream_pair``)."""
        stats = self.stats
        async with stream:
            if stats.connections_open >= self.limits.connections_max:
                stats.connections_refused += 1
                with trio.move_on_after(1.0):
                    await _send_quietly(stream, encode(ErrorReply(
                        "ERR max number of clients reached")))
                return
            stats.connections_open += 1
            stats.connections_total += 1
            try:
                if isinstance(stream, trio.SSLStream) and not await self._handshake(stream):
                    return
                if isinstance(stream, trio.SocketStream) and self._reactor is not None:
                    await self._reactor.serve(stream)
                elif isinstance(stream, trio.SocketStream) and (
                        self._sweeper is not None or self.limits.idle_timeout_seconds <= 0):
                    await self._converse_socket(stream)
                else:
                    await self._converse(_StreamWire(stream, self.limits.idle_timeout_seconds))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the peer went away; nothing to answer
            except Exception:
                # A command's handling raised: a bug, but one client's request must never take
                # the node down (a pending write's unexpected error once did). Loud in the log
                # and the statistics; this connection ends, whose framing is unknown now.
                stats.handler_errors += 1
                log.exception("closing a RESP connection: handling a command raised")
            finally:
                stats.connections_open -= 1

    async def _handshake(self, stream: trio.SSLStream[trio.SocketStream]) -> bool:
        deadline = self.limits.handshake_timeout_seconds
        reason = "timed out"
        with trio.move_on_after(deadline if deadline > 0 else math.inf):
            try:
                await stream.do_handshake()
                return True
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
                reason = _describe_tls(cause) if cause is not None else "connection closed"
        self.stats.handshake_failures += 1
        log.info("refused a RESP connection from %s: TLS handshake failed: %s",
                 _address(stream.transport_stream), reason)
        return False

    async def _converse_socket(self, stream: trio.SocketStream) -> None:
        sweeper = self._sweeper
        with trio.CancelScope() as scope:
            wire = _SocketWire(stream, scope)
            if sweeper is not None:
                sweeper.wires.add(wire)
            try:
                await self._converse(wire)
            finally:
                if sweeper is not None:
                    sweeper.wires.discard(wire)

    async def _converse(self, wire: _Wire) -> None:
        parser = RespParser(self.limits.protocol)
        stats = self.stats
        receive_bytes_max = self.limits.receive_bytes_max
        held = 0  # what this connection's parser holds, as counted in stats.parser_bytes_held
        try:
            while True:
                # Never read more than the parser may hold: a legal stream always fits, and
                # the unparsed input of one connection stays within unparsed_bytes_max.
                room = min(receive_bytes_max, parser.room_bytes())
                assert room >= 1, "the parser was drained, so one item never fills it"
                data = await wire.receive(room)
                if data is None:
                    stats.idle_closed += 1
                    return
                if not data:
                    return
                commands, error = self.take_commands(parser, data)
                now_held = parser.held_bytes
                stats.parser_bytes_held += now_held - held
                held = now_held
                if error is None and now_held and (
                        stats.parser_bytes_held > self.limits.parser_bytes_total_max):
                    # This read took the server past its budget: this connection's unfinished
                    # command is dropped, so its stream cannot go on. Others keep theirs.
                    stats.budget_closed += 1
                    error = ErrorReply(
                        f"ERR unfinished commands hold {stats.parser_bytes_held} bytes on this "
                        f"server (parser_bytes_total_max is {self.limits.parser_bytes_total_max})"
                        "; closing this connection")
                while True:
                    full = len(commands) == self.limits.batch_commands_max
                    if not await self._answer(wire, commands, error):
                        return
                    if not full:
                        break
                    # A full batch: more complete commands may be waiting in the parser.
                    commands, error = self.take_commands(parser, b"")
                    now_held = parser.held_bytes
                    stats.parser_bytes_held += now_held - held
                    held = now_held
        finally:
            stats.parser_bytes_held -= held

    def take_commands(
        self, parser: RespParser, data: bytes | bytearray
    ) -> tuple[list[list[bytes]], ErrorReply | None]:
        """Feed ``data``; the complete commands (at most ``batch_commands_max``, up to and
        including a QUIT) and the error reply for a protocol error that stopped the stream."""
        commands: list[list[bytes]] = []
        batch_max = self.limits.batch_commands_max
        try:
            if data:
                parser.feed(data)
            while len(commands) < batch_max and (args := parser.next_command()) is not None:
                commands.append(args)
                if args[0].upper() == b"QUIT":
                    break
        except RespProtocolError as exc:
            self.stats.protocol_errors += 1
            log.info("closing a RESP connection: %s", exc)
            return commands, ErrorReply(f"ERR Protocol error: {exc}")
        return commands, None

    async def _answer(
        self, wire: _Wire, commands: list[list[bytes]], error: ErrorReply | None,
    ) -> bool:
        """Run ``commands`` as one batch and send their replies in one write, then ``error``
        if any; False once the connection must close (QUIT, or after ``error``)."""
        quit_ = bool(commands) and commands[-1][0].upper() == b"QUIT"
        if quit_:
            commands.pop()
        out = bytearray()
        if commands:
            self.stats.commands += len(commands)
            self.stats.batches += 1
            replies = await self._batch(commands)
            assert len(replies) == len(commands), "one reply per command"
            for reply in replies:
                encode_into(out, reply)
        if quit_:
            self.stats.commands += 1
            out += b"+OK\r\n"
        elif error is not None:
            encode_into(out, error)
        if out:
            await wire.send(out)
        await wire.pace(len(commands) + quit_)
        return not quit_ and error is None


async def _one_at_a_time(handler: Handler, commands: list[list[bytes]]) -> list[Reply]:
    return [await handler(args) for args in commands]


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await stream.send_all(data)


def _describe_tls(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return " ".join(str(exc).split()) or type(exc).__name__


def _address(stream: trio.abc.Stream) -> str:
    if isinstance(stream, trio.SocketStream):
        try:
            host, port = stream.socket.getpeername()[:2]
        except (OSError, ValueError, TypeError):
            return "<unknown address>"
        return f"{host}:{port}"
    return "<unknown address>"


async def open_tcp_listeners(
    port: int, host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Listeners on ``host`` only (loopback by default: never all interfaces by accident);
    with ``ssl_context``, TLS listeners whose handshakes ``RespServer`` bounds in time."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if ssl_context is None:
        return list(listeners)
    return [trio.SSLListener(listener, ssl_context) for listener in listeners]
