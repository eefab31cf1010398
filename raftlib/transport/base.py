"""The transport interface: how a node's driver exchanges Raft messages with its peers.

A transport is opened once per node, as an async context manager that owns any background tasks
(listeners, reconnecting senders) in its own nursery:

    async with transport.open(node_id) as endpoint:
        endpoint.send_nowait(messages)
        batch = await endpoint.receive()

An endpoint may also offer ``deliver_to(sink)`` (``Sink``): from then on it hands each batch,
all from one sender, to the sink from the task that received it, and ``receive`` is not used;
the node then needs no task of its own to move batches from one queue to the next.

Raft tolerates loss, duplication and reordering of messages, so sending never blocks: when a
peer's bounded send queue is full the transport drops (and counts) the message instead of
holding the node back. Implementations: ``raftlib.transport.memory`` (in-process, seeded faults)
and ``raftlib.transport.tcp`` (length-prefixed frames on TCP).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from raftlib.core.types import Message, NodeId


class Sink(Protocol):
    """Where an endpoint with ``deliver_to`` puts each received batch (all of one sender)."""

    def put_nowait(self, batch: list[Message]) -> bool:
        """Take ``batch`` now; False when full (the endpoint then awaits ``put``)."""
        ...

    async def put(self, batch: list[Message]) -> None:
        """Take ``batch`` once there is room."""
        ...


class Endpoint(Protocol):
    def send_nowait(self, messages: Sequence[Message]) -> None:
        """Queue messages for their ``dst`` nodes. Never blocks; may drop under pressure."""
        ...

    async def receive(self) -> list[Message]:
        """Wait for and return the next batch of one or more messages addressed to this node."""
        ...

    def statistics(self) -> dict[str, int]:
        """Counters (sent, received, dropped, ...) for status pages and tests."""
        ...


class Transport(Protocol):
    def open(self, node_id: NodeId) -> AbstractAsyncContextManager[Endpoint]:
        """Attach node ``node_id`` and return its endpoint for the lifetime of the block."""
        ...
