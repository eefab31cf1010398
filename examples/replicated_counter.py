"""A replicated counter in a few lines: the state machine API end to end.

Three nodes run in this process (memory network, in-memory storage). Every node applies the
same committed commands in the same order, so every node ends with the same count, even after
the leader crashes mid-run. Run it:

    python examples/replicated_counter.py
"""

from __future__ import annotations

from typing import BinaryIO

import trio

from raftlib import NotLeader, ProposalDropped
from raftlib.testing import LocalCluster, open_local_cluster


class Counter:
    """The state machine: ``apply`` is deterministic, quick, and returns the proposer's result."""

    def __init__(self) -> None:
        self.value = 0

    def apply(self, command: bytes) -> int:
        self.value += int(command)  # the command is the amount to add, as ASCII digits
        return self.value

    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"%d" % self.value)

    def restore(self, file: BinaryIO) -> None:
        self.value = int(file.read())


async def add(cluster: LocalCluster, amount: int) -> int:
    """Propose at whoever leads, retrying through elections."""
    while True:
        leader = await cluster.wait_leader()
        try:
            result: int = await cluster.node(leader).propose(b"%d" % amount)
            return result
        except (NotLeader, ProposalDropped):
            # ProposalDropped: a new leader replaced the entry, so it was NOT applied. A
            # timeout would be different: the outcome is unknown (see raftlib.client sessions).
            await trio.sleep(0.05)


async def main() -> dict[int, int]:
    async with open_local_cluster(3, seed=1, state_machine_factory=Counter) as cluster:
        for amount in range(1, 11):
            await add(cluster, amount)
        await cluster.crash(await cluster.wait_leader())  # lose the leader mid-run
        for amount in range(11, 21):
            await add(cluster, amount)
        leader = await cluster.wait_leader()
        counter = cluster.state_machine(leader)
        assert isinstance(counter, Counter)
        read = await cluster.node(leader).read(lambda: counter.value)  # linearizable read
        print(f"leader {leader} reads {read}")
        await cluster.wait_converged()
        values = {}
        for nid in cluster.ids:
            if cluster.is_up(nid):
                sm = cluster.state_machine(nid)
                assert isinstance(sm, Counter)
                values[nid] = sm.value
        print("every running node:", values)
        return values


if __name__ == "__main__":
    trio.run(main)
