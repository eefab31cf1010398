"""Less work per command, same guarantees: a batch's write deadline is kept by the node's ticker,
a batched read's by its ReadBatcher round, a plain TCP connection's idle limit by one shared
sweep; proposals queued back to back enter the log as one batch, each caller getting only its
own outcomes."""

from __future__ import annotations

import sys
from typing import Any

import outcome
import pytest
import trio
import trio.testing

from raftlib.errors import ProposalOutcomeUnknown
from raftlib.kv import KvStateMachine
from raftlib.read_batcher import ReadBatcher
from raftlib.resp.protocol import ErrorReply, Reply, SimpleString, encode_command
from raftlib.resp.server import (
    BATCHES_WITHOUT_YIELD_MAX,
    COMMANDS_WITHOUT_YIELD_MAX,
    IDLE_SWEEPS_PER_TIMEOUT,
    RespServer,
    ServerLimits,
    open_tcp_listeners,
)
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import open_local_cluster
from tests.raftlib.kv.test_kv_read_batcher import GatedBarrier, running
from tests.raftlib.kv.workload import machine

TICK_SECONDS = 0.025  # NodeConfig's default tick


async def test_propose_batch_fails_what_is_not_applied_by_its_deadline_within_a_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1) as cluster:
        leader = cluster.node(await cluster.wait_leader())
        cluster.network.isolate(leader.node_id)
        started = trio.current_time()
        with trio.fail_after(30):
            outcomes = await leader.propose_batch([b"a", b"b"], timeout_seconds=1.0)
        waited = trio.current_time() - started
        assert [type(o.error) for o in outcomes if isinstance(o, outcome.Error)] == [
            ProposalOutcomeUnknown, ProposalOutcomeUnknown]
        assert 1.0 <= waited <= 1.0 + TICK_SECONDS + 1e-9


async def test_proposals_queued_back_to_back_are_one_log_batch_and_each_caller_gets_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1) as cluster:
        leader = cluster.node(await cluster.wait_leader())
        driver = leader._driver
        calls: list[int] = []
        original = driver.propose

        def spy(datas: Any, waiters: Any) -> None:
            calls.append(len(datas))
            original(datas, waiters)

        driver.propose = spy  # type: ignore[method-assign]
        got: dict[str, list[Any]] = {}

        async def propose(name: str, commands: list[bytes]) -> None:
            got[name] = [o.unwrap() for o in await leader.propose_batch(commands)]

        # Started together, the three queue their proposals before the raft loop runs.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(propose, "a", [b"a1", b"a2"])
            nursery.start_soon(propose, "b", [b"b1"])
            nursery.start_soon(propose, "c", [b"c1", b"c2", b"c3"])
        assert calls == [6]
        # RecordingStateMachine answers each command with its position in the log.
        positions = sorted(p for results in got.values() for p in results)
        assert {name: len(results) for name, results in got.items()} == {"a": 2, "b": 1, "c": 3}
        assert positions == list(range(positions[0], positions[0] + 6))
        for results in got.values():
            assert results == sorted(results)  # each caller's commands in its order


async def test_a_batched_read_no_round_confirms_fails_at_its_groups_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    barrier = GatedBarrier()  # never released: no round ever ends by itself
    batcher = ReadBatcher(barrier, timeout_seconds=1.0)
    async with running(batcher) as nursery:
        failed: dict[str, float] = {}

        async def read(name: str) -> None:
            with pytest.raises(trio.TooSlowError):
                await batcher.wait_barrier()
            failed[name] = trio.current_time()

        nursery.start_soon(read, "first")
        await barrier.started.wait()
        await trio.sleep(0.3)
        # Arrives while the first round runs: waits for it, then for its own round.
        nursery.start_soon(read, "second")
        with trio.fail_after(10):
            while len(failed) < 2:
                await trio.sleep(0.01)
    assert failed["first"] == pytest.approx(1.0)
    assert failed["second"] == pytest.approx(1.3)


async def test_reads_on_an_isolated_leader_answer_tryagain_by_the_read_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=1, state_machine_factory=KvStateMachine) as cluster:
        leader = await cluster.wait_leader()
        node = cluster.node(leader)
        config = KvServiceConfig(read_timeout_seconds=0.5)  # before the node's own 1.0 s
        batcher = ReadBatcher(node.read_barrier, timeout_seconds=config.read_timeout_seconds)
        handler = KvCommandHandler(node, machine(cluster, leader), client_addresses={},
                                   clock=trio.current_time, config=config,
                                   read_batcher=batcher)
        async with running(batcher):
            cluster.network.isolate(leader)
            started = trio.current_time()
            with trio.fail_after(30):
                replies = await handler.handle_batch([[b"GET", b"a"], [b"GET", b"b"]])
            waited = trio.current_time() - started
        assert replies == [ErrorReply("TRYAGAIN read not confirmed by a leader in time")] * 2
        assert 0.5 - 1e-9 <= waited < 0.6


