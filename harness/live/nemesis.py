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

import attrs
import trio

from harness.history import HistoryRecorder
from harness.live import filefaults
from harness.live.clocked import ClockControl
from harness.live.cluster import CrashKind, LiveCluster
from harness.live.filefaults import FileFaultOutcome
from harness.nemesis import Fault, Schedule, partition_links

# The fault kinds this backend can inject with namespaces (``netns``) and without (``proxy``),
# in the canonical order of ``harness.options.NEMESIS_KINDS``, and why it refuses the others.
LIVE_NEMESES: dict[str, tuple[str, ...]] = {
    "netns": ("partition", "kill", "pause", "loss", "delay", "clock", "disk"),
    "proxy": ("partition", "kill", "pause", "delay", "clock", "disk"),
}
# How long a node started on a damaged directory may take to refuse (start-up included).
REFUSAL_SECONDS_MAX = 20.0
REFUSED: dict[str, str] = {
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
        self.file_faults: list[FileFaultOutcome] = []
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
            hit = self._cluster.kill_many(self._targets(params))
            detail["nodes"] = hit
        elif kind == "disk":
            # A power loss: the node's unsynced writes (held by harness.live.lazyfs) are lost.
            how: CrashKind = "torn" if params.get("torn") else "power"
            hit = self._cluster.kill_many(self._targets(params), how)
            detail["nodes"] = hit
            detail["torn"] = how == "torn"
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
            clocks = {int(node): ClockControl(rate=float(rate)) for node, rate in params["rates"]}
            wall = params.get("wall") or {"bumps": [], "strobes": []}
            for node, offset in wall["bumps"]:
                clocks[node] = attrs.evolve(clocks.get(node, ClockControl()),
                                            offset_s=float(offset))
            for node, delta, period in wall["strobes"]:
                clocks[node] = attrs.evolve(clocks.get(node, ClockControl()),
                                            strobe_delta_s=float(delta),
                                            strobe_period_ms=float(period))
            for node, value in sorted(clocks.items()):
                self._cluster.set_clock(node, value)
                hit.append(node)
            detail["rates"] = params["rates"]
            detail["wall"] = wall
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
        elif fault.kind in ("kill", "disk"):
            damage = fault.params.get("file") if fault.kind == "disk" else None
            for node in hit:
                # One damaged disk per window: Raft's fault model tolerates a minority.
                if damage is not None and node == hit[0]:
                    # Shielded (bounded by REFUSAL_SECONDS_MAX): the end of the run must not
                    # cut it between damaging the file and putting it back.
                    with trio.CancelScope(shield=True):
                        await self._damage(node, damage)
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

    async def _damage(self, node: int, damage: dict[str, Any]) -> None:
        """A file fault of the stopped ``node`` (``filefaults``); a refusal is checked on the
        node itself, then the file is put back so it can rejoin."""
        outcome, original = filefaults.damage(node, self._cluster.data_dir(node), damage,
                                              self._rng.randrange(8))
        self._log(f"file fault n{node}: {outcome.result}: {outcome.detail}")
        if outcome.result == "refused" and original is not None:
            status, said = await self._cluster.run_until_exit(node, REFUSAL_SECONDS_MAX)
            # Its log records (a warning about a torn tail it cut, say) are not the refusal.
            said = [line for line in said if not filefaults.is_log_record(line)]
            outcome.node_status = status
            outcome.node_said = said[-1] if said else ""
            outcome.node_lines = len(said)
            path, data = original
            path.write_bytes(data)  # a transient fault: the operator puts the file back
        self.file_faults.append(outcome)
        self._history.nemesis("file-fault", outcome.to_json())

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
