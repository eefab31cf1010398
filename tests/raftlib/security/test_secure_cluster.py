"""Acceptance: strangers (another CA, a member's stolen identity, plain TCP, a client
certificate) are refused before any Raft message is read while a TLS cluster keeps serving;
and a TLS cluster passes the same linearizability test as a plain one."""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

import lincheck
import pytest
import trio

from tests.raftlib.kv.workload import History, kv_worker
from tests.raftlib.security.tls_cluster import TcpKvCluster, attack, peer_client_context

SEED = 7


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "raftlib.transport" and "refused connection from" in r.getMessage()]


async def test_strangers_are_refused_and_logged_while_the_tls_cluster_keeps_serving(
    pki: Path, rogue_pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="raftlib.transport")
    async with trio.open_nursery() as nursery:
        cluster = TcpKvCluster(nursery, pki)
        for nid in cluster.ids:
            await cluster.start(nid)
        leader = await cluster.wait_leader()
        term = cluster.members[leader].handler.node.status().term  # type: ignore[union-attr]
        client = cluster.client()
        await client.set(b"k", b"before")
        target = cluster.raft_address(leader)
        victim = next(n for n in cluster.ids if n != leader)
        third = next(n for n in cluster.ids if n not in (leader, victim))
        attacks = {
            # Trusts the real CA (so only the node's own check can stop it), presents a
            # certificate for the victim's id from another CA.
            "another CA": peer_client_context(
                pki / "ca.pem", rogue_pki / f"node-{victim}.pem", rogue_pki / f"node-{victim}.key"),
            # A genuine member certificate whose hello claims to be a different member.
            "another member's id": peer_client_context(
                pki / "ca.pem", pki / f"node-{third}.pem", pki / f"node-{third}.key"),
            "a client certificate": peer_client_context(
                pki / "ca.pem", pki / "client.pem", pki / "client.key"),
            "plain TCP": None,
        }
        for name, ctx in attacks.items():
            received, origin = await attack(target, ctx, src=victim, dst=leader, wait_seconds=3)
            assert received == b"", f"{name}: the node answered the hello"
            assert any(origin in line for line in _refusals(caplog)), (
                f"{name}: no refusal logged for {origin}: {_refusals(caplog)}")
        # The forged TimeoutNow (term 1000) reached no core, and service goes on.
        for nid in cluster.ids:
            status = cluster.members[nid].handler.node.status()  # type: ignore[union-attr]
            assert status.term < 1000, f"node {nid} saw the forged message"
        assert cluster.leader() == leader
        assert cluster.members[leader].handler.node.status().term == term  # type: ignore[union-attr]
        await client.set(b"k", b"after")
        assert await client.get(b"k") == b"after"
        await client.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_tls_cluster_is_linearizable_like_a_plain_one_while_leaders_restart(
    secure: bool, pki: Path
) -> None:
    history = History()
    rng = random.Random(SEED)
    restarted: list[int] = []
    async with trio.open_nursery() as nursery:
        cluster = TcpKvCluster(nursery, pki if secure else None)
        for nid in cluster.ids:
            await cluster.start(nid)
        await cluster.wait_leader()

        async def nemesis() -> None:
            for _ in range(2):
                await trio.sleep(rng.uniform(0.5, 1.0))
                leader = await cluster.wait_leader()
                await cluster.stop(leader)
                restarted.append(leader)
                await trio.sleep(rng.uniform(0.3, 0.6))
                await cluster.start(leader)

        clients = [cluster.client(request_timeout_seconds=0.5) for _ in range(3)]
        async with trio.open_nursery() as inner:
            inner.start_soon(nemesis)
            async with trio.open_nursery() as workers:
                for w, client in enumerate(clients):
                    workers.start_soon(functools.partial(
                        kv_worker, client, history, worker=w, keys=["a", "b"], ops=40,
                        rng=random.Random(SEED * 10 + w), pause_seconds_max=0.05))
            inner.cancel_scope.cancel()
        for client in clients:
            await client.aclose()
        nursery.cancel_scope.cancel()
    assert restarted, f"seed={SEED}: the workload ended before any restart"
    assert history.count("ok") > 60, f"seed={SEED}: only {history.count('ok')} ok"
    lincheck.assert_linearizable(history.events, "kv", timeout=60)