def answer(args: list[bytes]) -> Reply:
    return SimpleString("PONG") if args[0].upper() == b"PING" else args[-1]


async def echo(args: list[bytes]) -> Reply:
    return answer(args)


def echo_server(limits: ServerLimits, path: str) -> RespServer:
    """The echo server with a task per connection, or its event loop (``begin`` answers at
    once, as PING does in the KV service)."""
    if path == "tasks":
        return RespServer(echo, limits=limits)
    return RespServer(echo, begin=lambda commands, wake: [answer(c) for c in commands],
                      limits=limits)


async def _raw_call(sock: trio.SocketStream, args: list[bytes]) -> bytes:
    await sock.send_all(encode_command(args))
    return bytes(await sock.receive_some(1024))


@pytest.mark.parametrize("path", ["tasks", "loop"])
async def test_an_idle_plain_tcp_client_is_closed_by_the_shared_sweep_and_a_busy_one_is_not(
    path: str,
) -> None:
    idle = 0.4
    server = echo_server(ServerLimits(idle_timeout_seconds=idle), path)
    async with trio.open_nursery() as nursery:
        listeners = await open_tcp_listeners(0)
        await nursery.start(server.serve, listeners)
        port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
        quiet = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        assert await _raw_call(quiet, [b"PING"]) == b"+PONG\r\n"
        started = trio.current_time()
        for _ in range(10):  # busy for 2.5 idle periods, never silent for one
            assert await _raw_call(busy, [b"PING"]) == b"+PONG\r\n"
            await trio.sleep(idle / 4)
        with trio.fail_after(5):
            assert await quiet.receive_some(100) == b""  # closed by the server
        closed_after = trio.current_time() - started
        assert idle <= closed_after < 3 * idle + idle / IDLE_SWEEPS_PER_TIMEOUT + 1.0
        assert await _raw_call(busy, [b"PING"]) == b"+PONG\r\n"
        assert server.statistics().idle_closed == 1
        await busy.aclose()
        await quiet.aclose()
        nursery.cancel_scope.cancel()


FLOOD_CLIENT = """
import socket, sys
port, rounds, pings = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
    for _ in range(rounds):
        sock.sendall(b"PING\\r\\n" * pings)
        expected, got = len(b"+PONG\\r\\n") * pings, 0
        while got < expected:
            got += len(sock.recv(1 << 20))
"""


@pytest.mark.parametrize("path", ["tasks", "loop"])
async def test_a_client_flooding_pings_lets_other_tasks_run_every_few_batches(
    path: str,
) -> None:
    batch = 64
    server = echo_server(ServerLimits(batch_commands_max=batch), path)
    rounds, pings = 5, 20_000
    async with trio.open_nursery() as nursery:
        listeners = await open_tcp_listeners(0)
        await nursery.start(server.serve, listeners)
        port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
        # Commands the server answered between two turns of another task: what a flood costs
        # the raft loop's ticks (counted, not timed, so a loaded machine does not matter).
        between: list[int] = []

        async def other_task() -> None:
            last = server.statistics().commands
            while True:
                await trio.lowlevel.checkpoint()
                now = server.statistics().commands
                between.append(now - last)
                last = now

        nursery.start_soon(other_task)
        with trio.fail_after(60):
            # Another process: a client thread here would compete for the GIL, not the loop.
            await trio.run_process([sys.executable, "-c", FLOOD_CLIENT, str(port), str(rounds),
                                    str(pings)])
        nursery.cancel_scope.cancel()
    assert server.statistics().commands == rounds * pings
    # One 64 KiB read holds ~10,000 PINGs; they are answered a few batches per turn: the
    # connection yields once it answered BATCHES_WITHOUT_YIELD_MAX batches or at least
    # COMMANDS_WITHOUT_YIELD_MAX commands, and Trio may run it twice between two turns of the
    # other task (once after it in one scheduling batch, once before it in the next).
    per_turn = min(BATCHES_WITHOUT_YIELD_MAX * batch, COMMANDS_WITHOUT_YIELD_MAX - 1 + batch)
    assert max(between) <= 2 * per_turn, max(between)
