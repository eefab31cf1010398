"""A node's RESP port under oversized and half-sent commands (over real TCP, in-process
cluster): a 16 MiB command gets one error naming the limit it broke and its connection closes;
10 held partial commands cost the server what they sent, within the named limits, while the
leader keeps its term and other clients are served; over the limit, each is refused."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from raftlib.resp import ErrorReply, RespLimits, ServerLimits, SimpleString
from raftlib.resp.protocol import ARGUMENT_OVERHEAD_BYTES, encode_command
from raftlib.resp.server import RespServer
from tests.raftlib.kv.test_kv_resp_server import PATHS, Raw, Served, serve_cluster

MIB = 1024 * 1024
ARG_BYTES = 256
SMALL = ServerLimits(protocol=RespLimits(bulk_bytes_max=64 * 1024,
                                         request_bytes_max=256 * 1024))
HELD_CONNECTIONS = 10


@pytest.fixture(params=PATHS)
async def default_limits(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for served in serve_cluster(3, ServerLimits(), path=request.param):
        yield served


@pytest.fixture(params=PATHS)
async def small_limits(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for served in serve_cluster(3, SMALL, path=request.param):
        yield served


def del_command(total_bytes: int) -> bytes:
    """A DEL of ~``total_bytes`` on the wire, made of many small keys (the shape that once
    cost a leader its term: each read re-parsed all the keys before it)."""
    count = min(65535, total_bytes // (ARG_BYTES + 8) + 1)
    return encode_command([b"DEL"] + [b"%0*d" % (ARG_BYTES, i) for i in range(count)])


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.01)  # polling the server's statistics; nothing to wait on


def holds_at_least(server: RespServer, count: int) -> bool:
    return server.statistics().parser_bytes_held >= count


def leader_and_term(served: Served) -> tuple[int, int]:
    leader = served.cluster.leader()
    assert leader is not None
    return leader, served.cluster.node(leader).status().term


async def send_ignoring_close(raw: Raw, data: bytes) -> None:
    # The server may close once it has refused the command; the rest of it is then unsent.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await raw.send(data)


async def test_a_16_mib_command_gets_one_error_naming_request_bytes_max_and_closes(
    default_limits: Served,
) -> None:
    served = default_limits
    before = leader_and_term(served)
    raw = await Raw.open(served, before[0])
    wire = del_command(16 * MIB)
    assert len(wire) > 16 * MIB
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_ignoring_close, raw, wire)
        reply = await raw.reply()
    assert isinstance(reply, ErrorReply) and reply.code == "ERR"
    assert f"request_bytes_max is {RespLimits().request_bytes_max}" in reply.text
    assert await raw.closed()
    big_value = await Raw.open(served, before[0])
    await send_ignoring_close(big_value, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (16 * MIB))
    reply = await big_value.reply()
    assert isinstance(reply, ErrorReply) and "bulk_bytes_max" in reply.text
    assert await big_value.closed()
    other = await Raw.open(served, before[0])
    assert await other.call(b"SET", b"k", b"v") == SimpleString("OK")
    assert leader_and_term(served) == before
    server = served.servers[before[0]]
    await wait_until(lambda: server.statistics().parser_bytes_held == 0, "parsers released")


async def test_ten_held_partial_commands_cost_what_they_sent_within_the_named_limits(
    small_limits: Served,
) -> None:
    served = small_limits
    before = leader_and_term(served)
    server = served.servers[before[0]]
    limits = SMALL.protocol
    wire = del_command(2 * limits.request_bytes_max)
    held_bytes = limits.request_bytes_max - 4096  # a partial command just under the limit
    held = [await Raw.open(served, before[0]) for _ in range(HELD_CONNECTIONS)]
    for raw in held:
        await raw.send(wire[:held_bytes])
    await wait_until(lambda: server.statistics().parser_bytes_held >= HELD_CONNECTIONS
                     * held_bytes, "every partial command received")
    per_connection = (limits.request_bytes_max + limits.unparsed_bytes_max
                      + limits.array_items_max * ARGUMENT_OVERHEAD_BYTES)
    assert server.statistics().parser_bytes_held <= HELD_CONNECTIONS * per_connection
    # While they are held, the node serves everyone else and keeps its term.
    other = await Raw.open(served, before[0])
    assert await other.call(b"SET", b"a", b"1") == SimpleString("OK")
    assert await other.call(b"GET", b"a") == b"1"
    assert leader_and_term(served) == before
    # Past request_bytes_max each held command is refused, and its memory released.
    for raw in held:
        await send_ignoring_close(raw, wire[held_bytes : held_bytes + 8192])
        reply = await raw.reply()
        assert isinstance(reply, ErrorReply)
        assert f"request_bytes_max is {limits.request_bytes_max}" in reply.text
        assert await raw.closed()
    await wait_until(lambda: server.statistics().parser_bytes_held == 0, "parsers released")
    assert server.statistics().protocol_errors == HELD_CONNECTIONS
    assert leader_and_term(served) == before


BUDGET = ServerLimits(parser_bytes_total_max=350 * 1024, protocol=SMALL.protocol)


@pytest.fixture(params=PATHS)
async def small_budget(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async for served in serve_cluster(1, BUDGET, path=request.param):
        yield served


async def test_the_read_that_crosses_parser_bytes_total_max_closes_its_connection_only(
    small_budget: Served,
) -> None:
    served = small_budget
    server = served.servers[1]
    wire = del_command(200 * 1024)
    assert len(wire) < BUDGET.protocol.request_bytes_max
    half = 100 * 1024
    held = [await Raw.open(served) for _ in range(3)]
    for n, raw in enumerate(held, start=1):
        await raw.send(wire[:half])
        await wait_until(functools.partial(holds_at_least, server, n * half),
                         "partial command received")
    crossing = await Raw.open(served)
    await send_ignoring_close(crossing, wire[:half])
    reply = await crossing.reply()
    assert isinstance(reply, ErrorReply)
    assert f"parser_bytes_total_max is {BUDGET.parser_bytes_total_max}" in reply.text
    assert await crossing.closed()
    assert server.statistics().budget_closed == 1
    # The connections within the budget keep their unfinished commands: once one leaves (room
    # for the rest of a command), the others complete theirs.
    await trio.aclose_forcefully(held[0].stream)
    for raw in held[1:]:
        await raw.send(wire[half:])
        assert await raw.reply() == 0
    await wait_until(lambda: server.statistics().parser_bytes_held == 0, "parsers released")
