"""The in-memory network delivers, delays, drops, duplicates, reorders and partitions as seeded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from raftlib.core.types import Message, ReadIndexRequest
from raftlib.transport.memory import LinkFaults, MemoryEndpoint, MemoryNetwork


def msg(src: int, dst: int, seq: int) -> ReadIndexRequest:
    """A small message numbered ``seq`` (carried in request_id) so order can be checked."""
    return ReadIndexRequest(term=1, src=src, dst=dst, request_id=seq)


def seqs(batch: list[Message]) -> list[int]:
    return [m.request_id for m in batch if isinstance(m, ReadIndexRequest)]


@asynccontextmanager
async def attached(network: MemoryNetwork, *nodes: int) -> AsyncIterator[list[MemoryEndpoint]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(network.open(n)) for n in nodes]


async def drain(endpoint: MemoryEndpoint, quiet_seconds: float = 10.0) -> list[Message]:
    """Everything ``endpoint`` receives until nothing arrives for ``quiet_seconds``."""
    received: list[Message] = []
    while True:
        with trio.move_on_after(quiet_seconds):
            received.extend(await endpoint.receive())
            continue
        return received


async def test_messages_without_faults_arrive_at_once_in_order_as_one_batch() -> None:
    network = MemoryNetwork(rng_seed=1)
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(5)])
        assert seqs(await e2.receive()) == [0, 1, 2, 3, 4]
        assert e2.statistics()["received_batches"] == 1
    stats = network.statistics()
    assert stats["sent"] == stats["delivered"] == 5


async def test_receive_messages_max_splits_large_batches() -> None:
    network = MemoryNetwork(rng_seed=1, receive_messages_max=3)
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(7)])
        assert [seqs(await e2.receive()) for _ in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]


async def test_fixed_delay_delivers_exactly_after_the_delay_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1, faults=LinkFaults(delay_seconds=0.25))
    async with attached(network, 1, 2) as (e1, e2):
        start = trio.current_time()
        e1.send_nowait([msg(1, 2, 0), msg(1, 2, 1)])
        await trio.sleep(0.1)
        e1.send_nowait([msg(1, 2, 2)])
        assert seqs(await e2.receive()) == [0, 1]
        assert trio.current_time() - start == pytest.approx(0.25)
        assert seqs(await e2.receive()) == [2]
        assert trio.current_time() - start == pytest.approx(0.35)


async def test_jitter_keeps_every_delay_within_its_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = LinkFaults(delay_seconds=0.01, jitter_seconds=0.02)
    network = MemoryNetwork(rng_seed=5, faults=faults)
    async with attached(network, 1, 2) as (e1, e2):
        arrivals: list[float] = []
        for i in range(50):
            sent_at = trio.current_time()
            e1.send_nowait([msg(1, 2, i)])
            await e2.receive()
            arrivals.append(trio.current_time() - sent_at)
    assert all(0.01 <= delay <= 0.03 + 1e-9 for delay in arrivals), arrivals
    assert len({round(d, 6) for d in arrivals}) > 10, "jitter should vary the delays"


async def test_loss_probability_one_drops_every_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=3, faults=LinkFaults(loss_probability=1.0))
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(100)])
        assert await drain(e2) == []
    assert network.statistics()["dropped_loss"] == 100


async def test_partial_loss_drops_about_its_share(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng_seed=3, faults=LinkFaults(loss_probability=0.3))
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(1000)])
        received = await drain(e2)
    dropped = network.statistics()["dropped_loss"]
    assert len(received) + dropped == 1000
    assert 220 <= dropped <= 380, f"seed=3: {dropped} of 1000 lost at p=0.3"


async def test_duplication_probability_one_delivers_every_message_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=4, faults=LinkFaults(duplicate_probability=1.0))
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(10)])
        received = seqs(await drain(e2))
    assert sorted(received) == sorted(list(range(10)) * 2)
    assert network.statistics()["duplicated"] == 10


async def test_reordering_changes_arrival_order_but_not_the_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = LinkFaults(delay_seconds=0.001, reorder_probability=0.3, reorder_delay_seconds_max=0.1)
    network = MemoryNetwork(rng_seed=11, faults=faults)
    async with attached(network, 1, 2) as (e1, e2):
        for i in range(100):
            e1.send_nowait([msg(1, 2, i)])
            await trio.sleep(0.001)
        received = seqs(await drain(e2))
    assert sorted(received) == list(range(100))
    assert received != list(range(100)), "seed=11: no message was overtaken"
    assert network.statistics()["reordered"] > 0


async def test_per_link_faults_override_the_default_for_that_direction_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1)
    network.set_link_faults(1, 2, LinkFaults(loss_probability=1.0))
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, 0)])
        e2.send_nowait([msg(2, 1, 1)])
        assert seqs(await e1.receive()) == [1]
        assert await drain(e2) == []
        network.set_link_faults(1, 2, None)
        e1.send_nowait([msg(1, 2, 2)])
        assert seqs(await e2.receive()) == [2]


async def test_partition_blocks_across_groups_and_heal_restores(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1)
    async with attached(network, 1, 2, 3) as (e1, e2, e3):
        network.partition([[1, 2], [3]])
        assert not network.can_reach(1, 3) and not network.can_reach(3, 2)
        e1.send_nowait([msg(1, 2, 0), msg(1, 3, 1)])
        e3.send_nowait([msg(3, 1, 2)])
        assert seqs(await e2.receive()) == [0]
        assert await drain(e3) == [] and await drain(e1) == []
        assert network.statistics()["dropped_partition"] == 2
        network.heal()
        e3.send_nowait([msg(3, 1, 3)])
        assert seqs(await e1.receive()) == [3]


async def test_a_node_in_no_partition_group_reaches_nobody() -> None:
    network = MemoryNetwork(rng_seed=1)
    network.partition([[1, 2]])
    assert network.can_reach(1, 2)
    assert not network.can_reach(1, 3) and not network.can_reach(3, 1)
    with pytest.raises(ValueError, match="node 2 is in more than one partition group"):
        network.partition([[1, 2], [2, 3]])


async def test_isolate_cuts_one_node_off_both_ways() -> None:
    network = MemoryNetwork(rng_seed=1)
    network.isolate(2)
    assert not network.can_reach(1, 2) and not network.can_reach(2, 3)
    assert network.can_reach(1, 3)
    network.heal()
    assert network.can_reach(1, 2)


async def test_one_way_cut_blocks_only_that_direction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1)
    async with attached(network, 1, 2) as (e1, e2):
        network.cut(1, 2, both_ways=False)
        e1.send_nowait([msg(1, 2, 0)])
        e2.send_nowait([msg(2, 1, 1)])
        assert seqs(await e1.receive()) == [1]
        assert await drain(e2) == []


async def test_a_partition_also_drops_messages_already_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1, faults=LinkFaults(delay_seconds=1.0))
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, 0)])
        await trio.sleep(0.5)
        network.isolate(2)
        assert await drain(e2) == []
        assert network.statistics()["dropped_partition"] == 1


async def test_a_full_inbox_drops_and_counts_the_excess() -> None:
    network = MemoryNetwork(rng_seed=1, inbox_messages_max=5)
    async with attached(network, 1, 2) as (e1, e2):
        e1.send_nowait([msg(1, 2, i) for i in range(8)])
        assert seqs(await e2.receive()) == [0, 1, 2, 3, 4]
        assert e2.statistics()["dropped_inbox_full"] == 3
        e1.send_nowait([msg(1, 2, 8)])
        assert seqs(await e2.receive()) == [8]
    assert network.statistics()["dropped_inbox_full"] == 3


async def test_messages_to_a_closed_node_are_lost_including_those_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng_seed=1, faults=LinkFaults(delay_seconds=1.0))
    async with network.open(1) as e1:
        async with network.open(2):
            e1.send_nowait([msg(1, 2, 0)])
        e1.send_nowait([msg(1, 2, 1)])
        # A restarted node does not receive what was sent to its previous incarnation.
        async with network.open(2) as e2_again:
            assert await drain(e2_again) == []
    assert network.statistics()["dropped_unreachable"] == 2


async def test_a_node_cannot_be_attached_twice_at_once_and_a_closed_endpoint_refuses_use() -> None:
    network = MemoryNetwork(rng_seed=1)
    async with network.open(1) as e1:
        with pytest.raises(ValueError, match="node 1 is already attached"):
            async with network.open(1):
                pass  # pragma: no cover
    with pytest.raises(trio.ClosedResourceError):
        e1.send_nowait([msg(1, 2, 0)])
    with pytest.raises(trio.ClosedResourceError):
        await e1.receive()


async def test_closing_an_endpoint_leaves_no_task_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def living_tasks() -> int:
        return trio.lowlevel.current_statistics().tasks_living

    before = living_tasks()
    network = MemoryNetwork(rng_seed=1, faults=LinkFaults(delay_seconds=5.0))
    async with attached(network, 1, 2) as (e1, _):
        e1.send_nowait([msg(1, 2, 0)])
        assert living_tasks() == before + 2  # one delivery task per endpoint
    assert living_tasks() == before


async def test_every_sent_message_is_accounted_for(autojump_clock: trio.testing.MockClock) -> None:
    faults = LinkFaults(
        delay_seconds=0.01,
        jitter_seconds=0.01,
        loss_probability=0.2,
        duplicate_probability=0.2,
        reorder_probability=0.2,
    )
    network = MemoryNetwork(rng_seed=9, faults=faults, inbox_messages_max=50)
    async with attached(network, 1, 2, 3) as (e1, e2, e3):
        network.cut(1, 3)
        for i in range(300):
            e1.send_nowait([msg(1, 2, i), msg(1, 3, i), msg(1, 4, i)])
        received = len(await drain(e2)) + len(await drain(e3))
        s = network.statistics()
    drops = sum(v for k, v in s.items() if k.startswith("dropped_"))
    assert s["in_flight"] == 0
    assert s["sent"] == 900
    assert s["sent"] + s["duplicated"] == s["delivered"] + drops
    assert received == s["delivered"]
    assert s["dropped_unreachable"] == 300 and s["dropped_partition"] == 300


async def _trace(seed: int) -> list[tuple[int, float, list[int]]]:
    """Who received what, when, on a network with every fault on; sends from one task."""
    faults = LinkFaults(
        delay_seconds=0.005,
        jitter_seconds=0.01,
        loss_probability=0.1,
        duplicate_probability=0.1,
        reorder_probability=0.2,
        reorder_delay_seconds_max=0.03,
    )
    network = MemoryNetwork(rng_seed=seed, faults=faults)
    trace: list[tuple[int, float, list[int]]] = []

    async def record(endpoint: MemoryEndpoint) -> None:
        while True:
            batch = await endpoint.receive()
            trace.append((endpoint.node_id, trio.current_time(), seqs(batch)))

    async with attached(network, 1, 2, 3) as endpoints, trio.open_nursery() as nursery:
        start = trio.current_time()
        for endpoint in endpoints:
            nursery.start_soon(record, endpoint)
        for i in range(200):
            src = 1 + i % 3
            endpoints[src - 1].send_nowait(
                [msg(src, 1 + (i + 1) % 3, i), msg(src, 1 + (i + 2) % 3, i)]
            )
            await trio.sleep(0.002)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    return [(node, round(at - start, 6), batch) for node, at, batch in trace]


async def test_the_same_seed_gives_the_same_delivery_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second, other = await _trace(42), await _trace(42), await _trace(43)
    assert first == second, "seed=42: two runs delivered differently"
    assert first != other
    assert sum(len(batch) for _, _, batch in first) > 300


def test_fault_probabilities_outside_zero_one_are_refused() -> None:
    with pytest.raises(ValueError, match=r"LinkFaults\.loss_probability must be in \[0, 1\]"):
        LinkFaults(loss_probability=1.5)
    with pytest.raises(ValueError, match=r"LinkFaults\.delay_seconds must be finite"):
        LinkFaults(delay_seconds=-1.0)
    with pytest.raises(ValueError, match="inbox_messages_max must be >= 1"):
        MemoryNetwork(rng_seed=1, inbox_messages_max=0)
