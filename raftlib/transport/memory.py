"""An in-process transport for tests and simulation, with seeded network faults.

    network = MemoryNetwork(rng_seed=7, delay_seconds=0.002, jitter_seconds=0.001)
    async with network.open(1) as e1, network.open(2) as e2:
        e1.send_nowait([message_to_2])
        batch = await e2.receive()

Faults are data (``LinkFaults``): a fixed delay plus seeded jitter, and probabilities of loss,
duplication and reordering; a default for every link, overridable per directed link. Partitions
are independent of faults: ``partition(groups)``, ``isolate(node)``, ``cut(a, b)`` and ``heal()``.
A cut link drops messages both when they are sent and when they would be delivered, so a
partition also catches what was already in flight.

Every random draw comes from one ``random.Random(rng_seed)`` owned by the network, drawn in the
order messages are sent, so the same seed and the same sequence of sends give the same
deliveries at the same (virtual) times. Trio itself schedules tasks in no fixed order; a test
that needs an exact replay drives sends from one task, as the tests here do.

Messages with no delay go straight into the receiver's inbox. Delayed messages wait in the
*receiver's* timer heap, which a single task of the receiver's ``open()`` block drains at each
due time, so there is no task per message, and messages in flight to a node that is closed
(crashed) are lost with it. Inboxes are bounded (``inbox_messages_max``): a message arriving at
a full inbox is dropped and counted, as a real network would under overload.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from raftlib.core.types import Message, NodeId

INBOX_MESSAGES_MAX_DEFAULT = 10_000
RECEIVE_MESSAGES_MAX_DEFAULT = 4096


def _check_probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"LinkFaults.{attribute.name} must be in [0, 1], got {value}")


def _check_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"LinkFaults.{attribute.name} must be finite and >= 0, got {value}")


@attrs.frozen
class LinkFaults:
    """How one directed link misbehaves. Each message is delayed by ``delay_seconds`` plus a
    uniform draw in [0, ``jitter_seconds``]; a reordered message gets an extra uniform delay in
    [0, ``reorder_delay_seconds_max``] so later messages may overtake it."""

    delay_seconds: float = attrs.field(default=0.0, validator=_check_seconds)
    jitter_seconds: float = attrs.field(default=0.0, validator=_check_seconds)
    loss_probability: float = attrs.field(default=0.0, validator=_check_probability)
    duplicate_probability: float = attrs.field(default=0.0, validator=_check_probability)
    reorder_probability: float = attrs.field(default=0.0, validator=_check_probability)
    reorder_delay_seconds_max: float = attrs.field(default=0.05, validator=_check_seconds)


NO_FAULTS = LinkFaults()

_NETWORK_COUNTERS = (
    "sent",
    "delivered",
    "dropped_loss",
    "dropped_partition",
    "dropped_unreachable",
    "dropped_inbox_full",
    "duplicated",
    "reordered",
)


class MemoryNetwork:
    """A simulated network; ``open(node_id)`` attaches a node (implements ``Transport``)."""

    def __init__(
        self,
        rng_seed: int,
        *,
        faults: LinkFaults = NO_FAULTS,
        inbox_messages_max: int = INBOX_MESSAGES_MAX_DEFAULT,
        receive_messages_max: int = RECEIVE_MESSAGES_MAX_DEFAULT,
    ) -> None:
        if inbox_messages_max < 1:
            raise ValueError(f"inbox_messages_max must be >= 1, got {inbox_messages_max}")
        if receive_messages_max < 1:
            raise ValueError(f"receive_messages_max must be >= 1, got {receive_messages_max}")
        self.rng_seed = rng_seed
        self._rng = random.Random(rng_seed)
        self._default_faults = faults
        self._link_faults: dict[tuple[NodeId, NodeId], LinkFaults] = {}
        self.inbox_messages_max = inbox_messages_max
        self.receive_messages_max = receive_messages_max
        self._endpoints: dict[NodeId, MemoryEndpoint] = {}
        # Partition state: links are blocked by any of the three rules (see can_reach).
        self._groups: dict[NodeId, int] | None = None
        self._isolated: set[NodeId] = set()
        self._cut: set[tuple[NodeId, NodeId]] = set()
        self._counters = dict.fromkeys(_NETWORK_COUNTERS, 0)
        self._sequence = 0  # tie-breaker that keeps the timer heap FIFO for equal due times

    # --- Faults -------------------------------------------------------------------------------

    def set_faults(self, faults: LinkFaults) -> None:
        """Replace the default faults of every link without a per-link override."""
        self._default_faults = faults

    def set_link_faults(
        self, src: NodeId, dst: NodeId, faults: LinkFaults | None, *, both_ways: bool = False
    ) -> None:
        """Override the faults of link src -> dst (and dst -> src); None restores the default."""
        for link in ((src, dst), (dst, src)) if both_ways else ((src, dst),):
            if faults is None:
                self._link_faults.pop(link, None)
            else:
                self._link_faults[link] = faults

    def link_faults(self, src: NodeId, dst: NodeId) -> LinkFaults:
        return self._link_faults.get((src, dst), self._default_faults)

    # --- Partitions ---------------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[NodeId]]) -> None:
        """Only nodes in the same group can talk; a node in no group talks to nobody.
        Replaces the previous ``partition`` (cuts and isolations stay until ``heal``)."""
        group_of: dict[NodeId, int] = {}
        for number, group in enumerate(groups):
            for node in group:
                if node in group_of:
                    raise ValueError(f"node {node} is in more than one partition group")
                group_of[node] = number
        self._groups = group_of

    def isolate(self, node: NodeId) -> None:
        """Cut ``node`` off from every other node, both ways."""
        self._isolated.add(node)

    def cut(self, a: NodeId, b: NodeId, *, both_ways: bool = True) -> None:
        """Drop messages from ``a`` to ``b`` (and from ``b`` to ``a`` when ``both_ways``)."""
        self._cut.add((a, b))
        if both_ways:
            self._cut.add((b, a))

    def heal(self) -> None:
        """Undo every partition, isolation and cut (faults stay as configured)."""
        self._groups = None
        self._isolated.clear()
        self._cut.clear()

    def can_reach(self, src: NodeId, dst: NodeId) -> bool:
        if src in self._isolated or dst in self._isolated or (src, dst) in self._cut:
            return False
        if self._groups is not None:
            group = self._groups.get(src)
            return group is not None and group == self._groups.get(dst)
        return True

    # --- Transport ----------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, node_id: NodeId) -> AsyncIterator[MemoryEndpoint]:
        if node_id in self._endpoints:
            raise ValueError(f"node {node_id} is already attached to this MemoryNetwork")
        endpoint = MemoryEndpoint(self, node_id)
        self._endpoints[node_id] = endpoint
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(endpoint._deliver_due)
                try:
                    yield endpoint
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            del self._endpoints[node_id]
            endpoint._close()

    def statistics(self) -> dict[str, int]:
        """Network-wide counters: every message sent ends up delivered or in one drop counter
        (or is still in flight); duplicates count once more in ``delivered``."""
        in_flight = sum(len(e._pending) for e in self._endpoints.values())
        return {**self._counters, "in_flight": in_flight}

    def _route(self, src: NodeId, message: Message) -> None:
        counters = self._counters
        counters["sent"] += 1
        endpoint = self._endpoints.get(message.dst)
        if endpoint is None:
            counters["dropped_unreachable"] += 1
            return
        if not self.can_reach(src, message.dst):
            counters["dropped_partition"] += 1
            return
        faults = self._link_faults.get((src, message.dst), self._default_faults)
        rng = self._rng
        # Draw only for faults that are on, so a fault-free network consumes no randomness.
        if faults.loss_probability and rng.random() < faults.loss_probability:
            counters["dropped_loss"] += 1
            return
        copies = 1
        if faults.duplicate_probability and rng.random() < faults.duplicate_probability:
            counters["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            delay = faults.delay_seconds
            if faults.jitter_seconds:
                delay += rng.uniform(0.0, faults.jitter_seconds)
            if faults.reorder_probability and rng.random() < faults.reorder_probability:
                counters["reordered"] += 1
                delay += rng.uniform(0.0, faults.reorder_delay_seconds_max)
            if delay > 0.0:
                self._sequence += 1
                endpoint._schedule(trio.current_time() + delay, self._sequence, src, message)
            else:
                endpoint._accept([message])


class MemoryEndpoint:
    """One node's attachment to a ``MemoryNetwork`` (implements ``Endpoint``)."""

    def __init__(self, network: MemoryNetwork, node_id: NodeId) -> None:
        self.network = network
        self.node_id = node_id
        self._inbox: deque[Message] = deque()
        self._pending: list[tuple[float, int, NodeId, Message]] = []  # heap by due time
        self._inbox_changed = trio.Event()
        self._pending_changed = trio.Event()
        self._closed = False
        self._counters = {
            "sent": 0,
            "received": 0,
            "received_batches": 0,
            "dropped_inbox_full": 0,
        }

    def send_nowait(self, messages: Sequence[Message]) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"endpoint of node {self.node_id} is closed")
        self._counters["sent"] += len(messages)
        for message in messages:
            self.network._route(self.node_id, message)

    async def receive(self) -> list[Message]:
        while not self._inbox:
            if self._closed:
                raise trio.ClosedResourceError(f"endpoint of node {self.node_id} is closed")
            self._inbox_changed = trio.Event()
            await self._inbox_changed.wait()
        inbox = self._inbox
        count = min(len(inbox), self.network.receive_messages_max)
        batch = [inbox.popleft() for _ in range(count)]
        self._counters["received"] += count
        self._counters["received_batches"] += 1
        return batch

    def statistics(self) -> dict[str, int]:
        return {
            **self._counters,
            "inbox_messages": len(self._inbox),
            "in_flight_to_me": len(self._pending),
        }

    def _accept(self, messages: list[Message]) -> None:
        space = self.network.inbox_messages_max - len(self._inbox)
        if len(messages) > space:
            dropped = len(messages) - max(space, 0)
            self._counters["dropped_inbox_full"] += dropped
            self.network._counters["dropped_inbox_full"] += dropped
            messages = messages[: max(space, 0)]
        if messages:
            self._inbox.extend(messages)
            self.network._counters["delivered"] += len(messages)
            self._inbox_changed.set()

    def _schedule(self, due: float, sequence: int, src: NodeId, message: Message) -> None:
        heapq.heappush(self._pending, (due, sequence, src, message))
        self._pending_changed.set()

    async def _deliver_due(self) -> None:
        """The one timer task: hand every message whose time has come to the inbox, as one
        batch per due instant, checking the link again (a partition catches in-flight ones)."""
        pending = self._pending
        network = self.network
        while True:
            self._pending_changed = trio.Event()
            if not pending:
                await self._pending_changed.wait()
                continue
            due = pending[0][0]
            if trio.current_time() < due:
                # Woken early when a message with an earlier due time is scheduled.
                with trio.move_on_at(due):
                    await self._pending_changed.wait()
                continue
            now = trio.current_time()
            batch: list[Message] = []
            while pending and pending[0][0] <= now:
                _, _, src, message = heapq.heappop(pending)
                if network.can_reach(src, self.node_id):
                    batch.append(message)
                else:
                    network._counters["dropped_partition"] += 1
            self._accept(batch)

    def _close(self) -> None:
        self._closed = True
        # Whatever was still in flight to a closed (crashed) node is lost with it.
        self.network._counters["dropped_unreachable"] += len(self._pending)
        self._pending.clear()
        self._inbox_changed.set()
