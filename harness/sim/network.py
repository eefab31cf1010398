"""The simulated network between nodes, and the (fault-free) links from clients to nodes.

Faults are data set by the nemesis: ``blocked`` directed links (a partition) and one
``LinkFaults`` record for every link (loss, duplication, extra delay, reordering). Each batch a
node sends to one peer normally travels as one unit (like a TCP write) with its own seeded
delay, so batches may still arrive out of order; while loss, duplication or reordering is on,
every message travels alone and each draw is per message. A blocked link drops messages when
they are sent and when they would arrive, so a partition also catches what is in flight.

Client links are not faulted (as in Jepsen, clients reach their node directly); a crashed or
paused node is what a client sees fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from harness.sim.loop import EventLoop
from raftlib.core.types import Message, NodeId

COUNTERS = (
    "sent",
    "delivered",
    "dropped_partition",
    "dropped_loss",
    "dropped_down",
    "duplicated",
    "reordered",
    "delayed",
)


class Receiver(Protocol):
    def receive(self, msgs: Sequence[Message]) -> None: ...


@attrs.frozen
class LinkFaults:
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    reorder_delay_us_max: int = 0
    extra_delay_us: int = 0
    extra_jitter_us: int = 0

    def per_message(self) -> bool:
        return bool(
            self.loss_probability or self.duplicate_probability or self.reorder_probability
        )


NO_FAULTS = LinkFaults()


class SimNetwork:
    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        client_rng: random.Random,
        *,
        delay_us: int = 500,
        jitter_us: int = 1000,
        client_delay_us: int = 200,
        client_jitter_us: int = 300,
    ) -> None:
        self._loop = loop
        self._rng = rng
        self._client_rng = client_rng
        # Bound once: ``send`` uses them for every batch (an attribute and a bound method
        # fewer to build per call).
        self._random = rng.random
        self._after = loop.after
        self._deliver_at = self._deliver
        self._delay_us = delay_us
        self._jitter_us = jitter_us
        self._jitter_range = jitter_us + 1  # a fault-free delay is delay + [0, jitter] us
        self._client_delay_us = client_delay_us
        self._client_jitter_us = client_jitter_us
        self.receivers: dict[NodeId, Receiver] = {}
        self.blocked: frozenset[tuple[NodeId, NodeId]] = frozenset()
        self._faults = NO_FAULTS
        self._per_message = False  # self._faults.per_message(), asked once per send
        # Messages sent and delivered, counted for every message: plain attributes (a dict
        # item costs twice as much); the rarer counters in ``_counts``; ``counters`` has all.
        self._sent = 0
        self._delivered = 0
        self._counts = dict.fromkeys(COUNTERS, 0)
        # Sees every batch a node sends, before it travels (a trigger nemesis sets it); when it
        # returns False the sender died before the batch left, and nothing is sent.
        self.on_send: Callable[[NodeId, Sequence[Message]], bool] | None = None

    @property
    def counters(self) -> dict[str, int]:
        """Every counter by name (a copy), in ``COUNTERS`` order."""
        counts = dict(self._counts)
        counts["sent"] = self._sent
        counts["delivered"] = self._delivered
        return counts

    def count_dropped_down(self, messages: int) -> None:
        """``messages`` reached a node that is down (the node counts them as it drops them)."""
        self._counts["dropped_down"] += messages

    @property
    def faults(self) -> LinkFaults:
        return self._faults

    @faults.setter
    def faults(self, faults: LinkFaults) -> None:
        self._faults = faults
        self._per_message = faults.per_message()

    # --- node to node ---------------------------------------------------------------------

    def send(self, src: NodeId, messages: Sequence[Message]) -> None:
        count = len(messages)
        self._sent += count
        if self.on_send is not None and not self.on_send(src, messages):
            self._counts["dropped_down"] += count
            return
        if self._per_message:
            for msg in messages:
                if (src, msg.dst) in self.blocked:
                    self._counts["dropped_partition"] += 1
                else:
                    self._send_faulty(src, msg.dst, msg)
            return
        blocked = self.blocked
        # The fault-free delay is drawn here rather than in ``_delay`` (one call less per
        # batch; the same draw from the same stream).
        plain = self._faults is NO_FAULTS
        if count == 1:
            # The common case (an acknowledgement, a vote): no grouping to do, and the batch
            # travels as it was handed over (nothing changes it after the send).
            dst = messages[0].dst
            if blocked and (src, dst) in blocked:
                self._counts["dropped_partition"] += 1
            elif plain:
                self._after(self._delay_us + int(self._random() * self._jitter_range),
                            self._deliver_at, (src, dst, messages))
            else:
                self._after(self._delay(), self._deliver_at, (src, dst, messages))
            return
        # One batch per destination, in send order (most Readies address each peer once).
        by_dst: dict[NodeId, list[Message]] = {}
        for msg in messages:
            batch = by_dst.get(msg.dst)
            if batch is None:
                by_dst[msg.dst] = [msg]
            else:
                batch.append(msg)
        after = self._after
        deliver = self._deliver_at
        random = self._random
        delay_us = self._delay_us
        jitter_range = self._jitter_range
        for dst, batch in by_dst.items():
            if blocked and (src, dst) in blocked:
                self._counts["dropped_partition"] += len(batch)
            elif plain:
                after(delay_us + int(random() * jitter_range), deliver, (src, dst, batch))
            else:
                after(self._delay(), deliver, (src, dst, batch))

    def _delay(self) -> int:
        faults = self._faults
        if faults is NO_FAULTS:
            return self._delay_us + int(self._rng.random() * (self._jitter_us + 1))
        if faults.extra_delay_us or faults.extra_jitter_us:
            self._counts["delayed"] += 1
        jitter = self._jitter_us + faults.extra_jitter_us
        return self._delay_us + faults.extra_delay_us + int(self._rng.random() * (jitter + 1))

    def _send_faulty(self, src: NodeId, dst: NodeId, msg: Message) -> None:
        rng = self._rng
        faults = self._faults
        if rng.random() < faults.loss_probability:
            self._counts["dropped_loss"] += 1
            return
        copies = 1
        if rng.random() < faults.duplicate_probability:
            copies = 2
            self._counts["duplicated"] += 1
        for _ in range(copies):
            delay = self._delay()
            if rng.random() < faults.reorder_probability:
                delay += int(rng.random() * (faults.reorder_delay_us_max + 1))
                self._counts["reordered"] += 1
            self._loop.after(delay, self._deliver, (src, dst, [msg]))

    def _deliver(self, item: tuple[NodeId, NodeId, Sequence[Message]]) -> None:
        src, dst, batch = item
        blocked = self.blocked
        if blocked and (src, dst) in blocked:
            self._counts["dropped_partition"] += len(batch)
            return
        self._delivered += len(batch)
        self.receivers[dst].receive(batch)

    # --- clients --------------------------------------------------------------------------

    def client_hop(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Carry a request or reply between a client and a node (never lost, never cut)."""
        jitter = int(self._client_rng.random() * (self._client_jitter_us + 1))
        self._loop.after(self._client_delay_us + jitter, fn, arg)
