"""Applies a nemesis schedule (``harness.nemesis``) to a simulated cluster at its times.

Each window starts and stops at its scheduled virtual time; ``heal_all`` at the time limit
stops whatever is still active, so every run ends healed. What each fault actually did (which
node was the leader it isolated, which nodes it crashed) goes into the history as a nemesis
event and into the node log.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from harness.history import HistoryRecorder
from harness.nemesis import Fault, Schedule, partition_links
from harness.sim.loop import EventLoop, seconds_to_us
from harness.sim.membership import MembershipNemesis
from harness.sim.network import NO_FAULTS, LinkFaults, SimNetwork
from harness.sim.node import SimNode
from raftlib.core.types import (
    AppendEntries,
    EntryKind,
    Message,
    NodeId,
    RequestVoteResponse,
)

_NET_KINDS = ("loss", "duplicate", "delay", "reorder")


class NemesisRuntime:
    def __init__(
        self,
        *,
        loop: EventLoop,
        network: SimNetwork,
        nodes: dict[NodeId, SimNode],
        history: HistoryRecorder,
        log: Callable[[str], None],
        rng: random.Random,
        leader: Callable[[], NodeId | None],
        membership: MembershipNemesis | None = None,
    ) -> None:
        self._membership = membership
        self._loop = loop
        self._network = network
        self._nodes = nodes
        self._history = history
        self._log = log
        self._rng = rng
        self._leader = leader
        # fault id -> (fault, the nodes it hit) for every window now in effect
        self._active: dict[int, tuple[Fault, list[NodeId]]] = {}
        self._net: dict[str, Fault] = {}
        self.fired: dict[str, int] = {}  # kind -> windows started
        self._vote_crash: Fault | None = None  # the crash-after-vote window now open
        self._vote_crashed: set[NodeId] = set()  # crashed by it and not restarted yet
        self.vote_crashes = 0
        self._commit_crash: Fault | None = None  # the crash-after-commit window now open
        self._commit_crashed: set[NodeId] = set()
        # leader -> (term, highest commit its AppendEntries of that term carried so far)
        self._commit_sent: dict[NodeId, tuple[int, int]] = {}
        self.commit_crashes = 0
        self._leader_crash: Fault | None = None  # the crash-new-leader window now open
        self._leader_crashed: set[NodeId] = set()
        # node -> highest term in which it sent an AppendEntries (the first one of a term is a
        # new leader's first send)
        self._append_term: dict[NodeId, int] = {}
        self.new_leader_crashes = 0

    def install(self, schedule: Schedule) -> None:
        for fault in schedule.faults:
            self._loop.at(seconds_to_us(fault.start), self._start, fault)
            self._loop.at(seconds_to_us(fault.stop), self._stop, fault)

    def _targets(self, params: Any) -> list[NodeId]:
        nodes = params.get("nodes")
        if nodes is not None:
            return list(nodes)
        leader = self._leader()
        if leader is None:
            # No leader right now: hit a node at random, like a leader that just lost its role.
            leader = sorted(self._nodes)[self._rng.randrange(len(self._nodes))]
        return [leader]

    def _start(self, fault: Fault) -> None:
        if fault.id in self._active:
            return
        kind = fault.kind
        params = fault.params
        hit: list[NodeId] = []
        detail: dict[str, Any] = {"id": fault.id}
        if kind == "partition":
            blocked = params["blocked"]
            if blocked is None:  # isolate-leader: resolved now
                hit = self._targets({"nodes": None})
                others = [n for n in sorted(self._nodes) if n != hit[0]]
                blocked = partition_links("isolate", hit + others)
                detail["isolated"] = hit[0]
            self._network.blocked = frozenset((a, b) for a, b in blocked)
            detail["mode"] = params["mode"]
            detail["blocked"] = [list(link) for link in sorted(self._network.blocked)]
        elif kind in ("kill", "disk"):
            hit = self._targets(params)
            for node in hit:
                self._nodes[node].crash(lose_unsynced=params["lose_unsynced"], torn=params["torn"])
            detail.update(nodes=hit, lose_unsynced=params["lose_unsynced"], torn=params["torn"])
        elif kind == "pause":
            hit = self._targets(params)
            for node in hit:
                self._nodes[node].pause()
            detail["nodes"] = hit
        elif kind in _NET_KINDS:
            self._net[kind] = fault
            self._network.faults = self._link_faults()
            detail.update(params)
        elif kind == "clock":
            for node, rate in params["rates"]:
                self._nodes[node].clock_rate = float(rate)
            detail["rates"] = params["rates"]
        elif kind == "crash-after-vote":
            self._vote_crash = fault
            self._network.on_send = self._saw_send
            detail["restart_ms"] = params["restart_ms"]
        elif kind == "crash-after-commit":
            self._commit_crash = fault
            self._commit_sent.clear()
            self._network.on_send = self._saw_send
            detail["restart_ms"] = params["restart_ms"]
        elif kind == "crash-new-leader":
            self._leader_crash = fault
            self._network.on_send = self._saw_send
            detail["restart_ms"] = params["restart_ms"]
        elif kind == "member":
            if self._membership is None:
                raise AssertionError("a member window in a world without spare nodes")
            detail.update(self._membership.start(params["action"], seconds_to_us(fault.stop)))
        self._active[fault.id] = (fault, hit)
        self.fired[kind] = self.fired.get(kind, 0) + 1
        self._history.nemesis(f"start-{kind}", detail)
        self._log(f"nemesis start-{kind} {detail}")

    def _stop(self, fault: Fault) -> None:
        entry = self._active.pop(fault.id, None)
        if entry is None:
            return
        kind = fault.kind
        _, hit = entry
        if kind == "partition":
            self._network.blocked = frozenset()
        elif kind in ("kill", "disk"):
            for node in hit:
                self._nodes[node].restart()
        elif kind == "pause":
            for node in hit:
                self._nodes[node].resume()
        elif kind in _NET_KINDS:
            self._net.pop(kind, None)
            self._network.faults = self._link_faults()
        elif kind == "clock":
            for member in self._nodes.values():
                member.clock_rate = 1.0
        elif kind == "crash-after-vote":
            # Nodes it crashed still restart at their scheduled time.
            self._vote_crash = None
        elif kind == "crash-after-commit":
            self._commit_crash = None
        elif kind == "crash-new-leader":
            self._leader_crash = None
        elif kind == "member":
            assert self._membership is not None
            self._membership.stop()
        if self._vote_crash is None and self._commit_crash is None and self._leader_crash is None:
            self._network.on_send = None
        self._history.nemesis(f"stop-{kind}", {"id": fault.id})
        self._log(f"nemesis stop-{kind} #{fault.id}")

    def heal_all(self) -> None:
        """Stop every fault still in effect (the schedule's own stops come first)."""
        for fault, _ in list(self._active.values()):
            self._stop(fault)
        if self._network.blocked or self._network.faults != NO_FAULTS:
            raise AssertionError("network faults remain after heal_all")
        for node in self._nodes.values():
            node.restart()
            node.resume()
            node.clock_rate = 1.0

    # --- triggers: crash a node on what it sends ----------------------------------------

    def _saw_send(self, src: NodeId, messages: Sequence[Message]) -> bool:
        """Whether the batch leaves: False when its sender is (about to be) crashed first."""
        if src in self._leader_crashed:
            return False
        if self._leader_crash is not None and self._check_new_leader(
            src, messages, self._leader_crash
        ):
            return False
        if self._vote_crash is not None:
            self._check_vote(src, messages, self._vote_crash)
        return self._commit_crash is None or self._check_commit(src, messages,
                                                                 self._commit_crash)

    def _check_new_leader(self, src: NodeId, messages: Sequence[Message], fault: Fault) -> bool:
        for msg in messages:
            if type(msg) is not AppendEntries:
                continue
            first_of_term = msg.term > self._append_term.get(src, 0)
            self._append_term[src] = max(msg.term, self._append_term.get(src, 0))
            if first_of_term:
                # Its no-op is durable (the driver sends after the sync); it dies before this
                # batch, the first word of its leadership, reaches anyone.
                self._leader_crashed.add(src)
                self._loop.after(0, self._crash_new_leader, (src, msg.term, fault))
                return True
        return False

    def _crash_new_leader(self, item: tuple[NodeId, int, Fault]) -> None:
        node, term, fault = item
        self.new_leader_crashes += 1
        self._log(f"nemesis crash-new-leader #{fault.id}: n{node} became leader of term {term}; "
                  "crashing it before its first append leaves")
        self._crash_and_restart(node, fault, self._leader_crashed)

    def _check_vote(self, src: NodeId, messages: Sequence[Message], fault: Fault) -> None:
        if src in self._vote_crashed:
            return
        for msg in messages:
            if type(msg) is RequestVoteResponse and msg.granted and not msg.pre_vote:
                # Crash once this send is done (the grant is already on the wire), never in
                # the middle of the node's own Ready handling.
                self._vote_crashed.add(src)
                self._loop.after(0, self._crash_voter, (src, msg.term, msg.dst, fault))
                return

    def _crash_voter(self, item: tuple[NodeId, int, NodeId, Fault]) -> None:
        node, term, candidate, fault = item
        self.vote_crashes += 1
        self._log(f"nemesis crash-after-vote #{fault.id}: n{node} granted its term-{term} "
                  f"vote to n{candidate}; crashing it")
        self._crash_and_restart(node, fault, self._vote_crashed)

    def _check_commit(self, src: NodeId, messages: Sequence[Message], fault: Fault) -> bool:
        """Whether the batch leaves (False: its sender crashes before it does)."""
        if src in self._commit_crashed:
            # Triggered, not yet crashed: a leader dying before its announcement says nothing.
            return not fault.params.get("before_send", False)
        for msg in messages:
            if type(msg) is not AppendEntries:
                continue
            term, commit = self._commit_sent.get(src, (-1, 0))
            if msg.term != term:
                # The first append of a term only says where the commit stood: a baseline.
                self._commit_sent[src] = (msg.term, msg.commit)
            elif msg.commit > commit:
                if fault.params.get("conf_only", False) and not self._commits_conf(
                        src, commit, msg.commit):
                    self._commit_sent[src] = (term, msg.commit)
                    continue
                # Crash after this send and the Ready's apply are done: the new commit is on
                # the wire and applied here, whatever followed it in the log is not yet on a
                # majority.
                self._commit_sent.pop(src, None)
                self._commit_crashed.add(src)
                self._loop.after(0, self._crash_committer, (src, msg.term, msg.commit, fault))
                return not fault.params.get("before_send", False)
        return True

    def _commits_conf(self, node: NodeId, old: int, new: int) -> bool:
        """Whether ``node``'s log has a configuration entry in ``(old, new]``."""
        core = self._nodes[node].core
        if core is None:
            return False
        return any(entry.kind is EntryKind.CONF for entry in core._log.slice(old + 1, new))

    def _crash_committer(self, item: tuple[NodeId, int, int, Fault]) -> None:
        node, term, commit, fault = item
        self.commit_crashes += 1
        told = "before" if fault.params.get("before_send", False) else "after"
        what = " (over a configuration entry)" if fault.params.get("conf_only", False) else ""
        self._log(f"nemesis crash-after-commit #{fault.id}: n{node}, leader of term {term}, "
                  f"advanced its commit to {commit}{what}; crashing it {told} announcing it")
        self._crash_and_restart(node, fault, self._commit_crashed)

    def _crash_and_restart(self, node: NodeId, fault: Fault, crashed: set[NodeId]) -> None:
        self._nodes[node].crash(lose_unsynced=False, torn=False)
        restart_us = max(1, round(float(fault.params["restart_ms"]) * 1000))
        self._loop.after(restart_us, self._restart_crashed, (node, crashed))

    def _restart_crashed(self, item: tuple[NodeId, set[NodeId]]) -> None:
        node, crashed = item
        crashed.discard(node)
        self._nodes[node].restart()

    def _link_faults(self) -> LinkFaults:
        net = self._net
        loss = net["loss"].params["probability"] if "loss" in net else 0.0
        dup = net["duplicate"].params["probability"] if "duplicate" in net else 0.0
        delay_ms = net["delay"].params["delay_ms"] if "delay" in net else 0
        jitter_ms = net["delay"].params["jitter_ms"] if "delay" in net else 0
        reorder = net["reorder"].params["probability"] if "reorder" in net else 0.0
        reorder_ms = net["reorder"].params["delay_ms_max"] if "reorder" in net else 0
        return LinkFaults(
            loss_probability=float(loss),
            duplicate_probability=float(dup),
            reorder_probability=float(reorder),
            reorder_delay_us_max=round(reorder_ms * 1000),
            extra_delay_us=round(delay_ms * 1000),
            extra_jitter_us=round(jitter_ms * 1000),
        )

