"""Snapshots on the Trio node (memory transport, virtual time), after MIT 6.5840's 3D tests:
SnapshotBasic, SnapshotInstall, SnapshotInstallUnreliable, SnapshotInstallCrash,
SnapshotInstallUnCrash, SnapshotAllCrash and SnapshotInit. Every state machine must end equal,
the logs short, and the cluster's safety invariants hold throughout."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, BinaryIO

import trio
import trio.testing

from raftlib import NotLeader, ProposalDropped
from raftlib.errors import ProposalOutcomeUnknown, Stopped
from raftlib.snapshots import SnapshotPolicy
from raftlib.testing import LocalCluster, open_local_cluster
from raftlib.transport.memory import LinkFaults

POLICY = SnapshotPolicy(entries=10, trailing_entries=2, chunk_bytes=5, chunks_inflight_max=2,
                        resend_ticks=4)


class Sum:
    """A tiny state machine with snapshots: the sum and count of the numbers applied."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def apply(self, command: bytes) -> int:
        self.total += int(command)
        self.count += 1
        return self.total

    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"%d %d" % (self.total, self.count))

    def restore(self, file: BinaryIO) -> None:
        total, count = file.read().split()
        self.total, self.count = int(total), int(count)


def sm(cluster: LocalCluster, node: int) -> Sum:
    machine = cluster.state_machine(node)
    assert isinstance(machine, Sum)
    return machine


async def add(cluster: LocalCluster, value: int, timeout_seconds: float = 10.0) -> None:
    with trio.fail_after(timeout_seconds):
        while True:
            leader = await cluster.wait_leader()
            try:
                await cluster.node(leader).propose(b"%d" % value)
                return
            except (NotLeader, ProposalDropped, ProposalOutcomeUnknown, Stopped):
                await trio.sleep(0.05)


async def converged(cluster: LocalCluster, total: int, timeout_seconds: float = 20.0) -> None:
    with trio.fail_after(timeout_seconds):
        while not all(cluster.is_up(n) and sm(cluster, n).total == total for n in cluster.ids):
            await trio.sleep(0.05)
    assert not cluster.violations(), cluster.violations()


def open_cluster(seed: int = 1, **options: Any) -> AbstractAsyncContextManager[LocalCluster]:
    return open_local_cluster(3, seed=seed, snapshot=POLICY, state_machine_factory=Sum,
                              **options)


async def test_snapshot_basic(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster() as cluster:
        for i in range(1, 61):
            await add(cluster, i)
        await converged(cluster, sum(range(1, 61)))
        for n in cluster.ids:
            stats = cluster.node(n).statistics()
            assert stats["snapshots_taken"] >= 4, (n, stats)
            entries = cluster.storage(n).durable_state()[1]
            # The log is bounded: what one threshold's worth adds past the trailing entries.
            assert len(entries) <= POLICY.entries + POLICY.trailing_entries + 2, (n, entries)


async def _install(cluster: LocalCluster, crash: bool) -> None:
    leader = await cluster.wait_leader()
    lagging = next(n for n in cluster.ids if n != leader)
    if crash:
        await cluster.crash(lagging)
    else:
        cluster.network.isolate(lagging)
    for i in range(1, 41):
        await add(cluster, i)
    if crash:
        await cluster.restart(lagging)
    else:
        cluster.network.heal()
    await converged(cluster, sum(range(1, 41)))
    assert cluster.node(lagging).statistics()["snapshots_installed"] >= 1


async def test_snapshot_install(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(seed=2) as cluster:
        await _install(cluster, crash=False)


async def test_snapshot_install_unreliable(autojump_clock: trio.testing.MockClock) -> None:
    faults = LinkFaults(loss_probability=0.1, duplicate_probability=0.05,
                        reorder_probability=0.1, reorder_delay_seconds_max=0.02)
    async with open_cluster(seed=3, faults=faults) as cluster:
        await _install(cluster, crash=False)


async def test_snapshot_install_crash(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(seed=4) as cluster:
        await _install(cluster, crash=True)


async def test_snapshot_install_uncrash_restarts_every_node_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(seed=5) as cluster:
        total = 0
        for _round in range(3):
            for n in cluster.ids:
                await cluster.crash(n)
                for i in range(1, 16):
                    await add(cluster, i)
                    total += i
                await cluster.restart(n)
            await converged(cluster, total)


async def test_snapshot_all_crash_restores_every_node_from_its_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(seed=6) as cluster:
        for i in range(1, 51):
            await add(cluster, i)
        await converged(cluster, sum(range(1, 51)))
        for n in cluster.ids:
            await cluster.crash(n)
        for n in cluster.ids:
            await cluster.restart(n)
            # Restored from its snapshot before anything is replayed.
            assert sm(cluster, n).count >= 30, (n, sm(cluster, n).count)
        await add(cluster, 1000)
        await converged(cluster, sum(range(1, 51)) + 1000)


async def test_snapshot_init_a_restart_right_after_a_snapshot_keeps_every_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(seed=7) as cluster:
        for i in range(1, 12):  # just past the first snapshot threshold
            await add(cluster, i)
        await converged(cluster, sum(range(1, 12)))
        for n in cluster.ids:
            await cluster.crash(n)
        for n in cluster.ids:
            await cluster.restart(n)
        await converged(cluster, sum(range(1, 12)))
        await add(cluster, 5)
        await converged(cluster, sum(range(1, 12)) + 5)
