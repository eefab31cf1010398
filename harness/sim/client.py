"""Simulated clients: Jepsen's worker threads, recording what they see honestly.

Each client invokes one operation at a time, waits a seeded think time between operations (so
all clients together aim at the run's rate), and sends each request to the node it believes
leads. A definite refusal before the command could enter a log (NotLeader, node down) makes it
follow the leader hint, or try the next node after a short backoff, up to ``redirects_max``
times or until the request timeout, whichever comes first; then the operation ``fail``s (every
attempt was refused, so it did not happen). Once a write may have entered a log (a request is
in flight with no answer yet), the client waits:

- ``ok``: the state machine's result came back;
- ``fail``: the node said the entry was replaced by a new leader (it was not applied);
- ``info``: the request timed out or its node crashed. The outcome is unknown, and, as in
  Jepsen, that process never invokes again: the client continues under a new process id.

A read changes nothing, so a read that times out or loses its node is recorded as ``fail``
(it did not take effect), as Jepsen's clients do for idempotent reads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from harness import commands
from harness.history import HistoryRecorder
from harness.sim.loop import EventLoop
from harness.sim.network import SimNetwork
from harness.sim.node import ClientRequest, Reply, ReplyKind, SimNode
from harness.sim.params import SimParams
from harness.workloads import OpSpec
from raftlib.core.types import NodeId

# What a completed operation looked like: (process, spec, outcome type, output)
Completion = tuple[int, OpSpec, str, Any]


class SimClient:
    def __init__(
        self,
        *,
        loop: EventLoop,
        network: SimNetwork,
        nodes: dict[NodeId, SimNode],
        params: SimParams,
        history: HistoryRecorder,
        rng: random.Random,
        new_process: Callable[[], int],
        request_timeout_us: int,
    ) -> None:
        self._loop = loop
        self._network = network
        self._nodes = nodes
        self._node_ids = sorted(nodes)
        self._params = params
        self._history = history
        self._rng = rng
        self._new_process = new_process
        self._timeout_us = request_timeout_us
        self.process = new_process()
        self._target = self._node_ids[rng.randrange(len(self._node_ids))]
        self._token = 0
        self._spec: OpSpec | None = None
        self._command: bytes | None = None
        self._redirects = 0
        self._in_flight = False  # a request was sent and not answered: it may be in a log
        self._ops = 0
        self.on_complete: Callable[[Completion], None] | None = None
        self.ok_writes: list[bytes] = []  # commands acknowledged to this client

    @property
    def busy(self) -> bool:
        return self._spec is not None

    def invoke(self, spec: OpSpec) -> None:
        if self._spec is not None:
            raise AssertionError(f"process {self.process} invokes while an operation is open")
        self._ops += 1
        self._token += 1
        self._spec = spec
        self._redirects = 0
        op_id = f"{self.process}.{self._ops}"
        self._command = commands.encode(op_id, spec.f, spec.key, spec.value) if spec.is_write \
            else None
        self._history.invoke(self.process, spec)
        self._loop.after(self._timeout_us, self._on_timeout, self._token)
        self._send(self._token)

    def _send(self, token: int) -> None:
        if token != self._token or self._spec is None:
            return
        self._in_flight = True
        request = ClientRequest(self, token, self._spec, self._command)
        self._network.client_hop(self._nodes[self._target].request, request)

    def on_reply(self, reply: Reply) -> None:
        if reply.token != self._token or self._spec is None:
            return  # the answer to an attempt this client already gave up on
        self._in_flight = False
        kind = reply.kind
        if kind is ReplyKind.OK:
            spec = self._spec
            output = reply.value if spec.f in ("read", "get", "cas") else spec.value
            if spec.is_write and self._command is not None:
                self.ok_writes.append(self._command)
            self._complete("ok", output)
        elif kind is ReplyKind.NOT_LEADER or kind is ReplyKind.UNAVAILABLE:
            self._redirect(reply.leader)
        elif kind is ReplyKind.REJECTED:
            self._complete("fail", self._spec.value)
        else:  # LOST: the node crashed holding the request
            self._complete("info" if self._spec.is_write else "fail", self._spec.value)

    def _redirect(self, hint: NodeId) -> None:
        assert self._spec is not None
        if self._redirects >= self._params.redirects_max:
            self._complete("fail", self._spec.value)
            return
        self._redirects += 1
        if hint and hint != self._target and hint in self._nodes:
            self._target = hint
            self._send(self._token)
            return
        ids = self._node_ids
        self._target = ids[(ids.index(self._target) + 1) % len(ids)]
        self._loop.after(self._params.retry_backoff_us, self._send, self._token)

    def _on_timeout(self, token: int) -> None:
        if token != self._token or self._spec is None:
            return
        # Waiting out a backoff after refusals: nothing of this operation can be in a log.
        unknown = self._in_flight and self._spec.is_write
        self._complete("info" if unknown else "fail", self._spec.value)

    def _complete(self, outcome: str, output: Any) -> None:
        spec = self._spec
        assert spec is not None
        self._history.complete(self.process, spec, outcome, output)
        process = self.process
        self._spec = None
        self._command = None
        self._in_flight = False
        self._token += 1
        if outcome == "info":
            self.process = self._new_process()
        if self.on_complete is not None:
            self.on_complete((process, spec, outcome, output))
