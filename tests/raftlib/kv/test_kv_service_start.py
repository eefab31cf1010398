"""What a node's ports say while it starts: its client port answering means it serves."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio

from raftlib import service
from raftlib.node import NodeConfig
from raftlib.storage.memory import MemoryStorage
from raftlib.supervisor import free_ports, port_open
from raftlib.transport.memory import MemoryNetwork


async def test_the_client_port_listens_only_once_the_metrics_port_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A supervisor (``raftlib cluster``'s "ready", the harness's restarts) takes a node whose
    client port accepts a connection as started. A listening socket accepts into its backlog
    before the server runs, so the client port must not listen before the node is open and its
    metrics served: an operator's first scrape after "ready" was once refused."""
    client_port, metrics_port = free_ports(2)
    metrics_listening: list[bool] = []
    real = service.open_tcp_listeners

    async def recording(port: int, host: str | None = None, **kwargs: Any) -> Any:
        if port == client_port:
            metrics_listening.append(port_open(metrics_port))
        return await real(port, host, **kwargs)

    monkeypatch.setattr(service, "open_tcp_listeners", recording)
    config = NodeConfig(node_id=1, peers={1: "m:1"}, tick_seconds=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(
            service.serve_kv, config, storage=MemoryStorage(), transport=MemoryNetwork(1),
            client_port=client_port, client_addresses={1: f"127.0.0.1:{client_port}"},
            metrics_port=metrics_port))
        assert port_open(client_port)
        nursery.cancel_scope.cancel()
    assert metrics_listening == [True]
