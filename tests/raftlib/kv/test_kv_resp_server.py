"""The RESP port over real TCP: commands, sessions, MOVED redirects, and hostile clients
(malformed framing, unknown commands, wrong arity, oversized values and bulks, too many
connections) each get a RESP error while the node keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

from raftlib.client import open_client
from raftlib.kv import KvStateMachine
from raftlib.read_batcher import ReadBatcher
from raftlib.resp import ErrorReply, Reply, RespParser, ServerLimits, SimpleString
from raftlib.resp.protocol import encode_command
from raftlib.resp.server import RespServer
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import LocalCluster, open_local_cluster
from tests.raftlib.kv.workload import machine

LIMITS = ServerLimits(connections_max=4)
SERVICE = KvServiceConfig(value_bytes_max=1000)


@attrs.define
class Served:
    cluster: LocalCluster
    ports: dict[int, int]
    servers: dict[int, RespServer]
    # Client streams the test opened; closed when the cluster stops.
    streams: list[trio.abc.AsyncResource] = attrs.field(factory=list)

    def address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"


# How the server runs its connections: a task each, or one event loop for all with the
# handler's ``begin_batch`` (raftlib.resp.reactor, what ``serve_kv`` runs). Every test of this
# file runs both ways: they must answer alike.
PATHS = ["tasks", "loop"]


async def serve_cluster(
    size: int, limits: ServerLimits = LIMITS, path: str = "tasks",
) -> AsyncIterator[Served]:
    async with open_local_cluster(size, seed=1, state_machine_factory=KvStateMachine) as c, \
            trio.open_nursery() as nursery:
        listeners = {n: await trio.open_tcp_listeners(0, host="127.0.0.1") for n in c.ids}
        ports = {n: ls[0].socket.getsockname()[1] for n, ls in listeners.items()}
        served = Served(c, ports, {})
        for n in c.ids:
            batcher = None
            if path == "loop":
                batcher = ReadBatcher(c.node(n).read_barrier,
                                      timeout_seconds=SERVICE.read_timeout_seconds)
                nursery.start_soon(batcher.run)
            handler = KvCommandHandler(
                c.node(n), machine(c, n), config=SERVICE, read_batcher=batcher,
                client_addresses={m: served.address(m) for m in c.ids})
            served.servers[n] = RespServer(
                handler.handle, batch=handler.handle_batch,
                begin=handler.begin_batch if path == "loop" else None, limits=limits)
            await nursery.start(served.servers[n].serve, listeners[n])
        await c.wait_leader()
        try:
            yield served
        finally:
            for stream in served.streams:
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


@pytest.fixture(params=PATHS)
async def one(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for served in serve_cluster(1, path=request.param):
        yield served


@pytest.fixture(params=PATHS)
async def three(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for served in serve_cluster(3, path=request.param):
        yield served


class Raw:
    """A bare TCP connection speaking RESP by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = RespParser()

    @classmethod
    async def open(cls, served: Served, node_id: int = 1) -> Raw:
        stream = await trio.open_tcp_stream("127.0.0.1", served.ports[node_id])
        served.streams.append(stream)
        return cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> Reply:
        with trio.fail_after(5):
            while (got := self.parser.next_value()) is None:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("connection closed")
                self.parser.feed(bytes(data))
        return got[0]

    async def call(self, *args: bytes) -> Reply:
        await self.send(encode_command(list(args)))
        return await self.reply()

    async def closed(self) -> bool:
        with trio.fail_after(5):
            try:
                return await self.stream.receive_some(1) == b""
            except trio.BrokenResourceError:
                # A reset: the server closed with bytes of ours still unread (the rest of a
                # command it refused), which TCP reports as a reset rather than an EOF.
                return True


async def test_every_command_answers_like_redis(one: Served) -> None:
    raw = await Raw.open(one)
    assert await raw.call(b"PING") == SimpleString("PONG")
    assert await raw.call(b"set", b"k", b"v") == SimpleString("OK")
    assert await raw.call(b"GET", b"k") == b"v"
    assert await raw.call(b"GET", b"nope") is None
    assert await raw.call(b"APPEND", b"k", b"w") == 2
    assert await raw.call(b"INCR", b"n") == 1
    assert await raw.call(b"INCRBY", b"n", b"10") == 11
    assert await raw.call(b"DECR", b"n") == 10
    assert await raw.call(b"CAS", b"k", b"vw", b"z") == 1
    assert await raw.call(b"CAS", b"k", b"vw", b"q") == 0
    # CAS never matches an absent key; SETNX is the cas from "absent" (the register's nil).
    assert await raw.call(b"CAS", b"fresh", b"", b"1") == 0
    assert await raw.call(b"SETNX", b"fresh", b"1") == 1
    assert await raw.call(b"SETNX", b"fresh", b"2") == 0
    assert await raw.call(b"GET", b"fresh") == b"1"
    assert await raw.call(b"DEL", b"fresh") == 1
    assert await raw.call(b"DEL", b"k", b"n", b"x") == 2
    assert await raw.call(b"DBSIZE") == 0
    info = await raw.call(b"INFO")
    assert isinstance(info, bytes) and b"role:leader" in info and b"term:" in info
    reply = await raw.call(b"INCR", b"k2") and await raw.call(b"APPEND", b"s", b"x")
    assert reply == 1
    not_int = await raw.call(b"INCR", b"s")
    assert isinstance(not_int, ErrorReply) and not_int.code == "ERR"


