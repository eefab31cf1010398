"""Pipelining: the complete commands of one read are one batch; consecutive writes are one
``propose_batch``, consecutive reads share one ``read_barrier``, effects keep the commands'
order, and the replies go out in order in one send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import outcome
import pytest
import trio
import trio.testing

from raftlib.kv import KvStateMachine
from raftlib.node import Node, ProposalGroup
from raftlib.read_batcher import ReadBatcher
from raftlib.resp import ErrorReply, Reply, RespParser, ServerLimits, SimpleString
from raftlib.resp.protocol import encode_command
from raftlib.resp.server import RespServer
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import open_local_cluster
from tests.raftlib.kv.workload import machine

OK = SimpleString("OK")


class SpyNode:
    """A real node that records which of its calls the handler made, in order."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.calls: list[str] = []

    async def propose(self, command: bytes) -> Any:
        self.calls.append("propose")
        return await self._node.propose(command)

    async def propose_batch(
        self, commands: Sequence[bytes], **options: Any,
    ) -> list[outcome.Outcome[Any]]:
        self.calls.append(f"propose_batch({len(commands)})")
        return await self._node.propose_batch(commands, **options)

    def propose_batch_nowait(self, commands: list[bytes], **options: Any) -> ProposalGroup:
        self.calls.append(f"propose_batch({len(commands)})")
        return self._node.propose_batch_nowait(commands, **options)

    async def read_barrier(self) -> int:
        self.calls.append("read_barrier")
        return await self._node.read_barrier()

    async def read(self, fn: Any, *args: Any) -> Any:
        self.calls.append("read")
        return await self._node.read(fn, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


class Batches:
    """Runs a batch the way one of the server's paths does: ``handle_batch`` in the
    connection's task, or ``begin_batch`` and its pending batch for the event loop (with a read
    batcher, as ``serve_kv`` runs it)."""

    def __init__(self, handler: KvCommandHandler, path: str) -> None:
        self.handler = handler
        self.path = path

    async def handle_batch(self, commands: list[list[bytes]]) -> list[Reply]:
        if self.path == "tasks":
            return await self.handler.handle_batch(commands)
        woken = trio.Event()

        def wake() -> None:
            woken.set()

        started = self.handler.begin_batch(commands, wake)
        assert started is not None, "the KV service begins every batch but an operator's"
        while not isinstance(started, list):
            await woken.wait()
            woken = trio.Event()
            replies = started.advance()
            if replies is not None:
                return replies
        return started


@pytest.fixture(params=["tasks", "loop"])
async def spied(autojump_clock: trio.testing.MockClock,
                request: pytest.FixtureRequest) -> AsyncIterator[tuple[Batches, SpyNode]]:
    async with open_local_cluster(3, seed=1, state_machine_factory=KvStateMachine) as cluster, \
            trio.open_nursery() as nursery:
        leader = await cluster.wait_leader()
        spy = SpyNode(cluster.node(leader))
        batcher = None
        if request.param == "loop":
            batcher = ReadBatcher(spy.read_barrier, timeout_seconds=2.0)
            nursery.start_soon(batcher.run)
        handler = KvCommandHandler(cast(Node, spy), machine(cluster, leader),
                                   client_addresses={}, clock=trio.current_time,
                                   read_batcher=batcher)
        yield Batches(handler, request.param), spy
        nursery.cancel_scope.cancel()


def cmd(text: str) -> list[bytes]:
    return text.encode().split()


async def test_consecutive_writes_are_one_propose_batch_and_consecutive_reads_one_barrier(
    spied: tuple[Batches, SpyNode],
) -> None:
    handler, spy = spied
    replies = await handler.handle_batch([
        cmd("SET a 1"), cmd("SET b 2"), cmd("PING"), cmd("INCR n"), cmd("CAS a 1 3"),
        cmd("GET a"), cmd("GET b"), cmd("ECHO x"), cmd("DBSIZE"), cmd("GET nope"),
    ])
    assert replies == [OK, OK, SimpleString("PONG"), 1, 1, b"3", b"2", b"x", 3, None]
    assert spy.calls == ["propose_batch(4)", "read_barrier"]


async def test_a_read_after_a_write_in_one_pipeline_sees_it_effects_keep_command_order(
    spied: tuple[Batches, SpyNode],
) -> None:
    handler, spy = spied
    replies = await handler.handle_batch([
        cmd("SET a 1"), cmd("GET a"), cmd("SET a 2"), cmd("APPEND a x"), cmd("GET a"),
        cmd("DEL a"), cmd("GET a"), cmd("DBSIZE"),
    ])
    assert replies == [OK, b"1", OK, 2, b"2x", 1, None, 0]
    assert spy.calls == ["propose_batch(1)", "read_barrier", "propose_batch(2)",
                         "read_barrier", "propose_batch(1)", "read_barrier"]


async def test_bad_commands_in_a_pipeline_get_their_own_errors_and_split_nothing(
    spied: tuple[Batches, SpyNode],
) -> None:
    handler, spy = spied
    replies = await handler.handle_batch([
        cmd("SET a 1"), cmd("FLUSHALL"), cmd("SET b"), cmd("INCR a"), cmd("GET a"),
    ])
    assert replies[0] == OK and replies[3] == 2 and replies[4] == b"2"
    assert replies[1] == ErrorReply("ERR unknown command 'FLUSHALL'")
    assert replies[2] == ErrorReply("ERR wrong number of arguments for 'set'")
    assert spy.calls == ["propose_batch(2)", "read_barrier"]


async def test_writes_a_new_leader_cannot_stamp_yet_are_refused_alone_or_in_a_pipeline(
    spied: tuple[Batches, SpyNode],
) -> None:
    """Until a new leader applied the entries before its term, its leader clock has no time
    to stamp a write with (``LeaderClockNotReady``): each such write is answered TRYAGAIN and
    nothing is proposed, in a batch of one command as in a pipeline."""
    handler, spy = spied
    spy.applied_every_command = False  # (the handler's leader clock asks the node)
    retry = ErrorReply("TRYAGAIN a new leader is applying its log; nothing was applied")
    assert await handler.handle_batch([cmd("SET a 1")]) == [retry]
    assert await handler.handle_batch([cmd("SET a 1"), cmd("PING")]) == [
        retry, SimpleString("PONG")]
    assert spy.calls == []


class CountingStream(trio.abc.Stream):
    """The server's end of an in-memory connection; counts the server's sends."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sends = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends += 1
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Recorder:
    """A batch handler that records each batch and answers every command with its name."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def handle(self, args: list[bytes]) -> Reply:
        return (await self.handle_batch([args]))[0]

    async def handle_batch(self, commands: list[list[bytes]]) -> list[Reply]:
        self.batches.append(len(commands))
        await trio.lowlevel.checkpoint()
        return [args[0] for args in commands]


async def converse(
    server: RespServer, wire: bytes, replies: int
) -> tuple[list[Reply], CountingStream, bool]:
    """Send ``wire`` in one write; collect ``replies`` replies; report whether it closed."""
    client, server_end = trio.testing.memory_stream_pair()
    counting = CountingStream(server_end)
    got: list[Reply] = []
    closed = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, counting)
        await client.send_all(wire)
        parser = RespParser()
        with trio.fail_after(5):
            while len(got) < replies:
                while (value := parser.next_value()) is not None:
                    got.append(value[0])
                if len(got) >= replies:
                    break
                data = await client.receive_some()
                if not data:
                    break
                parser.feed(data)
            await client.send_eof()
            closed = await client.receive_some() == b""
        nursery.cancel_scope.cancel()
    return got, counting, closed


