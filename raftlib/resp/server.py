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
import ssl
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from raftlib.resp.protocol import (
    ErrorReply,
    Reply,
    RespLimits,
    RespParser,
    RespProtocolError,
    encode,
    encode_into,
)

log = logging.getLogger("raftlib.resp")

# Answers one command.
Handler = Callable[[list[bytes]], Awaitable[Reply]]
# Answers the pipelined commands of one read together: one reply per command, in order, with
# the effects of running them one after another.
BatchHandler = Callable[[list[list[bytes]]], Awaitable[list[Reply]]]


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ServerLimits.{attribute.name} must be an int >= 1, got {value!r}")


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"ServerLimits.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


@attrs.frozen
class ServerLimits:
    connections_max: int = attrs.field(default=10_000, validator=_positive_int)
    # 0: connections may stay idle forever (Redis's default); ``raftlib serve`` sets a limit.
    idle_timeout_seconds: float = attrs.field(default=0.0, validator=_seconds)
    # TLS only: the handshake's deadline, counted from the accept (0: no deadline).
    handshake_timeout_seconds: float = attrs.field(default=10.0, validator=_seconds)
    receive_bytes_max: int = attrs.field(default=64 * 1024, validator=_positive_int)
    # Pipelined commands answered as one batch (one send of their replies); more complete
    # commands wait in the parser for the next batch. Bounds a batch's replies in memory to
    # this many replies.
    batch_commands_max: int = attrs.field(default=1024, validator=_positive_int)
    # What the parsers of all connections together may hold (``parser_bytes_held``: unfinished
    # commands and unparsed input). The connection whose read goes past it is answered with an
    # error naming this limit and closed. Per connection the bound is request_bytes_max +
    # unparsed_bytes_max; this caps the sum, whatever connections_max allows.
    parser_bytes_total_max: int = attrs.field(default=256 * 1024 * 1024,
                                              validator=_positive_int)
    protocol: RespLimits = attrs.field(factory=RespLimits)


@attrs.define
class ServerStatistics:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    commands: int = 0
    batches: int = 0  # commands / batches: how much pipelining the clients do
    # What every connection's parser holds now (RespParser.held_bytes, summed): unparsed input
    # plus commands still arriving. At most connections_max x (request_bytes_max +
    # unparsed_bytes_max); see the module docstring.
    parser_bytes_held: int = 0
    protocol_errors: int = 0
    budget_closed: int = 0  # connections closed for parser_bytes_total_max
    handshake_failures: int = 0
    idle_closed: int = 0


class RespServer:
    """Serves one handler on any number of listeners; see the module docstring."""

    def __init__(
        self, handler: Handler, *, batch: BatchHandler | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self._handler = handler
        self._batch: BatchHandler = (
            batch if batch is not None else functools.partial(_one_at_a_time, handler))
        self.limits = limits or ServerLimits()
        self.stats = ServerStatistics()

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]]
        = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(self.serve_connection, list(listeners),
                                   task_status=task_status)

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
                await self._converse(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the peer went away; nothing to answer
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

    async def _converse(self, stream: trio.abc.Stream) -> None:
        parser = RespParser(self.limits.protocol)
        stats = self.stats
        idle = self.limits.idle_timeout_seconds
        receive_bytes_max = self.limits.receive_bytes_max
        held = 0  # what this connection's parser holds, as counted in stats.parser_bytes_held
        try:
            while True:
                # Never read more than the parser may hold: a legal stream always fits, and
                # the unparsed input of one connection stays within unparsed_bytes_max.
                room = min(receive_bytes_max, parser.room_bytes())
                assert room >= 1, "the parser was drained, so one item never fills it"
                if idle > 0:
                    with trio.move_on_after(idle) as scope:
                        data = await stream.receive_some(room)
                    if scope.cancelled_caught:
                        stats.idle_closed += 1
                        return
                else:
                    data = await stream.receive_some(room)
                if not data:
                    return
                commands, error = self._take_commands(parser, data)
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
                    if not await self._answer(stream, commands, error):
                        return
                    if not full:
                        break
                    # A full batch: more complete commands may be waiting in the parser.
                    commands, error = self._take_commands(parser, b"")
                    now_held = parser.held_bytes
                    stats.parser_bytes_held += now_held - held
                    held = now_held
        finally:
            stats.parser_bytes_held -= held

    def _take_commands(
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
        self, stream: trio.abc.Stream, commands: list[list[bytes]], error: ErrorReply | None,
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
            await stream.send_all(out)
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
