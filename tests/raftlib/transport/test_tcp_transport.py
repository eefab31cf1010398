"""The TCP transport delivers batched frames between nodes, survives restarts and hostile peers."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlib.core.types import AppendEntries, Entry, Message, ReadIndexRequest, TimeoutNow
from raftlib.errors import ConfigError
from raftlib.transport.codec import (
    HELLO_BYTES,
    FrameDecoder,
    Hello,
    decode_hello,
    encode_frame,
    encode_hello,
)
from raftlib.transport.tcp import TcpEndpoint, TcpTransport

LOCALHOST = "127.0.0.1"
TIMEOUT_SECONDS = 10.0  # generous: the machine is shared; every wait normally ends in ms


def msg(src: int, dst: int, seq: int) -> ReadIndexRequest:
    return ReadIndexRequest(term=1, src=src, dst=dst, request_id=seq)


def seqs(messages: list[Message]) -> list[int]:
    return [m.request_id for m in messages if isinstance(m, ReadIndexRequest)]


def cluster(nodes: int = 3, **options: Any) -> TcpTransport:
    """A transport whose nodes listen on ephemeral ports of 127.0.0.1."""
    options.setdefault("backoff_initial_seconds", 0.01)
    options.setdefault("backoff_max_seconds", 0.05)
    options.setdefault("rng_seed", 1)
    return TcpTransport({n: (LOCALHOST, 0) for n in range(1, nodes + 1)}, **options)


@asynccontextmanager
async def opened(transport: TcpTransport, *nodes: int) -> AsyncIterator[list[TcpEndpoint]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(transport.open(n)) for n in nodes]


async def receive_count(endpoint: TcpEndpoint, count: int) -> list[Message]:
    received: list[Message] = []
    with trio.fail_after(TIMEOUT_SECONDS):
        while len(received) < count:
            received.extend(await endpoint.receive())
    return received


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(TIMEOUT_SECONDS):
        while not predicate():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out waiting until {what}")


async def wait_closed_by_peer(stream: trio.SocketStream) -> bytes:
    """Read until the other side closes; returns what it sent meanwhile."""
    received = bytearray()
    with trio.fail_after(TIMEOUT_SECONDS):
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass  # a reset is a close too
    return bytes(received)


async def raw_hello(address: tuple[str, int], src: int, dst: int, cluster_id: int = 0) -> Any:
    """A hand-driven client that completes the hello as node ``src``; returns the stream."""
    stream = await trio.open_tcp_stream(*address)
    await stream.send_all(encode_hello(Hello(src, dst, cluster_id)))
    reply = bytearray()
    with trio.fail_after(TIMEOUT_SECONDS):
        while len(reply) < HELLO_BYTES:
            chunk = await stream.receive_some(HELLO_BYTES - len(reply))
            assert chunk, "server closed the connection during the hello"
            reply += chunk
    assert decode_hello(reply) == Hello(dst, src, cluster_id)
    return stream


# --- Delivery ---------------------------------------------------------------------------------


async def test_two_nodes_exchange_messages_both_ways() -> None:
    transport = cluster(2)
    async with opened(transport, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, 1), msg(1, 2, 2)])
        e2.send_nowait([msg(2, 1, 3)])
        assert seqs(await receive_count(e2, 2)) == [1, 2]
        assert seqs(await receive_count(e1, 1)) == [3]


async def test_three_nodes_exchange_messages_between_every_pair() -> None:
    transport = cluster(3)
    async with opened(transport, 1, 2, 3) as endpoints:
        for e in endpoints:
            e.send_nowait(
                [msg(e.node_id, p, 10 * e.node_id + p) for p in (1, 2, 3) if p != e.node_id]
            )
        for e in endpoints:
            got = sorted(seqs(await receive_count(e, 2)))
            assert got == sorted(10 * p + e.node_id for p in (1, 2, 3) if p != e.node_id)


async def test_many_queued_messages_are_coalesced_into_few_frames_in_order() -> None:
    transport = cluster(2, frame_messages_max=1000)
    async with opened(transport, 1, 2) as (e1, e2):
        await eventually(lambda: e1.statistics()["connected_peers"] == 1, "1 connects to 2")
        e1.send_nowait([msg(1, 2, i) for i in range(5000)])
        assert seqs(await receive_count(e2, 5000)) == list(range(5000))
        stats = e1.statistics()
    assert stats["messages_written"] == 5000
    assert stats["frames_written"] == 5  # 1000 messages per frame
    assert e2.statistics()["frames_received"] == 5


async def test_a_send_to_an_idle_plain_connection_is_written_by_send_nowait_itself() -> None:
    transport = cluster(2)
    async with opened(transport, 1, 2) as (e1, e2):
        await eventually(lambda: e1.statistics()["connected_peers"] == 1, "1 connects to 2")
        e1.send_nowait([msg(1, 2, 1), msg(1, 2, 2)])
        stats = e1.statistics()  # no checkpoint since: the sender task could not have run
        assert (stats["writes_direct"], stats["messages_written"], stats["frames_written"]) == (
            1, 2, 1)
        assert seqs(await receive_count(e2, 2)) == [1, 2]
        # While the sender task is in a write (the rest of a short one, say), its bytes go
        # first: send_nowait leaves the new ones to the task rather than cut into them.
        peer = e1._peers[2]
        peer.writing = True
        e1.send_nowait([msg(1, 2, 3)])
        assert e1.statistics()["writes_direct"] == 1 and list(peer.queue) == [msg(1, 2, 3)]
        peer.writing = False
        assert seqs(await receive_count(e2, 1)) == [3]  # the task, woken, wrote it


async def test_what_the_socket_does_not_take_at_once_follows_in_order() -> None:
    reading = trio.Event()
    got: list[int] = []
    everything = trio.Event()
    count = 120

    async def slow_node_2(stream: trio.SocketStream) -> None:
        hello = decode_hello(await stream.receive_some(HELLO_BYTES))
        await stream.send_all(encode_hello(Hello(2, hello.src)))
        await reading.wait()  # meanwhile the kernel's buffers fill and writes come back short
        decoder = FrameDecoder()
        while len(got) < count:
            data = await stream.receive_some(1 << 20)
            assert data, "node 1 closed the connection"
            for batch in decoder.feed(data):
                got.extend(seqs(batch))
        everything.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, slow_node_2, 0, host=LOCALHOST))
        port = listeners[0].socket.getsockname()[1]
        transport = TcpTransport({1: (LOCALHOST, 0), 2: (LOCALHOST, port)}, rng_seed=1)
        async with opened(transport, 1) as (e1,):
            await eventually(lambda: e1.statistics()["connected_peers"] == 1, "1 connects")
            big = AppendEntries(1, 1, 2, 0, 0, (Entry(1, 1, b"x" * 65536),))
            for seq in range(count):  # 7.5 MiB: more than the socket buffers hold
                e1.send_nowait([big, msg(1, 2, seq)])
                if seq % 10 == 0:
                    await trio.sleep(0)  # the sender task writes some of what was left
            reading.set()
            with trio.fail_after(TIMEOUT_SECONDS):
                await everything.wait()
            stats = e1.statistics()
        nursery.cancel_scope.cancel()
    assert got == list(range(count))
    assert stats["writes_direct"] >= 1 and stats["dropped_write_failed"] == 0


class ListSink:
    """A ``deliver_to`` sink that takes ``room`` batches, then holds its putters until
    ``make_room``."""

    def __init__(self, room: int) -> None:
        self.batches: list[list[Message]] = []
        self.room = room
        self.waits = 0
        self._roomy = trio.Event()

    def put_nowait(self, batch: list[Message]) -> bool:
        if len(self.batches) >= self.room:
            return False
        self.batches.append(batch)
        return True

    async def put(self, batch: list[Message]) -> None:
        self.waits += 1
        while len(self.batches) >= self.room:
            await self._roomy.wait()
        self.batches.append(batch)

    def make_room(self) -> None:
        self.room = 1 << 30
        self._roomy.set()


async def test_batches_go_to_a_sink_from_the_reading_task_and_a_full_sink_holds_the_reader() -> (
    None
):
    transport = cluster(2, frame_messages_max=2)
    async with opened(transport, 1, 2) as (e1, e2):
        sink = ListSink(room=2)
        e2.deliver_to(sink)
        await eventually(lambda: e1.statistics()["connected_peers"] == 1, "1 connects to 2")
        for seq in range(10):
            e1.send_nowait([msg(1, 2, seq)])
            await trio.sleep(0)
        await eventually(lambda: sink.waits == 1, "the reader waits for the full sink")
        assert len(sink.batches) == 2 and e2.statistics()["inbox_messages"] == 0
        sink.make_room()
        await eventually(lambda: sum(map(len, sink.batches)) == 10, "every message arrives")
        assert [s for b in sink.batches for s in seqs(b)] == list(range(10))
        assert all(len({m.src for m in b}) == 1 for b in sink.batches)  # one sender a batch
        assert e2.statistics()["inbox_full_waits"] == 1


async def test_a_batch_too_big_for_one_frame_is_split_and_a_single_oversized_message_dropped() -> (
    None
):
    transport = cluster(2, max_frame_bytes=2000)

    def append(index: int, size: int) -> AppendEntries:
        return AppendEntries(
            1, 1, 2, index - 1, 1 if index > 1 else 0, (Entry(1, index, b"x" * size),)
        )

    async with opened(transport, 1, 2) as (e1, e2):
        e1.send_nowait([append(i, 300) for i in range(1, 21)] + [append(21, 5000)])
        received = await receive_count(e2, 20)
        assert [m.prev_log_index + 1 for m in received if isinstance(m, AppendEntries)] == list(
            range(1, 21)
        )
        await eventually(lambda: e1.statistics()["dropped_too_large"] == 1, "oversize dropped")
        assert e1.statistics()["frames_written"] >= 4  # 20 x ~310 bytes cannot fit in 2000


async def test_a_restarted_peer_is_reconnected_and_gets_what_was_queued_meanwhile() -> None:
    transport = cluster(2)
    async with transport.open(1) as e1:
        async with transport.open(2) as e2:
            e1.send_nowait([msg(1, 2, 0)])
            assert seqs(await receive_count(e2, 1)) == [0]
        await eventually(lambda: e1.statistics()["connected_peers"] == 0, "1 sees 2 is gone")
        e1.send_nowait([msg(1, 2, 1), msg(1, 2, 2)])
        await trio.sleep(0.1)  # a few failed attempts: backoff in action
        async with transport.open(2) as e2_again:  # same port, new process in real life
            assert seqs(await receive_count(e2_again, 2)) == [1, 2]
        stats = e1.statistics()
    assert stats["connects"] == 2
    assert stats["disconnects"] >= 1
    assert stats["connect_failures"] >= 1


async def test_send_nowait_to_an_absent_peer_keeps_only_the_newest_messages() -> None:
    transport = cluster(3, send_queue_max=100)
    async with transport.open(1) as e1:
        # Node 3 is down: its queue stays bounded and the oldest messages make room.
        e1.send_nowait([msg(1, 3, i) for i in range(1000)])
        stats = e1.statistics()
        assert stats["dropped_queue_full"] == 900
        assert stats["send_queue_messages"] == 100
        async with transport.open(3) as e3:
            assert seqs(await receive_count(e3, 100)) == list(range(900, 1000))


async def test_a_peer_that_never_reads_fills_only_its_own_bounded_queue() -> None:
    stuck_streams: list[trio.SocketStream] = []

    async def stuck_node_2(stream: trio.SocketStream) -> None:
        # Completes the hello, then never reads: the kernel buffers fill and writes stall.
        hello = decode_hello(await stream.receive_some(HELLO_BYTES))
        await stream.send_all(encode_hello(Hello(2, hello.src)))
        stuck_streams.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, stuck_node_2, 0, host=LOCALHOST))
        stuck_port = listeners[0].socket.getsockname()[1]
        transport = TcpTransport(
            {1: (LOCALHOST, 0), 2: (LOCALHOST, stuck_port), 3: (LOCALHOST, 0)},
            send_queue_max=20,
            rng_seed=1,
        )
        async with opened(transport, 1, 3) as (e1, e3):
            await eventually(lambda: bool(stuck_streams), "1 connects to the stuck node 2")
            big = AppendEntries(1, 1, 2, 0, 0, (Entry(1, 1, b"x" * 65536),))
            for _ in range(500):  # 32 MiB: far more than socket buffers hold
                e1.send_nowait([big])
                await trio.sleep(0)
            stats = e1.statistics()
            assert stats["dropped_queue_full"] > 0
            assert stats["send_queue_messages"] <= 20
            e1.send_nowait([msg(1, 3, 7)])  # other peers are unaffected
            assert seqs(await receive_count(e3, 1)) == [7]
        nursery.cancel_scope.cancel()


# --- Hostile and misconfigured peers ----------------------------------------------------------


async def test_garbage_instead_of_a_hello_is_refused_and_logged_while_good_peers_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    transport = cluster(2)
    async with opened(transport, 1, 2) as (e1, e2):
        stream = await trio.open_tcp_stream(*transport.address(1))
        local_port = stream.socket.getsockname()[1]
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        assert await wait_closed_by_peer(stream) == b""  # refused without a hello reply
        await stream.aclose()
        e2.send_nowait([msg(2, 1, 5)])
        assert seqs(await receive_count(e1, 1)) == [5]
        assert e1.statistics()["refused"] == 1
    refusals = [r.getMessage() for r in caplog.records if "refused connection" in r.getMessage()]
    assert len(refusals) == 1
    assert f"127.0.0.1:{local_port}" in refusals[0] and "bad hello magic" in refusals[0]


@pytest.mark.parametrize(
    ("src", "dst", "cluster_id", "reason"),
    [
        (99, 1, 0, "node id 99 is not a member"),
        (1, 1, 0, "node id 1 is not a member"),  # claims to be the node itself
        (2, 3, 0, "addressed to node 3, this is 1"),
        (2, 1, 7, "cluster id 7 is not this cluster's 0"),
    ],
)
async def test_a_hello_from_a_stranger_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture, src: int, dst: int, cluster_id: int, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    transport = cluster(3)
    async with opened(transport, 1) as (e1,):
        stream = await trio.open_tcp_stream(*transport.address(1))
        await stream.send_all(encode_hello(Hello(src, dst, cluster_id)))
        assert await wait_closed_by_peer(stream) == b""
        await stream.aclose()
        await eventually(lambda: e1.statistics()["refused"] == 1, "the refusal is counted")
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text


async def test_a_silent_connection_is_closed_after_the_handshake_timeout() -> None:
    transport = cluster(2, handshake_timeout_seconds=0.2)
    async with opened(transport, 1) as (e1,):
        stream = await trio.open_tcp_stream(*transport.address(1))
        start = trio.current_time()
        assert await wait_closed_by_peer(stream) == b""
        assert trio.current_time() - start >= 0.15
        await stream.aclose()
        assert e1.statistics()["refused"] == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x00\x00\x05\x01\xc1\xc1\xc1\xc1", "bad frame: undecodable frame body"),
        ((2001).to_bytes(4, "big"), "exceeds max_frame_bytes 2000"),
        (encode_frame([TimeoutNow(term=1, src=2, dst=1)]), "TimeoutNow from 2 to 1 on the"),
        (encode_frame([TimeoutNow(term=1, src=3, dst=2)]), "TimeoutNow from 3 to 2 on the"),
    ],
    ids=["bad-msgpack", "too-long", "forged-src", "wrong-dst"],
)
async def test_a_bad_frame_closes_that_connection_only_and_is_logged_with_the_address(
    caplog: pytest.LogCaptureFixture, payload: bytes, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    transport = cluster(3, max_frame_bytes=2000)
    async with opened(transport, 1, 2) as (e1, e2):
        stream = await raw_hello(transport.address(1), src=3, dst=1)
        local_port = stream.socket.getsockname()[1]
        await stream.send_all(encode_frame([TimeoutNow(term=1, src=3, dst=1)]))
        assert [type(m) for m in await receive_count(e1, 1)] == [TimeoutNow]
        await stream.send_all(payload)
        assert await wait_closed_by_peer(stream) == b""
        await stream.aclose()
        e2.send_nowait([msg(2, 1, 9)])  # the node keeps receiving from good peers
        assert seqs(await receive_count(e1, 1)) == [9]
        assert e1.statistics()["closed_bad_frame"] == 1
    closes = [r for r in caplog.records if "closing connection from node 3" in r.getMessage()]
    assert len(closes) == 1 and closes[0].levelno == logging.WARNING
    assert reason in closes[0].getMessage()
    assert f"127.0.0.1:{local_port}" in closes[0].getMessage()


async def test_a_peer_answering_as_another_node_is_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")

    async def impostor(stream: trio.SocketStream) -> None:
        hello = decode_hello(await stream.receive_some(HELLO_BYTES))
        await stream.send_all(encode_hello(Hello(3, hello.src)))  # says "node 3", not 2
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, impostor, 0, host=LOCALHOST))
        port = listeners[0].socket.getsockname()[1]
        transport = TcpTransport({1: (LOCALHOST, 0), 2: (LOCALHOST, port), 3: (LOCALHOST, 0)})
        async with opened(transport, 1) as (e1,):
            await eventually(lambda: e1.statistics()["connect_failures"] >= 1, "refusal")
            assert e1.statistics()["connects"] == 0
        nursery.cancel_scope.cancel()
    assert any("answered as node 3" in r.getMessage() for r in caplog.records), caplog.text


async def test_a_newer_connection_from_the_same_node_replaces_the_older() -> None:
    transport = cluster(3)
    async with opened(transport, 1) as (e1,):
        first = await raw_hello(transport.address(1), src=3, dst=1)
        second = await raw_hello(transport.address(1), src=3, dst=1)
        assert await wait_closed_by_peer(first) == b""
        await second.send_all(encode_frame([TimeoutNow(term=2, src=3, dst=1)]))
        assert await receive_count(e1, 1) == [TimeoutNow(term=2, src=3, dst=1)]
        assert e1.statistics()["inbound_connections"] == 1
        await first.aclose()
        await second.aclose()


# --- Lifecycle and configuration --------------------------------------------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_leaving_open_closes_every_task_socket_and_listener() -> None:
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    fds_before = open_descriptors()
    transport = cluster(3)
    async with opened(transport, 1, 2, 3) as endpoints:
        for e in endpoints:
            e.send_nowait([msg(e.node_id, p, p) for p in (1, 2, 3) if p != e.node_id])
        for e in endpoints:
            await receive_count(e, 2)
        assert trio.lowlevel.current_statistics().tasks_living > tasks_before
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
    assert open_descriptors() == fds_before
    with pytest.raises(OSError):
        await trio.open_tcp_stream(*transport.address(1))
    with pytest.raises(trio.ClosedResourceError):
        endpoints[0].send_nowait([msg(1, 2, 0)])
    with pytest.raises(trio.ClosedResourceError):
        await endpoints[0].receive()


async def test_a_message_for_a_node_without_an_address_is_dropped_and_counted() -> None:
    transport = cluster(2)
    async with opened(transport, 1) as (e1,):
        e1.send_nowait([msg(1, 5, 0)])
        assert e1.statistics()["dropped_unknown_peer"] == 1


@pytest.mark.parametrize(
    ("addresses", "options", "reason"),
    [
        ({}, {}, "addresses must name at least one node"),
        ({0: (LOCALHOST, 1)}, {}, "node id 0 must be a positive int"),
        ({1: ("localhost",)}, {}, "address of node 1 must be"),
        ({1: (LOCALHOST, 70000)}, {}, "address of node 1 must be"),
        ({1: (LOCALHOST, 1)}, {"send_queue_max": 0}, "send_queue_max must be"),
        ({1: (LOCALHOST, 1)}, {"max_frame_bytes": 1}, "max_frame_bytes must be in"),
        ({1: (LOCALHOST, 1)}, {"connect_timeout_seconds": float("nan")}, "connect_timeout"),
        ({1: (LOCALHOST, 1)}, {"backoff_max_seconds": 0.001}, "backoff_max_seconds 0.001"),
        ({1: (LOCALHOST, 1)}, {"cluster_id": -1}, "cluster_id must be a u64"),
    ],
)
def test_bad_configuration_is_refused_with_an_error_naming_the_field(
    addresses: Any, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason):
        TcpTransport(addresses, **options)


async def test_opening_a_node_without_an_address_or_on_a_busy_port_fails_clearly() -> None:
    transport = cluster(2)
    with pytest.raises(ConfigError, match="node 9 has no address"):
        async with transport.open(9):
            pass  # pragma: no cover
    async with transport.open(1):
        clash = TcpTransport({1: transport.address(1)})
        with pytest.raises(OSError, match=r"node 1 cannot listen on 127\.0\.0\.1:\d+"):
            async with clash.open(1):
                pass  # pragma: no cover


# --- Fuzzing a live endpoint ------------------------------------------------------------------


class _ErrorRecords(logging.Handler):
    """Collects ERROR records: the transport logs its own bugs (never a peer's) at that level."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _hostile_bytes_then_a_good_peer(payload: bytes, after_hello: bool) -> None:
    transport = cluster(3, max_frame_bytes=4096)
    async with opened(transport, 1, 2) as (e1, e2):
        if after_hello:
            stream = await raw_hello(transport.address(1), src=3, dst=1)
        else:
            stream = await trio.open_tcp_stream(*transport.address(1))
        with contextlib.suppress(trio.BrokenResourceError):  # refused mid-write: fine
            await stream.send_all(payload)
        await stream.aclose()
        e2.send_nowait([msg(2, 1, 42)])
        with trio.fail_after(TIMEOUT_SECONDS):
            while True:
                batch = await e1.receive()
                # Anything node 3 managed to send must have been valid and really from node 3.
                assert all(m.dst == 1 and m.src in (2, 3) for m in batch)
                if 42 in seqs([m for m in batch if m.src == 2]):
                    break


_hostile_payloads = st.one_of(
    st.binary(min_size=1, max_size=1024),
    st.builds(
        lambda body: len(body).to_bytes(4, "big") + body, st.binary(min_size=0, max_size=256)
    ),
    st.builds(
        lambda n, junk: encode_frame([TimeoutNow(term=n, src=3, dst=1)]) + junk,
        st.integers(0, 5),
        st.binary(max_size=64),
    ),
)


@settings(max_examples=60, deadline=None)
@given(payload=_hostile_payloads, after_hello=st.booleans())
def test_fuzz_hostile_bytes_on_a_connection_never_stop_the_endpoint(
    payload: bytes, after_hello: bool
) -> None:
    handler = _ErrorRecords()
    logger = logging.getLogger("raftlib.transport")
    logger.addHandler(handler)
    try:
        trio.run(_hostile_bytes_then_a_good_peer, payload, after_hello)
    finally:
        logger.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]
