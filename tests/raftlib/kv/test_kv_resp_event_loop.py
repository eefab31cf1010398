"""The RESP server's event loop (``raftlib.resp.reactor``) keeps the promises of the
task-per-connection path over real TCP: a read's commands are one batch answered in order, a
batch is at most ``batch_commands_max``, one batch is in flight per connection (its later
commands wait, other connections do not), a protocol error or QUIT answers what came before it
and closes, a handler that raises closes only its connection, a batch the handler cannot begin
runs in a task, and a client that does not read its replies stalls only itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio

from raftlib.resp import ErrorReply, Reply, RespParser, ServerLimits, SimpleString
from raftlib.resp.protocol import encode_command
from raftlib.resp.server import RespServer, open_tcp_listeners


class Later:
    """A batch the test answers by hand (``answer``)."""

    def __init__(self, commands: list[list[bytes]], wake: Callable[[], None]) -> None:
        self.commands = commands
        self.wake = wake
        self.replies: list[Reply] | None = None

    def advance(self) -> list[Reply] | None:
        return self.replies

    def answer(self) -> None:
        self.replies = [args[0] for args in self.commands]
        self.wake()


class Handler:
    """Answers at once with each command's name (PONG for PING); LATER waits for the test,
    ASYNC is left to the async handler, BOOM raises."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.later: list[Later] = []

    def begin(self, commands: list[list[bytes]],
              wake: Callable[[], None]) -> list[Reply] | Later | None:
        self.batches.append([args[0] for args in commands])
        first = commands[0][0]
        if first == b"LATER":
            later = Later(commands, wake)
            self.later.append(later)
            return later
        if first == b"ASYNC":
            return None
        if first == b"BOOM":
            raise RuntimeError("a bug in the handler")
        return [SimpleString("PONG") if args[0] == b"PING" else args[0] for args in commands]

    async def handle(self, args: list[bytes]) -> Reply:
        return (await self.handle_batch([args]))[0]

    async def handle_batch(self, commands: list[list[bytes]]) -> list[Reply]:
        await trio.lowlevel.checkpoint()
        return [b"async:" + args[0] for args in commands]


class Client:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = RespParser()

    async def send(self, *commands: list[bytes]) -> None:
        await self.stream.send_all(b"".join(encode_command(c) for c in commands))

    async def replies(self, count: int) -> list[Reply]:
        got: list[Reply] = []
        with trio.fail_after(5):
            while len(got) < count:
                while len(got) < count and (value := self.parser.next_value()) is not None:
                    got.append(value[0])
                if len(got) < count:
                    data = await self.stream.receive_some(1 << 16)
                    if not data:
                        raise EOFError(f"closed after {got}")
                    self.parser.feed(data)
        return got

    async def nothing_for(self, seconds: float) -> bool:
        with trio.move_on_after(seconds):
            await self.stream.receive_some(1)
            return False
        return True

    async def closed(self) -> bool:
        with trio.fail_after(5):
            try:
                while data := await self.stream.receive_some(1 << 16):
                    self.parser.feed(data)
            except trio.BrokenResourceError:
                pass  # a reset: the server closed with bytes of ours unread
        return True


class Served:
    def __init__(self, server: RespServer, handler: Handler, port: int) -> None:
        self.server = server
        self.handler = handler
        self.port = port
        self.clients: list[Client] = []

    async def connect(self) -> Client:
        client = Client(await trio.open_tcp_stream("127.0.0.1", self.port))
        self.clients.append(client)
        return client


async def serve(limits: ServerLimits) -> AsyncIterator[Served]:
    handler = Handler()
    server = RespServer(handler.handle, batch=handler.handle_batch, begin=handler.begin,
                        limits=limits)
    async with trio.open_nursery() as nursery:
        listeners = await open_tcp_listeners(0)
        await nursery.start(server.serve, listeners)
        port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
        served = Served(server, handler, port)
        try:
            yield served
        finally:
            for client in served.clients:
                await trio.aclose_forcefully(client.stream)
            nursery.cancel_scope.cancel()


@pytest.fixture
async def loop() -> AsyncIterator[Served]:
    async for served in serve(ServerLimits()):
        yield served


@pytest.fixture
async def small_batches() -> AsyncIterator[Served]:
    async for served in serve(ServerLimits(batch_commands_max=4)):
        yield served


