"""Watches a live cluster: polls every node's ``INFO`` and notices processes that died.

What it learns serves three purposes: the nemesis targets the current leader; the recovery
phase waits for a leader and for every node to apply up to the commit index; and every
(term, leader) pair it ever saw feeds the election safety check (two nodes claiming to lead
the same term is a violation, however briefly it was seen). In a namespace run it also
scrapes every node's Prometheus ``/metrics`` about once a second into ``metrics.jsonl``
(``harness.live.scrape``): what an operator's dashboard would have shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import trio

from harness.live import scrape
from harness.live.cluster import LiveCluster
from harness.live.net import namespace_of
from raftlib.client import KvClient

POLL_SECONDS = 0.25
INFO_TIMEOUT_SECONDS = 0.5
# Metrics are scraped every this many polls (about once a second).
SCRAPE_EVERY_POLLS = 4
# Lines written to metrics.jsonl at most (a 10-minute run of 9 nodes stays below it).
METRICS_LINES_MAX = 20_000


@attrs.define
class NodeView:
    role: str = "?"
    term: int = 0
    commit_index: int = 0
    applied_index: int = 0
    seen_at: float = 0.0


class Monitor:
    def __init__(self, cluster: LiveCluster, log: Callable[[int, str], None],
                 clock: Callable[[], float] = trio.current_time) -> None:
        self._cluster = cluster
        self._log = log
        self._roles: dict[int, tuple[str, int]] = {}
        self._addresses = {n: cluster.network.client_address(n) for n in cluster.members}
        self._kv = KvClient(list(self._addresses.values()),
                            request_timeout_seconds=INFO_TIMEOUT_SECONDS)
        self.views: dict[int, NodeView] = {}
        self.leaders: dict[int, set[int]] = {}  # term -> nodes seen leading it
        self.rounds = 0
        self.commit_max = 0
        self.metrics_lines = 0
        # The run's clock (seconds since the workload began, as in history.jsonl and
        # nodes.log): metrics.jsonl's times are read against those files.
        self._clock = clock

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._kv.aclose()

    async def poll_once(self) -> None:
        self._cluster.reap_unexpected()
        fresh: dict[int, NodeView] = {}

        async def ask(node: int) -> None:
            if not self._cluster.running(node) or self._cluster.members[node].paused:
                return
            try:
                info = await self._kv.info(self._addresses[node])
                view = NodeView(info.get("role", "?"), int(info.get("term", 0)),
                                int(info.get("commit_index", 0)),
                                int(info.get("applied_index", 0)), trio.current_time())
            except Exception:
                return  # down, paused, cut off or garbled: no view this round
            fresh[node] = view
            # Any node's commit index names committed entries: the largest one seen bounds
            # the prefix every log must agree on (the stopped nodes' files may hold a
            # smaller one: a commit index is persisted lazily).
            self.commit_max = max(self.commit_max, view.commit_index)
            if self._roles.get(node) != (view.role, view.term):
                self._roles[node] = (view.role, view.term)
                self._log(node, f"role {view.role} term={view.term}")
            if view.role == "leader":
                self.leaders.setdefault(view.term, set()).add(node)

        async with trio.open_nursery() as nursery:
            for node in sorted(self._addresses):
                nursery.start_soon(ask, node)
        self.views = fresh
        self.rounds += 1

    async def run(self) -> None:
        while True:
            await self.poll_once()
            if self._cluster.metrics_port is not None and self.rounds % SCRAPE_EVERY_POLLS == 1:
                await self.scrape_metrics()
            await trio.sleep(POLL_SECONDS)

    async def scrape_metrics(self) -> None:
        """One scrape of every running node's /metrics, appended to metrics.jsonl."""
        port = self._cluster.metrics_port
        assert port is not None
        rows: list[dict[str, object]] = []
        at = round(self._clock(), 3)

        async def one(node: int) -> None:
            if not self._cluster.running(node) or self._cluster.members[node].paused:
                return
            try:
                values = await scrape.scrape(namespace_of(node), port)
            except scrape.ScrapeError:
                return
            rows.append({"t": at, "node": node, **values})

        async with trio.open_nursery() as nursery:
            for node in sorted(self._addresses):
                nursery.start_soon(one, node)
        if not rows or self.metrics_lines + len(rows) > METRICS_LINES_MAX:
            return
        self.metrics_lines += len(rows)
        path = self._cluster.run_dir / "metrics.jsonl"
        with path.open("a") as out:
            for row in sorted(rows, key=lambda r: str(r["node"])):
                out.write(json.dumps(row) + "\n")

    def leader(self) -> int | None:
        """The leader of the highest term among the nodes that answered the last round."""
        best: tuple[int, int] | None = None
        for node, view in self.views.items():
            if view.role == "leader" and (best is None or view.term > best[0]):
                best = (view.term, node)
        return None if best is None else best[1]

    def commit_index(self) -> int:
        return max((v.commit_index for v in self.views.values()), default=0)
