"""Divergence is loud: two of three nodes lose the tail of their logs (a disk restored from an
old backup), elect a leader among themselves and overwrite what the third committed. The third
must stop with an error naming the index and both terms, never answer "success" and go on with
a state machine that differs from theirs at the same committed index."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raftlib.core.types import HardState
from raftlib.errors import Diverged
from raftlib.storage.memory import MemoryStorage
from raftlib.testing import LocalCluster, open_local_cluster


async def _propose(cluster: LocalCluster, count: int) -> None:
    for i in range(count):
        leader = await cluster.wait_leader()
        await cluster.node(leader).propose(b"cmd-%d" % i)


def _lose_tail(cluster: LocalCluster, node: int, keep: int) -> None:
    """Replace ``node``'s disk by one holding only the first ``keep`` entries."""
    entries = cluster.storage(node).durable_state()[1][:keep]
    term = entries[-1].term
    disk = MemoryStorage()
    disk.append(entries)
    disk.set_hard_state(HardState(term, 0, keep))
    disk.sync()
    cluster._members[node].storage = disk


async def test_a_node_whose_committed_entries_are_overwritten_stops_naming_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(BaseExceptionGroup) as caught:
        async with open_local_cluster(3, seed=2) as cluster:
            await _propose(cluster, 10)
            await cluster.wait_converged()
            leader = await cluster.wait_leader()
            others = [n for n in cluster.ids if n != leader]
            for n in cluster.ids:
                await cluster.stop(n)
            for n in others:
                _lose_tail(cluster, n, keep=5)
                await cluster.restart(n)
            with trio.fail_after(5):
                while cluster.leader() is None:
                    await trio.sleep(0.05)
            await cluster.restart(leader)  # holds 11 committed entries; they hold 5
            await trio.sleep(5)
    found = _leaves(caught.value, Diverged)
    assert found, caught.value
    text = str(found[0])
    assert "diverged at index 6" in text and "term 2" in text and "term 1" in text, text


def _leaves(exc: BaseException, kind: type[BaseException]) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner, kind)]
    return [exc] if isinstance(exc, kind) else []