async def test_the_commands_of_one_read_are_one_batch_answered_in_order(loop: Served) -> None:
    client = await loop.connect()
    names = [b"C%d" % i for i in range(16)]
    await client.send(*([name, b"x"] for name in names), [b"PING"])
    assert await client.replies(17) == [*names, SimpleString("PONG")]
    assert loop.handler.batches == [[*names, b"PING"]]
    assert loop.server.statistics().commands == 17


async def test_a_batch_is_at_most_batch_commands_max_and_the_rest_follows(
    small_batches: Served,
) -> None:
    client = await small_batches.connect()
    names = [b"C%d" % i for i in range(10)]
    await client.send(*([name] for name in names))
    assert await client.replies(10) == names
    assert [len(b) for b in small_batches.handler.batches] == [4, 4, 2]


async def test_a_pending_batch_holds_its_connections_later_commands_but_not_others(
    loop: Served,
) -> None:
    waiting = await loop.connect()
    other = await loop.connect()
    await waiting.send([b"LATER"])
    with trio.fail_after(5):
        while not loop.handler.later:
            await trio.sleep(0.01)  # polling the handler; nothing to wait on
    await waiting.send([b"PING"])
    await other.send([b"PING"])
    assert await other.replies(1) == [SimpleString("PONG")]
    assert await waiting.nothing_for(0.2)
    assert loop.handler.batches == [[b"LATER"], [b"PING"]], "the PING behind LATER waits"
    loop.handler.later[0].answer()
    assert await waiting.replies(2) == [b"LATER", SimpleString("PONG")]


async def test_a_protocol_error_answers_the_commands_before_it_then_closes(
    loop: Served,
) -> None:
    client = await loop.connect()
    await client.stream.send_all(encode_command([b"LATER"]) + encode_command([b"A"])
                                 + b"*1\r\n$3\r\nabcXY")
    with trio.fail_after(5):
        while not loop.handler.later:
            await trio.sleep(0.01)  # polling the handler; nothing to wait on
    assert await client.nothing_for(0.1), "the error waits for the batch before it"
    loop.handler.later[0].answer()
    got = await client.replies(3)
    assert got[:2] == [b"LATER", b"A"]
    assert isinstance(got[2], ErrorReply) and "not followed by CRLF" in got[2].text
    assert await client.closed()
    assert loop.server.statistics().protocol_errors == 1


async def test_quit_answers_what_came_before_and_runs_nothing_after(loop: Served) -> None:
    client = await loop.connect()
    await client.stream.send_all(encode_command([b"A"]) + b"QUIT\r\n" + encode_command([b"B"]))
    assert await client.replies(2) == [b"A", SimpleString("OK")]
    assert await client.closed()
    assert loop.handler.batches == [[b"A"]]


async def test_a_handler_that_raises_closes_only_its_connection(loop: Served) -> None:
    broken = await loop.connect()
    other = await loop.connect()
    await broken.send([b"BOOM"])
    assert await broken.closed()
    assert loop.server.statistics().handler_errors == 1
    await other.send([b"PING"])
    assert await other.replies(1) == [SimpleString("PONG")]


async def test_a_batch_the_handler_cannot_begin_runs_in_a_task(loop: Served) -> None:
    client = await loop.connect()
    await client.send([b"ASYNC"], [b"X"])
    assert await client.replies(2) == [b"async:ASYNC", b"async:X"]
    await client.send([b"PING"])
    assert await client.replies(1) == [SimpleString("PONG")]


async def test_a_client_that_does_not_read_its_replies_stalls_only_itself(
    small_batches: Served,
) -> None:
    """The loop writes a connection's replies until its socket is full, then stops reading
    from it (so its replies wait in memory one batch at most) until the client reads."""
    stalled = await small_batches.connect()
    other = await small_batches.connect()
    chunk = encode_command([b"A" * 1000]) * 64  # replies as large as the commands
    sent = 0
    with trio.move_on_after(2):  # until both sockets' buffers are full
        while True:
            await stalled.stream.send_all(chunk)
            sent += 64
    commands = small_batches.server.statistics().commands
    assert 0 < commands < sent, "the server stopped reading the client that does not read"
    await trio.sleep(0.2)
    assert small_batches.server.statistics().commands == commands, "and stays stopped"
    await other.send([b"PING"])
    assert await other.replies(1) == [SimpleString("PONG")]