async def test_the_commands_of_one_read_are_one_batch_answered_in_order_in_one_send() -> None:
    recorder = Recorder()
    server = RespServer(recorder.handle, batch=recorder.handle_batch)
    wire = b"".join(encode_command([b"C%d" % i, b"x"]) for i in range(16)) + b"PING\r\n"
    got, stream, _ = await converse(server, wire, 17)
    assert got == [b"C%d" % i for i in range(16)] + [b"PING"]
    assert recorder.batches == [17]
    assert stream.sends == 1
    assert server.statistics().commands == 17 and server.statistics().batches == 1


async def test_a_batch_is_at_most_batch_commands_max_and_the_rest_follows_without_a_read(
) -> None:
    recorder = Recorder()
    server = RespServer(recorder.handle, batch=recorder.handle_batch,
                        limits=ServerLimits(batch_commands_max=4))
    wire = b"".join(encode_command([b"C%d" % i]) for i in range(10))
    got, stream, _ = await converse(server, wire, 10)
    assert got == [b"C%d" % i for i in range(10)]
    assert recorder.batches == [4, 4, 2]
    assert stream.sends == 3


async def test_a_protocol_error_answers_the_commands_before_it_then_one_error_and_closes(
) -> None:
    recorder = Recorder()
    server = RespServer(recorder.handle, batch=recorder.handle_batch)
    wire = encode_command([b"A"]) + encode_command([b"B"]) + b"*1\r\n$3\r\nabcXY"
    got, stream, closed = await converse(server, wire, 3)
    assert got[:2] == [b"A", b"B"]
    assert isinstance(got[2], ErrorReply) and "not followed by CRLF" in got[2].text
    assert closed and stream.sends == 1 and recorder.batches == [2]


