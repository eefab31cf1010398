"""SimWorld: one whole run in one process on virtual time — cluster, clients, faults.

The phases of a run (all times virtual):

1. ``[0, time_limit)``: clients run the workload at the target rate while the nemesis
   schedule injects and heals faults;
2. ``time_limit``: every fault still active is healed and clients stop invoking;
3. recovery: a probe client must complete one write and a read of every key within
   ``recovery_time`` (liveness: "no progress after heal" otherwise), then every node must apply
   up to the leader's commit index (so the durability check sees each node's whole log), and
   every workload operation still open must complete (they all have timeouts).

Every random choice comes from a ``random.Random`` stream named after its purpose and derived
from the run seed, so the run is a function of (options, schedule).
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from harness.history import HistoryRecorder
from harness.nemesis import Schedule
from harness.options import RunOptions
from harness.sim.client import Completion, SimClient
from harness.sim.durable import DurableLog
from harness.sim.loop import EventLoop, seconds_to_us
from harness.sim.membership import SPARE_NODES, MembershipNemesis
from harness.sim.nemesis_runtime import NemesisRuntime
from harness.sim.network import SimNetwork
from harness.sim.node import SimNode
from harness.sim.params import SimParams
from harness.workloads import OpSpec, Workload, make_workload
from raftlib.core import membership
from raftlib.core.types import Entry, NodeId
from raftlib.invariants import Observer
from raftlib.kv.commands import Op

# How often the recovery phase looks at the cluster, and how long the probe waits before it
# retries an operation that did not succeed.
POLL_US = 50_000
# Once healed and caught up, the run goes on this many (longest) election timeouts with nothing
# to do, to see leadership hold (checks.check_liveness allows SETTLE_TERMS_MAX new terms).
SETTLE_ELECTION_TIMEOUTS = 5
PROBE_RETRY_US = 100_000


@attrs.define
class Liveness:
    heal_us: int = 0
    deadline_us: int = 0
    leader_after_heal_us: int | None = None
    probe_done_us: int | None = None
    caught_up_us: int | None = None
    catch_up_target: int = 0
    probe_attempts: int = 0
    lagging: dict[NodeId, int] = attrs.field(factory=dict)  # node -> applied index, if behind
    # The settling window after everything caught up: the highest term at its start and end.
    settle_us: int = 0
    settle_from_term: int = 0
    settle_to_term: int = 0


@attrs.define
class SimOutcome:
    options: RunOptions
    schedule: Schedule
    params: SimParams
    history: HistoryRecorder
    observer: Observer
    logs: dict[NodeId, list[Entry]]
    anomalies: dict[NodeId, tuple[int, int]]  # node -> (invalid messages, safety anomalies)
    # node -> why its driver stopped it (its committed log contradicted a leader's)
    diverged: dict[NodeId, str]
    acknowledged: list[bytes]
    liveness: Liveness
    node_log: list[str]
    stats: dict[str, Any]
    workload: Workload
    # (session, seq, op) of every write a client recorded ``fail`` as refused.
    refused: list[tuple[int, int, Op]] = attrs.field(factory=list)
    # The members of the final configuration (durability looks at their applied logs).
    members: set[NodeId] | None = None


def stream(seed: int, name: str) -> random.Random:
    """An independent random stream for one purpose (str seeds are hashed with SHA-512, so
    the stream is the same in every process and Python run)."""
    return random.Random(f"{seed}:{name}")


class SimWorld:
    def __init__(
        self, options: RunOptions, schedule: Schedule, params: SimParams | None = None
    ) -> None:
        self.options = options
        self.schedule = schedule
        params = params or SimParams()
        if params.disk == "auto":
            disk = "wal" if "disk" in schedule.kinds() else "memory"
            params = attrs.evolve(params, disk=disk)
        self.params = params
        seed = options.seed
        # A storm bound that grows with the load asked for (a healthy operation costs about
        # ten events per node).
        self.loop = EventLoop(max(self.params.events_per_second_max,
                                  round(100 * options.rate * options.nodes)))
        self.workload = make_workload(options.workload, stream(seed, "workload"))
        self.history = HistoryRecorder(lambda: self.loop.now_us, self.workload.keyed)
        self.observer = Observer()
        # Each node's synced log as the harness sees it (harness.sim.durable), by node id.
        self.durable_logs: dict[NodeId, DurableLog] = {}
        self.node_log: list[str] = []
        p = self.params
        self.network = SimNetwork(
            self.loop, stream(seed, "network"), stream(seed, "client-network"),
            delay_us=p.net_delay_us, jitter_us=p.net_jitter_us,
            client_delay_us=p.client_delay_us, client_jitter_us=p.client_jitter_us,
        )
        voters = tuple(range(1, options.nodes + 1))
        self._voters = voters
        # The membership nemesis needs nodes that are not members yet: they start empty, in
        # join mode (no configuration), and wait to be added.
        spares = SPARE_NODES if "member" in schedule.kinds() else 0
        self.nodes: dict[NodeId, SimNode] = {
            node_id: self._make_node(node_id)
            for node_id in range(1, options.nodes + spares + 1)
        }
        self._next_process = 0
        self._invoked = 0  # workload operations invoked (the probe's are not counted)
        self._think_rng = stream(seed, "think")
        self.time_limit_us = seconds_to_us(options.time_limit)
        self._timeout_us = seconds_to_us(options.request_timeout)
        # Each client waits a uniform [0, 2 * mean] between operations; the mean makes all of
        # them together invoke about ``rate`` operations per second.
        self._think_mean_us = seconds_to_us(options.clients / options.rate)
        self.clients = [self._client(stream(seed, f"client:{i}")) for i in range(options.clients)]
        for client in self.clients:
            client.on_complete = self._workload_next(client)
        membership = None
        if spares:
            membership = MembershipNemesis(
                loop=self.loop, nodes=self.nodes, size=options.nodes,
                make_node=self._join_node, leader=self.leader, log=self._world_event,
                rng=stream(seed, "membership"), time_limit_us=self.time_limit_us,
            )
        self.membership = membership
        self.nemesis = NemesisRuntime(
            loop=self.loop, network=self.network, nodes=self.nodes, history=self.history,
            log=self._world_event, rng=stream(seed, "nemesis-runtime"), leader=self.leader,
            membership=membership,
        )
        self.liveness = Liveness()
        self._probe: SimClient | None = None
        self._probe_ops: list[OpSpec] = []

    # --- construction helpers ---------------------------------------------------------------

    def _make_node(self, node_id: NodeId) -> SimNode:
        options = self.options
        node = SimNode(
            node_id, self._voters if node_id in self._voters else (), loop=self.loop,
            network=self.network, params=self.params, observer=self.observer,
            durable_logs=self.durable_logs, log=self._node_event, seed=options.seed,
            core_settings=options.core_settings(), snapshot_settings=options.snapshot_settings(),
        )
        self.network.receivers[node_id] = node
        return node

    def _join_node(self, node_id: NodeId) -> SimNode:
        """A new empty node, started in join mode (the membership nemesis adds it)."""
        node = self._make_node(node_id)
        node.start()
        return node

    def members(self) -> set[NodeId]:
        """The nodes of the latest committed configuration (the founders until one is
        committed): the checks that need every node to hold the acknowledged writes look at
        these. Taken from the committed log, not from a leader: at the end there may be none
        (a node removed while it was down may keep deposing leaders, seed 84 of the swarm),
        and a fallback to every node counted removed ones as members (a false verdict)."""
        observer = self.observer
        if not observer.conf_indexes:
            return set(range(1, self.options.nodes + 1))
        entry = observer.committed[observer.conf_indexes[-1]]
        conf = membership.decode_conf(entry.data)
        return set(conf.voters) | set(conf.learners) | set(conf.voters_outgoing)

    def _new_process(self) -> int:
        process = self._next_process
        self._next_process += 1
        return process

    def _client(self, rng: random.Random) -> SimClient:
        return SimClient(
            loop=self.loop, network=self.network, nodes=self.nodes, params=self.params,
            history=self.history, rng=rng, new_process=self._new_process,
            request_timeout_us=self._timeout_us, initial=self.workload.initial,
            workload=self.workload.name,
        )

    def _stamp(self) -> str:
        return f"[{self.loop.now_us / 1_000_000:12.6f}]"

    def _node_event(self, node: NodeId, text: str) -> None:
        self.node_log.append(f"{self._stamp()} n{node} {text}")

    def _world_event(self, text: str) -> None:
        self.node_log.append(f"{self._stamp()} -- {text}")

    # --- the workload -------------------------------------------------------------------------

    def _think_us(self) -> int:
        return int(self._think_rng.random() * 2 * self._think_mean_us)

    def _workload_next(self, client: SimClient) -> Any:
        def next_op(_: Completion | None) -> None:
            self.loop.after(self._think_us(), self._invoke, client)

        return next_op

    def _invoke(self, client: SimClient) -> None:
        if self.loop.now_us >= self.time_limit_us or client.busy:
            return
        limit = self.options.ops_limit
        if limit and self._invoked >= limit:
            return
        self._invoked += 1
        client.invoke(self.workload.next_op())

    # --- observation ------------------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The leader of the highest term among running nodes (ground truth, for faults)."""
        best: tuple[int, NodeId] | None = None
        for node in self.nodes.values():
            core = node.core
            if core is not None and node.is_leader() and (best is None or core.term > best[0]):
                best = (core.term, node.id)
        return None if best is None else best[1]

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> SimOutcome:
        loop = self.loop
        for node in self.nodes.values():
            node.start()
        for client in self.clients:
            loop.after(self._think_us(), self._invoke, client)
        self.nemesis.install(self.schedule)
        loop.run_until(self.time_limit_us)
        self._heal()
        live = self.liveness
        loop.run_until(live.deadline_us, self._finished)
        # Operations still open at the deadline get their timeouts (no liveness then).
        last_us = loop.now_us + self._timeout_us * self.params.write_attempts_max + POLL_US
        loop.run_until(last_us,
                       lambda: not any(client.busy for client in self.clients))
        self._settle()
        return self._outcome()

    def _settle(self) -> None:
        """With every fault healed and every node caught up, leadership must hold: run a few
        election timeouts more with no client and no fault, and note the terms. A node that
        keeps campaigning (say, one that ignores its own removal) shows here even when it never
        stops progress for long.

        The terms counted are the members' (of the final configuration): a node removed while
        it was down may not know it and campaign on its own, which is harmless as long as the
        members ignore it (CheckQuorum's lease or PreVote, thesis §4.2.3)."""
        live = self.liveness
        cores = [n.core for n in self.nodes.values() if n.core is not None]
        if live.caught_up_us is None or not cores:
            return
        ticks = max(core.config.election_timeout_ticks_max for core in cores)
        live.settle_us = SETTLE_ELECTION_TIMEOUTS * ticks * self.params.tick_us
        live.settle_from_term = self._members_term()
        self.loop.run_until(self.loop.now_us + live.settle_us)
        live.settle_to_term = self._members_term()

    def _members_term(self) -> int:
        members = self.members()
        return max((n.core.term for n in self.nodes.values()
                    if n.core is not None and n.id in members), default=0)

    def _heal(self) -> None:
        self.nemesis.heal_all()
        live = self.liveness
        live.heal_us = self.loop.now_us
        live.deadline_us = live.heal_us + seconds_to_us(self.options.recovery_time)
        self._world_event("all faults healed; recovery window starts")
        self._probe = self._client(stream(self.options.seed, "probe"))
        self._probe_ops = self.workload.probe_ops()
        self._probe.on_complete = self._probe_next
        self.loop.after(0, self._probe_invoke, None)
        self.loop.after(POLL_US, self._poll, None)

    def _probe_invoke(self, _: Any) -> None:
        probe = self._probe
        assert probe is not None
        if self._probe_ops and not probe.busy and self.loop.now_us < self.liveness.deadline_us:
            self.liveness.probe_attempts += 1
            probe.invoke(self._probe_ops[0])

    def _probe_next(self, completion: Completion) -> None:
        _, _, outcome, _ = completion
        if outcome == "ok":
            self._probe_ops.pop(0)
            if not self._probe_ops:
                self.liveness.probe_done_us = self.loop.now_us
                return
            self.loop.after(0, self._probe_invoke, None)
        else:
            self.loop.after(PROBE_RETRY_US, self._probe_invoke, None)

    def _poll(self, _: Any) -> None:
        live = self.liveness
        now = self.loop.now_us
        if live.leader_after_heal_us is None and self.leader() is not None:
            live.leader_after_heal_us = now
        clients_idle = not any(client.busy for client in self.clients)
        if live.probe_done_us is not None and clients_idle and live.caught_up_us is None:
            # Every acknowledged write is committed by now; the durability check needs every
            # node to have applied at least that far.
            if not live.catch_up_target:
                live.catch_up_target = max(
                    (n.core.commit_index for n in self.nodes.values() if n.core is not None),
                    default=0,
                )
            target = live.catch_up_target
            members = self.members()
            behind = {n.id: n.applied for n in self.nodes.values()
                      if n.applied < target and n.id in members}
            live.lagging = behind
            if not behind:
                live.caught_up_us = now
        if now < live.deadline_us:
            self.loop.after(POLL_US, self._poll, None)

    def _finished(self) -> bool:
        live = self.liveness
        return live.caught_up_us is not None or self.loop.now_us >= live.deadline_us

    def _outcome(self) -> SimOutcome:
        acknowledged: list[bytes] = []
        refused: list[tuple[int, int, Op]] = []
        for client in [*self.clients, *([self._probe] if self._probe else [])]:
            acknowledged.extend(client.ok_writes)
            refused.extend(client.refused_writes)
        anomalies = {node.id: node.anomaly_counts() for node in self.nodes.values()}
        stats = {
            "simulated_seconds": self.loop.now_us / 1_000_000,
            "events": self.loop.events_run,
            "network": dict(self.network.counters),
            "operations": dict(self.history.counts),
            "faults_started": dict(sorted(self.nemesis.fired.items())),
            "vote_crashes": self.nemesis.vote_crashes,
            "commit_crashes": self.nemesis.commit_crashes,
            "new_leader_crashes": self.nemesis.new_leader_crashes,
            "membership_changes": (self.membership.changes_done
                                   if self.membership is not None else 0),
            "crashes": {n.id: n.crashes for n in self.nodes.values()},
            "ticks": {n.id: n.ticks for n in self.nodes.values()},
            "commit_index": max(
                (n.core.commit_index for n in self.nodes.values() if n.core is not None),
                default=0,
            ),
            "inbox_dropped": sum(n.inbox_dropped for n in self.nodes.values()),
            "snapshots": _snapshot_totals([n.counters() for n in self.nodes.values()]),
        }
        return SimOutcome(
            options=self.options,
            schedule=self.schedule,
            params=self.params,
            history=self.history,
            observer=self.observer,
            logs={n.id: n.log_entries() for n in self.nodes.values()},
            anomalies=anomalies,
            diverged={n.id: n.diverged for n in self.nodes.values() if n.diverged},
            acknowledged=acknowledged,
            liveness=self.liveness,
            node_log=self.node_log,
            stats=stats,
            workload=self.workload,
            refused=refused,
            members=self.members(),
        )


def _snapshot_totals(counters: list[dict[str, int]]) -> dict[str, int]:
    """How much the snapshot machinery did in a run (all nodes, all lives)."""
    names = ("snapshots_taken", "snapshots_installed", "snapshots_sent", "snapshot_chunks_sent")
    return {name.removeprefix("snapshots_").removeprefix("snapshot_"):
            sum(c.get(name, 0) for c in counters) for name in names}