async def test_session_call_applies_a_retried_write_once(one: Served) -> None:
    raw = await Raw.open(one)
    sid = await raw.call(b"SESSION.OPEN")
    assert isinstance(sid, int)
    s = b"%d" % sid
    assert await raw.call(b"SESSION.CALL", s, b"1", b"INCR", b"c") == 1
    assert await raw.call(b"SESSION.CALL", s, b"1", b"INCR", b"c") == 1
    assert await raw.call(b"SESSION.CALL", s, b"2", b"INCR", b"c") == 2
    stale = await raw.call(b"SESSION.CALL", s, b"1", b"INCR", b"c")
    assert isinstance(stale, ErrorReply) and stale.code == "STALESEQ"
    expired = await raw.call(b"SESSION.CALL", b"999", b"1", b"INCR", b"c")
    assert isinstance(expired, ErrorReply) and expired.code == "SESSIONEXPIRED"
    assert await raw.call(b"GET", b"c") == b"2"


async def test_a_write_to_a_follower_is_redirected_with_moved_and_the_client_follows(
    three: Served,
) -> None:
    leader = three.cluster.leader()
    assert leader is not None
    follower = next(n for n in three.cluster.ids if n != leader)
    raw = await Raw.open(three, follower)
    assert await raw.call(b"SET", b"k", b"v") == ErrorReply(f"MOVED 0 {three.address(leader)}")
    # Reads are served by followers too (the ReadIndex is forwarded to the leader).
    async with open_client([three.address(leader)]) as writer:
        await writer.set(b"k", b"v1")
    assert await raw.call(b"GET", b"k") == b"v1"
    async with open_client([three.address(follower)]) as client:
        assert await client.incr(b"n") == 1
        assert client.leader == three.address(leader)


async def test_malformed_framing_gets_an_error_and_only_that_connection_closes(
    one: Served,
) -> None:
    bystander = await Raw.open(one)
    raw = await Raw.open(one)
    await raw.send(b"*1\r\n$3\r\nabcXY")
    reply = await raw.reply()
    assert isinstance(reply, ErrorReply) and "Protocol error" in reply.text
    assert await raw.closed()
    assert await bystander.call(b"PING") == SimpleString("PONG")
    assert one.servers[1].statistics().protocol_errors == 1


async def test_unknown_commands_and_wrong_arity_get_errors_and_the_connection_stays(
    one: Served,
) -> None:
    raw = await Raw.open(one)
    unknown = await raw.call(b"FLUSHALL")
    assert unknown == ErrorReply("ERR unknown command 'FLUSHALL'")
    arity = await raw.call(b"GET")
    assert arity == ErrorReply("ERR wrong number of arguments for 'get'")
    options = await raw.call(b"SET", b"k", b"v", b"NX")
    assert isinstance(options, ErrorReply) and options.code == "ERR"
    assert await raw.call(b"PING") == SimpleString("PONG")


async def test_an_oversized_value_gets_an_error_and_the_connection_stays(one: Served) -> None:
    raw = await Raw.open(one)
    big = await raw.call(b"SET", b"k", b"x" * 1001)
    assert isinstance(big, ErrorReply) and "value_bytes_max" in big.text
    assert await raw.call(b"GET", b"k") is None
    assert await raw.call(b"PING") == SimpleString("PONG")


async def test_a_bulk_beyond_the_framing_limit_gets_an_error_and_the_node_survives(
    one: Served,
) -> None:
    raw = await Raw.open(one)
    await raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999999\r\n")
    reply = await raw.reply()
    assert isinstance(reply, ErrorReply) and "bulk_bytes_max" in reply.text
    assert await raw.closed()
    again = await Raw.open(one)
    assert await again.call(b"PING") == SimpleString("PONG")


async def test_pipelined_and_inline_commands_are_answered_in_order(one: Served) -> None:
    raw = await Raw.open(one)
    await raw.send(encode_command([b"SET", b"a", b"1"]) + b"PING\r\n"
                   + encode_command([b"GET", b"a"]))
    assert [await raw.reply() for _ in range(3)] == [SimpleString("OK"),
                                                      SimpleString("PONG"), b"1"]


async def test_connections_beyond_the_limit_are_refused_and_the_others_keep_working(
    one: Served,
) -> None:
    held = [await Raw.open(one) for _ in range(LIMITS.connections_max)]
    for raw in held:
        assert await raw.call(b"PING") == SimpleString("PONG")
    extra = await Raw.open(one)
    reply = await extra.reply()
    assert reply == ErrorReply("ERR max number of clients reached")
    assert await held[0].call(b"PING") == SimpleString("PONG")


async def test_a_command_whose_handling_raises_closes_only_its_connection() -> None:
    """A bug in handling one command (a pending write's unexpected error once stopped the
    node) ends that client's connection, logged and counted; the server serves on."""

    async def handler(args: list[bytes]) -> Reply:
        if args[0] == b"BOOM":
            raise RuntimeError("a bug")
        return SimpleString("PONG")

    server = RespServer(handler)
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, right)
        await left.send_all(encode_command([b"BOOM"]))
        assert await left.receive_some(100) == b""  # closed, no reply
        assert server.stats.handler_errors == 1
        left2, right2 = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_connection, right2)
        await left2.send_all(encode_command([b"PING"]))
        assert await left2.receive_some(100) == b"+PONG\r\n"
        await left2.aclose()
