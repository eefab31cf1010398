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

TLS (issue 7) slots in at the listener: ``serve_resp`` takes any ``trio.abc.Listener`` of
streams, so a ``trio.SSLListener`` wrapping the TCP listeners works unchanged. The handshake
should be bounded by its own timeout there (``trio.SSLListener`` handshakes lazily, on the first
read, which the idle timeout covers).
"""

from __future__ import annotations

import contextlib
import logging
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


@attrs.frozen
class ServerLimits:
    connections_max: int = 10_000
    idle_timeout_seconds: float = 0.0  # 0: connections may stay idle forever
    receive_bytes_max: int = 64 * 1024
    protocol: RespLimits = attrs.field(factory=RespLimits)


@attrs.define
class ServerStatistics:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    commands: int = 0
    protocol_errors: int = 0


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
                await self._converse(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the peer went away; nothing to answer
            finally:
                stats.connections_open -= 1

    async def _converse(self, stream: trio.abc.Stream) -> None:
        parser = RespParser(self.limits.protocol)
        idle = self.limits.idle_timeout_seconds
        while True:
            with trio.move_on_after(idle if idle > 0 else float("inf")) as scope:
                data = await stream.receive_some(self.limits.receive_bytes_max)
            if scope.cancelled_caught or not data:
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


async def open_tcp_listeners(port: int, host: str = "127.0.0.1") -> list[trio.SocketListener]:
    """Listeners on ``host`` only (loopback by default: never all interfaces by accident)."""
    return await trio.open_tcp_listeners(port, host=host)
