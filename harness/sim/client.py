"""Simulated clients: Jepsen's worker threads, recording what they see honestly.

Each client invokes one operation at a time, waits a seeded think time between operations (so
all clients together aim at the run's rate), and behaves like ``raftlib.client.KvClient``:

- It holds one exactly-once session, opened lazily (``SESSION.OPEN`` through the log) before
  its first write, and numbers its writes 1, 2, 3, ... within it.
- It sends each attempt to the node it believes leads. A definite refusal before the command
  could enter a log (NotLeader, node down, dropped by a new leader, backpressure) makes it
  follow the leader hint, or try the next node after a short backoff, up to
  ``redirects_max`` refusals per operation.
- An attempt whose outcome is unknown (no answer within ``request_timeout``, or its node
  crashed holding it) is retried on the next node with the SAME sequence number, up to
  ``write_attempts_max`` attempts: if the first attempt was applied, the session table answers
  the retry from its cache instead of applying it again.

Outcomes in the history:

- ``ok``: the state machine's answer came back (from any attempt of the operation);
- ``fail``: no attempt can have taken effect (every one was refused);
- ``info``: the client gave up while some attempt may still be in a log. As in Jepsen, that
  process never invokes again: the client continues under a new process id (keeping its
  session: a late application of the abandoned seq is harmless, a later seq supersedes it).

A read changes nothing, so a read that gets no answer within one ``request_timeout`` is
recorded as ``fail`` (it did not take effect), as Jepsen's clients do for idempotent reads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from harness import commands
from harness.history import HistoryRecorder
from harness.sim.loop import EventLoop
from harness.sim.network import SimNetwork
from harness.sim.node import ClientRequest, Reply, ReplyKind, RequestKind, SimNode
from harness.sim.params import SimParams
from harness.workloads import OpSpec
from raftlib.core.types import NodeId
from raftlib.kv.commands import NO_SESSION, Op

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
        initial: Any,
        workload: str = "",
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
        self._initial = initial
        self._workload = workload  # the mapping onto KV commands (harness.commands)
        self.process = new_process()
        self._target = self._node_ids[rng.randrange(len(self._node_ids))]
        self.session = NO_SESSION
        self._seq = 0
        # The open operation: its number, spec, and what this client knows about it.
        self._op = 0
        self._spec: OpSpec | None = None
        self._kind = RequestKind.READ
        self._attempt = 0  # the latest attempt (numbers grow over the client's life)
        self._phase_start = 0  # attempts from here on belong to the current phase
        self._deadline_us = 0
        self._refusals = 0
        # Nodes asked since the round robin last wrapped: a leader hint that points back at one
        # of them is stale (a removed node may name a leader that is gone) and is not followed,
        # or two stale hints would send the client round in a circle.
        self._asked: set[NodeId] = set()
        self._unknown_attempts = 0
        self._in_flight = False  # the latest attempt was sent and not answered
        self._in_flight_kind = RequestKind.READ  # what the latest attempt asked for
        self._maybe_applied = False  # some attempt of this write may be in a log
        self.on_complete: Callable[[Completion], None] | None = None
        self.ok_writes: list[bytes] = []  # log commands whose application acknowledged a write
        # (session, seq, op) of each write recorded ``fail`` because every attempt was refused:
        # the refusals check proves none of them reached the committed log.
        self.refused_writes: list[tuple[int, int, Op]] = []

    @property
    def busy(self) -> bool:
        return self._spec is not None

    def invoke(self, spec: OpSpec) -> None:
        if self._spec is not None:
            raise AssertionError(f"process {self.process} invokes while an operation is open")
        self._op += 1
        self._spec = spec
        self._refusals = 0
        self._asked.clear()
        self._unknown_attempts = 0
        self._maybe_applied = False
        self._history.invoke(self.process, spec)
        attempts = self._params.write_attempts_max if spec.is_write else 1
        self._deadline_us = self._loop.now_us + attempts * self._timeout_us
        self._loop.at(self._deadline_us, self._on_deadline, self._op)
        if not spec.is_write:
            self._kind = RequestKind.READ
        elif self.session == NO_SESSION:
            self._kind = RequestKind.OPEN
        else:
            self._start_write()
        self._new_phase()

    def _start_write(self) -> None:
        self._kind = RequestKind.WRITE
        self._seq += 1

    def _new_phase(self) -> None:
        self._phase_start = self._attempt + 1
        self._send(self._op)

    def _send(self, op: int) -> None:
        spec = self._spec
        if op != self._op or spec is None:
            return
        if self._in_flight and self._in_flight_kind is RequestKind.WRITE:
            # Superseding a write attempt that may still enter a log would lose track of it:
            # the operation could then be recorded ``fail`` although it was applied.
            raise AssertionError(f"process {self.process}: write attempt {self._attempt} "
                                 "superseded while in flight")
        self._attempt += 1
        self._in_flight = True
        self._in_flight_kind = self._kind
        if self._kind is RequestKind.READ:
            request = ClientRequest(self, op, self._attempt, RequestKind.READ,
                                    key=commands.key_bytes(spec.key, self._workload),
                                    workload=self._workload)
        elif self._kind is RequestKind.OPEN:
            request = ClientRequest(self, op, self._attempt, RequestKind.OPEN)
        else:
            request = ClientRequest(
                self, op, self._attempt, RequestKind.WRITE,
                write=commands.write_op(spec.f, spec.key, spec.value, self._initial,
                                        workload=self._workload),
                session=self.session, seq=self._seq,
            )
        self._network.client_hop(self._nodes[self._target].request, request)
        timeout_at = min(self._loop.now_us + self._timeout_us, self._deadline_us)
        self._loop.at(timeout_at, self._on_attempt_timeout, (op, self._attempt))

    # --- answers ------------------------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        if reply.op != self._op or self._spec is None or reply.attempt < self._phase_start:
            return  # about an operation or phase this client already finished
        if reply.kind is ReplyKind.OK:
            self._on_ok(reply)
            return
        if reply.attempt != self._attempt:
            return  # a refusal of an attempt already superseded by a retry
        self._in_flight = False
        kind = reply.kind
        if kind is ReplyKind.NOT_LEADER or kind is ReplyKind.UNAVAILABLE:
            self._refused(reply.leader)
        elif kind is ReplyKind.REJECTED:
            self._refused(0)
        else:  # LOST: the node crashed holding the request
            self._unknown()

    def _on_ok(self, reply: Reply) -> None:
        spec = self._spec
        assert spec is not None
        self._in_flight = False
        if self._kind is RequestKind.READ:
            self._complete("ok", commands.read_value(reply.value, self._initial,
                                                     workload=self._workload))
            return
        if self._kind is RequestKind.OPEN:
            if not isinstance(reply.value, int) or isinstance(reply.value, bool) \
                    or reply.value < 1:
                raise AssertionError(f"SESSION.OPEN answered {reply.value!r}, not a session id")
            self.session = reply.value
            self._seq = 0
            self._start_write()
            self._refusals = 0
            self._new_phase()
            return
        outcome, output = commands.write_output(spec.f, spec.value, reply.value)
        if outcome == "ok":
            if reply.command is not None:
                self.ok_writes.append(reply.command)
            self._complete("ok", output)
        elif self._maybe_applied:
            # SESSIONEXPIRED / STALESEQ after an attempt that may have been applied: that
            # attempt's fate is unknowable now.
            self._complete("info", spec.value)
        else:
            self._complete("fail", spec.value)

    def _refused(self, hint: NodeId) -> None:
        """A definite refusal: this attempt never entered a log."""
        if self._refusals >= self._params.redirects_max:
            self._give_up()
            return
        self._refusals += 1
        self._asked.add(self._target)
        if hint and hint not in self._asked and hint in self._nodes:
            self._target = hint
            self._send(self._op)
            return
        self._next_node()
        self._loop.after(self._params.retry_backoff_us, self._retry, (self._op, self._attempt))

    def _retry(self, item: tuple[int, int]) -> None:
        """The backoff after a refusal is over: send again, unless the operation moved on
        meanwhile (another attempt was sent, e.g. when a late answer to a session opening
        started the write; a second chain of retries would supersede attempts in flight)."""
        op, attempt = item
        if op == self._op and attempt == self._attempt and not self._in_flight:
            self._send(op)

    def _unknown(self) -> None:
        """The latest attempt may or may not be in a log: retry elsewhere, same seq."""
        if self._kind is not RequestKind.READ:
            self._maybe_applied = self._maybe_applied or self._kind is RequestKind.WRITE
            self._unknown_attempts += 1
            if self._unknown_attempts < self._params.write_attempts_max:
                self._next_node()
                self._send(self._op)
                return
        self._give_up()

    def _next_node(self) -> None:
        # The node after the current one, in id order (nodes may join during a run).
        target = self._target
        later = [n for n in self._nodes if n > target]
        if not later:
            self._asked.clear()
        self._target = min(later) if later else min(self._nodes)

    def _on_attempt_timeout(self, item: tuple[int, int]) -> None:
        op, attempt = item
        if op != self._op or attempt != self._attempt or self._spec is None:
            return
        if not self._in_flight:
            return  # answered (a backoff may be pending): not this timer's business
        self._in_flight = False
        if self._loop.now_us >= self._deadline_us:
            self._give_up_unknown()
            return
        self._unknown()

    def _on_deadline(self, op: int) -> None:
        if op != self._op or self._spec is None:
            return
        if self._in_flight:
            self._give_up_unknown()
        else:
            self._give_up()

    def _give_up_unknown(self) -> None:
        if self._kind is RequestKind.WRITE:
            self._maybe_applied = True
        self._give_up()

    def _give_up(self) -> None:
        spec = self._spec
        assert spec is not None
        unknown = self._maybe_applied and spec.is_write
        if not unknown and self._kind is RequestKind.WRITE:
            op = commands.write_op(spec.f, spec.key, spec.value, self._initial,
                                   workload=self._workload)
            self.refused_writes.append((self.session, self._seq, op))
        self._complete("info" if unknown else "fail", spec.value)

    def _complete(self, outcome: str, output: Any) -> None:
        spec = self._spec
        assert spec is not None
        self._history.complete(self.process, spec, outcome, output)
        process = self.process
        self._spec = None
        self._in_flight = False
        self._maybe_applied = False
        if outcome == "info":
            self.process = self._new_process()
        if self.on_complete is not None:
            self.on_complete((process, spec, outcome, output))