async def test_quit_in_a_pipeline_answers_what_came_before_and_runs_nothing_after() -> None:
    recorder = Recorder()
    server = RespServer(recorder.handle, batch=recorder.handle_batch)
    wire = encode_command([b"A"]) + b"QUIT\r\n" + encode_command([b"B"])
    got, _, closed = await converse(server, wire, 2)
    assert got == [b"A", OK]
    assert closed and recorder.batches == [1]


async def test_a_write_batch_without_a_quorum_answers_unknown_after_one_shared_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1, state_machine_factory=KvStateMachine) as cluster:
        leader = await cluster.wait_leader()
        spy = SpyNode(cluster.node(leader))
        handler = KvCommandHandler(cast(Node, spy), machine(cluster, leader),
                                   client_addresses={}, clock=trio.current_time,
                                   config=KvServiceConfig(request_timeout_seconds=1.0))
        cluster.network.isolate(leader)
        started = trio.current_time()
        with trio.fail_after(30):
            try:
                replies = await handler.handle_batch([cmd("SET a 1"), cmd("SET b 2"),
                                                      cmd("INCR c")])
            except trio.Cancelled as exc:
                # Left to propagate, a stray Cancelled ends a pytest-trio test quietly, as
                # a pass, before its assertions run.
                raise AssertionError("the batch's deadline escaped handle_batch") from exc
        waited = trio.current_time() - started
        assert all(isinstance(r, ErrorReply) and r.code == "UNKNOWN" for r in replies), replies
        assert spy.calls == ["propose_batch(3)"]
        assert 1.0 <= waited < 1.1  # one deadline for the batch, not one per command


async def test_on_a_follower_pipelined_writes_are_redirected_and_reads_still_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1, state_machine_factory=KvStateMachine) as cluster:
        leader = await cluster.wait_leader()
        follower = next(n for n in cluster.ids if n != leader)
        addresses = {n: f"127.0.0.1:{7000 + n}" for n in cluster.ids}
        on_leader = KvCommandHandler(cluster.node(leader), machine(cluster, leader),
                                     client_addresses=addresses, clock=trio.current_time)
        assert await on_leader.handle_batch([cmd("SET a 1")]) == [OK]
        handler = KvCommandHandler(cluster.node(follower), machine(cluster, follower),
                                   client_addresses=addresses, clock=trio.current_time)
        replies = await handler.handle_batch([cmd("SET a 2"), cmd("GET a"), cmd("DEL a")])
        moved = ErrorReply(f"MOVED 0 {addresses[leader]}")
        assert replies == [moved, b"1", moved]
