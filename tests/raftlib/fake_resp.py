"""A scripted RESP server on 127.0.0.1 for client tests: it reads each request whole, records
it, then does what the script says (answer, answer late, hold the request, drop the connection).

It knows nothing of Raft: a test states what the "service" did with each request, so the
client's classification of the outcome can be checked against what really happened.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from raftlib.resp.protocol import Reply, RespParser, encode

RECEIVE_BYTES_MAX = 64 * 1024
# Long enough to outlast any client deadline in these tests (virtual seconds under autojump).
HOLD_SECONDS = 3600.0


@attrs.frozen
class Answer:
    """Reply ``reply`` ``after_seconds`` after the request was read in full."""

    reply: Reply
    after_seconds: float = 0.0


@attrs.frozen
class Hold:
    """Read the request and never answer (until the server stops)."""


@attrs.frozen
class Drop:
    """Read the request, then close the connection without a reply."""


@attrs.frozen
class Garble:
    """Read the request, answer bytes that are not RESP, and keep the connection open."""

    data: bytes = b"?not resp\r\n"


Behaviour = Answer | Hold | Drop | Garble
# What to do with the n-th request (0-based, counted over all connections) and its arguments.
Script = Callable[[int, list[bytes]], Behaviour]


@attrs.define
class FakeRespServer:
    script: Script
    address: str = ""
    requests: list[list[bytes]] = attrs.Factory(list)
    # Set once a request has been read in full: from then on the "service" has it.
    received: trio.Event = attrs.Factory(trio.Event)

    async def _serve(self, stream: trio.SocketStream) -> None:
        parser = RespParser()
        async with stream:
            while True:
                command = parser.next_command()
                if command is None:
                    data = await stream.receive_some(RECEIVE_BYTES_MAX)
                    if not data:
                        return
                    parser.feed(bytes(data))
                    continue
                n = len(self.requests)
                self.requests.append(command)
                self.received.set()
                behaviour = self.script(n, command)
                if isinstance(behaviour, Drop):
                    return
                if isinstance(behaviour, Hold):
                    await trio.sleep(HOLD_SECONDS)
                    return
                if isinstance(behaviour, Garble):
                    await stream.send_all(behaviour.data)
                    continue
                await trio.sleep(behaviour.after_seconds)
                await stream.send_all(encode(behaviour.reply))


@asynccontextmanager
async def serve_fake_resp(script: Script) -> AsyncIterator[FakeRespServer]:
    server = FakeRespServer(script)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server._serve, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        server.address = f"127.0.0.1:{port}"
        yield server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def refusing_address() -> AsyncIterator[str]:
    """An address whose connects are refused: a port bound (so nobody else takes it) but not
    listening, which makes the kernel answer SYN with RST."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
