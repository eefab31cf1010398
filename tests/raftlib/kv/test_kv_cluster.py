"""The KV service on in-process clusters (virtual time): linearizable under leader crashes,
exactly-once writes across retries, and no reads from a leader cut off from its quorum."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Sequence

import lincheck
import pytest
import trio
import trio.testing

from raftlib.client import InProcessConnector, KvClient, NotDelivered, OutcomeUnknown
from raftlib.kv import KvStateMachine
from raftlib.resp.protocol import ErrorReply, Reply
from raftlib.testing import LocalCluster, open_local_cluster
from tests.raftlib.kv.workload import (
    History,
    client_for,
    connector_for,
    handler_for,
    kv_worker,
    machine,
    memory_address,
)

KEYS = ["a", "b", "c"]


async def crash_leaders(
    cluster: LocalCluster, rng: random.Random, rounds: int, crashed: list[int] | None = None
) -> None:
    """Crash whoever leads, keep it down a while, restart it; ``rounds`` times."""
    for _ in range(rounds):
        await trio.sleep(rng.uniform(0.3, 1.0))
        leader = cluster.leader()
        if leader is None:
            continue
        if crashed is not None:
            crashed.append(leader)
        await cluster.crash(leader)
        await trio.sleep(rng.uniform(0.2, 0.8))
        await cluster.restart(leader)


@pytest.mark.parametrize(("size", "seed"), [(3, 1), (3, 2), (5, 3)])
async def test_concurrent_clients_stay_linearizable_while_leaders_crash(
    size: int, seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(seed)
    history = History()
    crashed: list[int] = []
    async with open_local_cluster(size, seed=seed, state_machine_factory=KvStateMachine) as c:
        await c.wait_leader()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash_leaders, c, random.Random(seed + 100), 4, crashed)
            async with trio.open_nursery() as workers:
                for w in range(4):
                    client = client_for(c, request_timeout_seconds=0.5)
                    workers.start_soon(functools.partial(
                        kv_worker, client, history, worker=w, keys=KEYS, ops=60,
                        pause_seconds_max=0.2, rng=random.Random(rng.random())))
            nursery.cancel_scope.cancel()
        assert not c.violations(), f"seed={seed}"
    assert len(crashed) >= 3, f"seed={seed}: the workload ended before the crashes"
    ok = history.count("ok")
    assert ok > 80, f"seed={seed}: only {ok} operations succeeded"
    lincheck.assert_linearizable(history.events, "kv", timeout=60)


class LoseFirstReply:
    """Delivers the first write but loses its (successful) reply, then runs ``on_loss`` (a
    crash) before the client notices: to the client a broken connection, outcome unknown."""

    def __init__(
        self, inner: InProcessConnector, on_loss: Callable[[str], Awaitable[None]]
    ) -> None:
        self.inner = inner
        self.on_loss = on_loss
        self.lost: list[str] = []

    async def connect(self, address: str) -> None:
        await self.inner.connect(address)

    async def call(self, address: str, args: Sequence[bytes]) -> Reply:
        reply = await self.inner.call(address, args)
        applied = not isinstance(reply, ErrorReply)  # a MOVED reply is not worth losing
        if applied and not self.lost and args and args[0] in (b"SESSION.CALL", b"INCRBY"):
            self.lost.append(address)
            await self.on_loss(address)
            raise OSError("reply lost")
        return reply

    async def aclose(self) -> None:
        pass


async def _lossy_setup(
    c: LocalCluster, *, use_session: bool
) -> tuple[list[int], LoseFirstReply, KvClient]:
    await c.wait_leader()
    crashed: list[int] = []

    async def crash_the_node(address: str) -> None:
        # Whoever took the write (the leader at that moment) crashes before replying.
        crashed.append(int(address.split(":")[1]))
        await c.crash(crashed[-1])

    lossy = LoseFirstReply(connector_for(c), crash_the_node)
    client = KvClient([memory_address(n) for n in c.ids], connector=lossy,
                      use_session=use_session, request_timeout_seconds=0.5)
    return crashed, lossy, client


async def test_retry_after_leader_crash_is_applied_exactly_once_with_a_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=7, state_machine_factory=KvStateMachine) as c:
        crashed, lossy, client = await _lossy_setup(c, use_session=True)
        # The INCR is applied, its reply is lost, the leader crashes; the client retries the
        # same (session, seq) at the new leader and gets the original reply.
        value = await client.incr(b"counter")
        assert value == 1
        (leader,) = crashed
        assert lossy.lost == [memory_address(leader)]
        new = await c.wait_leader()
        assert new != leader
        await c.restart(leader)
        assert await c.node(new).read(machine(c, new).get, b"counter") == b"1"
        await c.wait_converged()
        for nid in c.ids:
            assert machine(c, nid).get(b"counter") == b"1", f"node {nid}"
        assert machine(c, new).sessions.duplicates == 1


async def test_a_lost_reply_without_a_session_is_reported_unknown_not_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=7, state_machine_factory=KvStateMachine) as c:
        _crashed, lossy, client = await _lossy_setup(c, use_session=False)
        with pytest.raises(OutcomeUnknown):
            await client.incr(b"counter")
        assert len(lossy.lost) == 1
        new = await c.wait_leader()
        # It was in fact applied (once: the client did not blindly retry it).
        assert await c.node(new).read(machine(c, new).get, b"counter") == b"1"


async def test_counters_under_leader_crashes_count_every_increment_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seed = 12
    per_client = 30
    clients = 4
    async with open_local_cluster(3, seed=seed, state_machine_factory=KvStateMachine) as c:
        await c.wait_leader()
        answers: list[int] = []

        async def incrementer(i: int) -> None:
            client = client_for(c, request_timeout_seconds=0.3, op_timeout_seconds=60.0,
                                attempts_max=1000)
            for j in range(per_client):
                answers.append(await client.incr(b"n"))
                await client.append(b"log", b"%d.%d;" % (i, j))
                await trio.sleep(rng.uniform(0, 0.2))

        rng = random.Random(seed)
        crashed: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(crash_leaders, c, random.Random(seed), 5, crashed)
            async with trio.open_nursery() as workers:
                for i in range(clients):
                    workers.start_soon(incrementer, i)
            nursery.cancel_scope.cancel()
        assert len(crashed) >= 4, f"seed={seed}: the workload ended before the crashes"
        leader = await c.wait_leader()
        await c.wait_converged()
        total = clients * per_client
        value = await c.node(leader).read(machine(c, leader).get, b"n")
        assert value == str(total).encode(), f"seed={seed}"
        # Every INCR got a distinct answer: none was applied twice or answered twice.
        assert sorted(answers) == list(range(1, total + 1)), f"seed={seed}"
        pieces = machine(c, leader).get(b"log")
        assert pieces is not None
        assert sorted(pieces.decode().rstrip(";").split(";")) == sorted(
            f"{i}.{j}" for i in range(clients) for j in range(per_client)
        ), f"seed={seed}"


async def test_a_leader_cut_off_from_its_quorum_never_answers_a_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    history = History()
    async with open_local_cluster(3, seed=5, state_machine_factory=KvStateMachine) as c:
        old = await c.wait_leader()
        client = client_for(c)
        await history.run(0, "put", "x", "v0", lambda: client.set(b"x", b"v0"))
        c.network.isolate(old)
        stale = handler_for(c, old).handle

        async def read_old() -> str:
            # Always ask the isolated old leader itself (a client on its side of the cut).
            reply = await stale([b"GET", b"x"])
            if not isinstance(reply, bytes):
                raise NotDelivered(f"refused: {reply!r}")
            return reply.decode()

        answered: list[str] = []

        async def stale_reader() -> None:
            for _ in range(20):
                history.add(1, "invoke", "get", "x", None)
                try:
                    answered.append(await read_old())
                    history.add(1, "ok", "get", "x", answered[-1])
                except NotDelivered:
                    history.add(1, "fail", "get", "x", None)
                await trio.sleep(0.05)

        others = [n for n in c.ids if n != old]
        majority = KvClient([memory_address(n) for n in others], connector=connector_for(c))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stale_reader)
            for i in range(1, 6):
                await history.run(2, "put", "x", f"v{i}",
                                  functools.partial(majority.set, b"x", b"v%d" % i))
                await trio.sleep(0.2)
        assert answered == [], f"the cut-off leader answered reads: {answered}"
        assert history.count("ok") == 6
        lincheck.assert_linearizable(history.events, "kv", timeout=30)


async def test_reads_that_skip_read_index_are_caught_by_the_checker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The control for the test above: a cut-off leader reading its own state without
    ReadIndex serves stale values, and lincheck rejects the history."""
    history = History()
    async with open_local_cluster(3, seed=5, state_machine_factory=KvStateMachine) as c:
        old = await c.wait_leader()
        client = client_for(c)
        await history.run(0, "put", "x", "v0", lambda: client.set(b"x", b"v0"))
        c.network.isolate(old)
        others = [n for n in c.ids if n != old]
        majority = KvClient([memory_address(n) for n in others], connector=connector_for(c))
        await history.run(2, "put", "x", "v1", lambda: majority.set(b"x", b"v1"))

        async def dirty_read() -> str:
            value = machine(c, old).get(b"x")  # no ReadIndex: the bug under test
            return "" if value is None else value.decode()

        await history.run(1, "get", "x", None, dirty_read)
    result = lincheck.check(lincheck.history_from_events(history.events),
                            lincheck.get_model("kv"), timeout=30)
    assert result.verdict == "illegal"
