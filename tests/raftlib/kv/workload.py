"""Shared pieces of the KV tests: in-process clusters behind KvCommandHandler, client workers
that record Jepsen-style histories (invoke / ok / fail / info) for lincheck's ``kv`` model."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from raftlib.client import (
    CommandError,
    Handler,
    InProcessConnector,
    KvClient,
    OutcomeUnknown,
    Unavailable,
)
from raftlib.kv import KvStateMachine
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import LocalCluster


def memory_address(node_id: int) -> str:
    return f"memory:{node_id}"


def machine(cluster: LocalCluster, node_id: int) -> KvStateMachine:
    sm = cluster.state_machine(node_id)
    assert isinstance(sm, KvStateMachine)
    return sm


def handler_for(
    cluster: LocalCluster, node_id: int, config: KvServiceConfig | None = None
) -> KvCommandHandler:
    return KvCommandHandler(
        cluster.node(node_id),
        machine(cluster, node_id),
        client_addresses={nid: memory_address(nid) for nid in cluster.ids},
        clock=trio.current_time,
        config=config or KvServiceConfig(request_timeout_seconds=2.0),
    )


def connector_for(cluster: LocalCluster) -> InProcessConnector:
    """Reaches whichever incarnation of a node is up at call time; a down node is
    ``NotDelivered`` (the request never reached it)."""

    def resolve(address: str) -> Handler | None:
        node_id = int(address.split(":", 1)[1])
        if not cluster.is_up(node_id):
            return None
        return handler_for(cluster, node_id).handle

    return InProcessConnector(resolve)


def client_for(cluster: LocalCluster, **options: Any) -> KvClient:
    return KvClient(
        [memory_address(nid) for nid in cluster.ids], connector=connector_for(cluster), **options
    )


class History:
    """Events in the order they happened (one Trio run: list order is real-time order)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, process: int, kind: str, f: str, key: str, value: Any) -> None:
        self.events.append({"process": process, "type": kind, "f": f, "key": key,
                            "value": value, "time": trio.current_time()})

    async def run(
        self, process: int, f: str, key: str, value: Any, call: Callable[[], Awaitable[Any]]
    ) -> str:
        """Record one operation; returns its completion type. ``call`` returns the output."""
        self.add(process, "invoke", f, key, value)
        try:
            output = await call()
        except OutcomeUnknown:
            self.add(process, "info", f, key, None)
            return "info"
        except (Unavailable, CommandError):
            self.add(process, "fail", f, key, None)
            return "fail"
        self.add(process, "ok", f, key, output)
        return "ok"

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e["type"] == kind)


def _text(value: bytes | None) -> str:
    # The kv model starts every key at "" and DEL returns it there: absent reads as "".
    return "" if value is None else value.decode()


async def kv_worker(
    client: KvClient,
    history: History,
    *,
    worker: int,
    keys: list[str],
    ops: int,
    rng: random.Random,
    processes_per_worker: int = 1000,
    pause_seconds_max: float = 0.1,
) -> None:
    """``ops`` random get/put/append/cas operations. After an ``info`` the worker continues as
    a new process (an unknown operation's process never invokes again)."""
    process = worker * processes_per_worker
    last_seen: dict[str, str] = {}
    for i in range(ops):
        key = rng.choice(keys)
        roll = rng.random()
        token = f"{worker}.{i}"
        if roll < 0.4:
            outcome = await history.run(process, "get", key, None,
                                        functools.partial(_get, client, key, last_seen))
        elif roll < 0.6:
            outcome = await history.run(process, "put", key, token,
                                        functools.partial(_put, client, key, token))
        elif roll < 0.8 or not last_seen.get(key):
            piece = f"<{token}>"
            outcome = await history.run(process, "append", key, piece,
                                        functools.partial(_append, client, key, piece))
        else:
            expected = last_seen[key]
            outcome = await history.run(process, "cas", key, [expected, token],
                                        functools.partial(_cas, client, key, expected, token))
        if outcome == "info":
            process += 1
        # Spread the workload over (virtual) time so faults land in the middle of it.
        await trio.sleep(rng.uniform(0, pause_seconds_max))


async def _get(client: KvClient, key: str, last_seen: dict[str, str]) -> str:
    value = _text(await client.get(key.encode()))
    last_seen[key] = value
    return value


async def _put(client: KvClient, key: str, value: str) -> None:
    await client.set(key.encode(), value.encode())


async def _append(client: KvClient, key: str, piece: str) -> None:
    await client.append(key.encode(), piece.encode())


async def _cas(client: KvClient, key: str, expected: str, new: str) -> bool:
    return await client.cas(key.encode(), expected.encode(), new.encode())
