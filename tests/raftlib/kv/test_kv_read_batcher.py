"""ReadBatcher: reads of many connections share one ReadIndex round, never one that started
before they arrived (that could miss a write acknowledged before the read: not linearizable);
errors reach every reader of a round; a reader giving up cancels nothing for the others; and
clients stay linearizable through leader crashes with it in the path."""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import lincheck
import pytest
import trio
import trio.testing

from raftlib.client import Handler, InProcessConnector, KvClient
from raftlib.errors import NotLeader
from raftlib.kv import KvStateMachine
from raftlib.node import Node
from raftlib.read_batcher import ReadBatcher
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import LocalCluster, open_local_cluster
from tests.raftlib.kv.test_kv_cluster import KEYS, crash_leaders
from tests.raftlib.kv.workload import History, kv_worker, machine, memory_address


class GatedBarrier:
    """A barrier the test finishes by hand: call n returns n once released."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = trio.Event()
        self.release = trio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> int:
        self.calls += 1
        number = self.calls
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return number

    def next_round(self) -> None:
        """Let the running call finish; the next call will wait again."""
        release, self.release = self.release, trio.Event()
        self.started = trio.Event()
        release.set()


@asynccontextmanager
async def running(batcher: ReadBatcher) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        yield nursery
        nursery.cancel_scope.cancel()


@attrs.define
class Reader:
    index: int | None = None
    error: BaseException | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    async def read(self, batcher: ReadBatcher) -> None:
        try:
            self.index = await batcher.wait_barrier()
        except NotLeader as exc:
            self.error = exc
        self.done.set()


async def test_a_read_arriving_while_a_round_runs_waits_for_the_next_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    barrier = GatedBarrier()
    batcher = ReadBatcher(barrier)
    first, second = Reader(), Reader()
    async with running(batcher) as nursery:
        nursery.start_soon(first.read, batcher)
        await barrier.started.wait()  # round 1 runs: it began before `second` arrived
        nursery.start_soon(second.read, batcher)
        await trio.testing.wait_all_tasks_blocked()
        barrier.next_round()
        await first.done.wait()
        assert first.index == 1
        assert not second.done.is_set()  # round 1 cannot answer a read that came after it
        await barrier.started.wait()
        barrier.next_round()
        await second.done.wait()
    assert second.index == 2


async def test_reads_arriving_during_one_round_all_share_the_next_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    barrier = GatedBarrier()
    batcher = ReadBatcher(barrier)
    readers = [Reader() for _ in range(11)]
    async with running(batcher) as nursery:
        nursery.start_soon(readers[0].read, batcher)
        await barrier.started.wait()
        for reader in readers[1:]:
            nursery.start_soon(reader.read, batcher)
        await trio.testing.wait_all_tasks_blocked()
        barrier.next_round()
        await readers[0].done.wait()
        await barrier.started.wait()
        barrier.next_round()
        for reader in readers:
            await reader.done.wait()
    assert [r.index for r in readers] == [1] + [2] * 10
    assert batcher.statistics() == attrs.evolve(batcher.stats, barriers=2, reads=11)
    assert barrier.calls == 2


async def test_a_failed_round_raises_its_error_in_every_reader_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    barrier = GatedBarrier()
    barrier.error = NotLeader(2)
    batcher = ReadBatcher(barrier)
    readers = [Reader() for _ in range(3)]
    async with running(batcher) as nursery:
        for reader in readers:
            nursery.start_soon(reader.read, batcher)
        await barrier.started.wait()
        await trio.testing.wait_all_tasks_blocked()
        barrier.next_round()
        for reader in readers:
            await reader.done.wait()
    assert all(isinstance(r.error, NotLeader) and r.error.leader_id == 2 for r in readers)


async def test_a_reader_that_gives_up_does_not_cancel_the_round_others_wait_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    barrier = GatedBarrier()
    batcher = ReadBatcher(barrier)
    patient = Reader()
    async with running(batcher) as nursery:
        with trio.move_on_after(1.0) as impatient:
            nursery.start_soon(patient.read, batcher)
            await batcher.wait_barrier()
        assert impatient.cancelled_caught
        barrier.next_round()
        await patient.done.wait()
    assert patient.index == 1 and barrier.calls == 1


class BatchedConnector:
    """Every node's handler shares one ReadBatcher per node incarnation."""

    def __init__(self, cluster: LocalCluster, nursery: trio.Nursery) -> None:
        self.cluster = cluster
        self.nursery = nursery
        self.batchers: dict[int, tuple[Node, ReadBatcher, trio.CancelScope]] = {}
        self.connector = InProcessConnector(self.resolve)

    def resolve(self, address: str) -> Handler | None:
        node_id = int(address.split(":", 1)[1])
        if not self.cluster.is_up(node_id):
            return None
        node = self.cluster.node(node_id)
        known = self.batchers.get(node_id)
        if known is None or known[0] is not node:
            if known is not None:
                known[2].cancel()
            scope = trio.CancelScope()
            batcher = ReadBatcher(node.read_barrier)
            self.nursery.start_soon(self._run, scope, batcher)
            self.batchers[node_id] = known = (node, batcher, scope)
        handler = KvCommandHandler(
            node, machine(self.cluster, node_id),
            client_addresses={n: memory_address(n) for n in self.cluster.ids},
            clock=trio.current_time, config=KvServiceConfig(request_timeout_seconds=2.0),
            read_batcher=known[1])
        return handler.handle

    @staticmethod
    async def _run(scope: trio.CancelScope, batcher: ReadBatcher) -> None:
        with scope:
            await batcher.run()


@pytest.mark.parametrize("seed", [1, 2])
async def test_clients_stay_linearizable_with_batched_reads_while_leaders_crash(
    seed: int, autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(seed)
    history = History()
    async with open_local_cluster(3, seed=seed, state_machine_factory=KvStateMachine) as c:
        await c.wait_leader()
        async with trio.open_nursery() as nursery:
            connector = BatchedConnector(c, nursery)
            nursery.start_soon(crash_leaders, c, random.Random(seed + 100), 3)
            async with trio.open_nursery() as workers:
                for w in range(8):
                    client = KvClient([memory_address(n) for n in c.ids],
                                      connector=connector.connector, request_timeout_seconds=0.5)
                    workers.start_soon(functools.partial(
                        kv_worker, client, history, worker=w, keys=KEYS, ops=50,
                        pause_seconds_max=0.01, rng=random.Random(rng.random())))
            nursery.cancel_scope.cancel()
        assert not c.violations(), f"seed={seed}"
    shared = [b.statistics() for _, b, _ in connector.batchers.values()]
    assert sum(s.reads for s in shared) > sum(s.barriers for s in shared), shared
    assert history.count("ok") > 100, f"seed={seed}"
    lincheck.assert_linearizable(history.events, "kv", timeout=60)
