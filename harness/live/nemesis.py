"""Applies a nemesis schedule (``harness.nemesis``) to real processes and a real network.

Windows start and stop at their scheduled seconds of wall-clock time since the run began;
``heal_all`` at the time limit stops whatever is still active and brings every node back, so
each run ends healed. What each fault actually did (the leader it resolved to, the nodes it
hit, the links it cut) goes into the history as a nemesis event and into ``nodes.log``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio

from harness.history import HistoryRecorder
from harness.live.cluster import LiveCluster
from harness.nemesis import Fault, Schedule, partition_links

# The fault kinds this backend can inject with namespaces (``netns``) and without (``proxy``),
# in the canonical order of ``harness.options.NEMESIS_KINDS``, and why it refuses the others.
LIVE_NEMESES: dict[str, tuple[str, ...]] = {
    "netns": ("partition", "kill", "pause", "loss", "delay", "clock"),
    "proxy": ("partition", "kill", "pause", "delay", "clock"),
}
REFUSED: dict[str, str] = {
    "disk": "a SIGKILLed process keeps its unsynced writes in the page cache, so a power loss "
            "cannot be simulated live (use --backend sim)",
    "loss": "packet loss needs network namespaces (root on Linux) for its eBPF classifier "
            "(use --backend sim, or run as root)",
    "duplicate": "duplicating packets inside a TCP stream is absorbed by TCP, and this kernel "
                 "has no netem to duplicate them below it (use --backend sim)",
    "reorder": "a TCP stream cannot reorder, and this kernel has no netem to reorder packets "
               "below it (use --backend sim)",
    # Crash triggers watch every message a node sends, which only the simulator sees.
    "crash-after-vote": "crash triggers watch what nodes send: simulator only (--backend sim)",
    "crash-after-commit": "crash triggers watch what nodes send: simulator only (--backend sim)",
    "crash-new-leader": "crash triggers watch what nodes send: simulator only (--backend sim)",
    "member": "membership changes live are not wired into the live nemesis yet: use "
              "--backend sim (or `raftlib member` by hand against a live cluster)",
}


class LiveNemesis:
    def __init__(
        self,
        *,
        cluster: LiveCluster,
        history: HistoryRecorder,
        log: Callable[[str], None],
        leader: Callable[[], int | None],
        rng: random.Random,
    ) -> None:
        self._cluster = cluster
        self._network = cluster.network
        self._history = history
        self._log = log
        self._leader = leader
        self._rng = rng
        self._active: dict[int, tuple[Fault, list[int]]] = {}
        self.fired: dict[str, int] = {}
        # (start, stop) seconds of every window, as it really ran
        self.windows: list[dict[str, Any]] = []

    async def run(self, schedule: Schedule, clock: Callable[[], float]) -> None:
        """Start and stop each window at its time; returns after the last scheduled event."""
        events: list[tuple[float, int, Fault]] = []
        for fault in schedule.faults:
            events.append((fault.start, 1, fault))
            events.append((fault.stop, 0, fault))  # at one instant, stops come before starts
        events.sort(key=lambda e: (e[0], e[1], e[2].id))
        for at, is_start, fault in events:
            await trio.sleep(max(0.0, at - clock()))
            if is_start:
                await self._start(fault, clock())
            else:
                await self._stop(fault, clock())

    def _targets(self, params: Any) -> list[int]:
        nodes = params.get("nodes")
        if nodes is not None:
            return list(nodes)
        leader = self._leader()
        if leader is None:
            # No leader known right now: hit a node at random, like one that just lost its role.
            members = sorted(self._cluster.members)
            leader = members[self._rng.randrange(len(members))]
        return [leader]

    async def _start(self, fault: Fault, now: float) -> None:
        kind, params = fault.kind, fault.params
        hit: list[int] = []
        detail: dict[str, Any] = {"id": fault.id}
        if kind == "partition":
            blocked = params["blocked"]
            if blocked is None:  # isolate-leader: resolved now
                hit = self._targets({"nodes": None})
                others = [n for n in sorted(self._cluster.members) if n != hit[0]]
                blocked = partition_links("isolate", hit + others)
                detail["isolated"] = hit[0]
            links = frozenset((a, b) for a, b in blocked)
            await self._network.set_blocked(links)
            detail["mode"] = params["mode"]
            detail["blocked"] = [list(link) for link in sorted(links)]
        elif kind == "kill":
            hit = [n for n in self._targets(params) if self._cluster.kill(n)]
            detail["nodes"] = hit
        elif kind == "pause":
            hit = [n for n in self._targets(params) if self._cluster.pause(n)]
            detail["nodes"] = hit
        elif kind == "loss":
            self._network.set_loss(float(params["probability"]))
            detail["probability"] = params["probability"]
        elif kind == "delay":
            self._network.delay.set(float(params["delay_ms"]), float(params["jitter_ms"]))
            detail["delay_ms"] = params["delay_ms"]
            detail["jitter_ms"] = params["jitter_ms"]
        elif kind == "clock":
            for node, rate in params["rates"]:
                self._cluster.set_clock_rate(int(node), float(rate))
                hit.append(int(node))
            detail["rates"] = params["rates"]
        else:
            raise AssertionError(f"the live nemesis cannot inject {kind!r}")
        self._active[fault.id] = (fault, hit)
        self.fired[kind] = self.fired.get(kind, 0) + 1
        self.windows.append({"id": fault.id, "kind": kind, "start": round(now, 3),
                             "stop": None})
        self._history.nemesis(f"start-{kind}", detail)
        self._log(f"nemesis start-{kind} {detail}")

    async def _stop(self, fault: Fault, now: float) -> None:
        entry = self._active.pop(fault.id, None)
        if entry is None:
            return
        _, hit = entry
        if fault.kind == "partition":
            await self._network.set_blocked(frozenset())
        elif fault.kind == "kill":
            for node in hit:
                self._cluster.start(node)
        elif fault.kind == "pause":
            for node in hit:
                self._cluster.resume(node)
        elif fault.kind == "loss":
            self._network.set_loss(None)
        elif fault.kind == "delay":
            self._network.delay.clear()
        elif fault.kind == "clock":
            for node in hit:
                self._cluster.set_clock_rate(node, 1.0)
        for window in self.windows:
            if window["id"] == fault.id:
                window["stop"] = round(now, 3)
        self._history.nemesis(f"stop-{fault.kind}", {"id": fault.id})
        self._log(f"nemesis stop-{fault.kind} #{fault.id}")

    async def heal_all(self, clock: Callable[[], float]) -> None:
        """Stop every fault still in effect, then make sure every node runs, unpaused."""
        for fault, _ in list(self._active.values()):
            await self._stop(fault, clock())
        await self._network.set_blocked(frozenset())
        if "loss" in self.fired:
            self._network.set_loss(None)
        self._network.delay.clear()
        if "clock" in self.fired:
            for node in sorted(self._cluster.members):
                self._cluster.set_clock_rate(node, 1.0)
        for node in sorted(self._cluster.members):
            self._cluster.resume(node)
            if not self._cluster.running(node):
                self._cluster.start(node)
