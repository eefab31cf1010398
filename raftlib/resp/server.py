"""A Trio server for RESP2 commands, independent of what the commands mean.

    async def handle(args: list[bytes]) -> Reply: ...
    await serve_resp(handle, [listener], limits=ServerLimits())

One task per connection reads commands (pipelined ones too) and answers them in order, one
write per batch of replies. What the server guarantees whatever the peer sends:

- a protocol error (not RESP, or beyond a ``RespLimits`` limit) is answered with
  ``-ERR Protocol error: ...`` and that connection is closed; nothing else is affected;
- at most ``connections_max`` connections are served at once; one more is answered with
  ``-ERR max number of clients reached`` and closed;
- a connection silent for ``idle_timeout_seconds`` is closed (0 disables);
- replies waiting to be written are bounded by the commands of one read
  (``receive_bytes_max``), so a client that never reads its replies stalls only itself.

- a TLS connection (``open_tcp_listeners(..., ssl_context=ctx)`` wraps the listeners in
  ``trio.SSLListener``) must finish its handshake within ``handshake_timeout_seconds``, inside
  the ``connections_max`` budget, or it is closed; a failed handshake (no client certificate
  when one is required, plain text on a TLS port ...) is logged with the client's address.

Memory: an idle connection costs its task and, with TLS, its SSL object (a few tens of KiB; see
``bench/idle_connections.py``); a busy one at most ``receive_bytes_max`` plus one value being
parsed (``RespLimits.bulk_bytes_max``). So the worst case is about ``connections_max`` x
(``bulk_bytes_max`` + ``receive_bytes_max``): lower ``connections_max`` or ``bulk_bytes_max``
where that is too much.
"""

from __future__ import annotations

import contextlib
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
)

log = logging.getLogger("raftlib.resp")

Handler = Callable[[list[bytes]], Awaitable[Reply]]


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
    protocol: RespLimits = attrs.field(factory=RespLimits)


@attrs.define
class ServerStatistics:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    commands: int = 0
    protocol_errors: int = 0
    handshake_failures: int = 0
    idle_closed: int = 0


class RespServer:
    """Serves one handler on any number of listeners; see the module docstring."""

    def __init__(self, handler: Handler, *, limits: ServerLimits | None = None) -> None:
        self._handler = handler
        self.limits = limits or ServerLimits()
        self.stats = ServerStatistics()

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]]
        = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.serve_listeners(self._serve_connection, list(listeners),
                                   task_status=task_status)

    def statistics(self) -> ServerStatistics:
        return attrs.evolve(self.stats)

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
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
        idle = self.limits.idle_timeout_seconds
        while True:
            with trio.move_on_after(idle if idle > 0 else float("inf")) as scope:
                data = await stream.receive_some(self.limits.receive_bytes_max)
            if scope.cancelled_caught:
                self.stats.idle_closed += 1
                return
            if not data:
                return
            parser.feed(bytes(data))
            out = bytearray()
            try:
                while (args := parser.next_command()) is not None:
                    self.stats.commands += 1
                    if args[0].upper() == b"QUIT":
                        await stream.send_all(bytes(out) + b"+OK\r\n")
                        return
                    out += encode(await self._handler(args))
            except RespProtocolError as exc:
                self.stats.protocol_errors += 1
                log.info("closing a RESP connection: %s", exc)
                out += encode(ErrorReply(f"ERR Protocol error: {exc}"))
                await stream.send_all(bytes(out))
                return
            if out:
                await stream.send_all(bytes(out))


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
