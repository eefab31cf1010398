"""The processes of a target's nodes: ``LiveCluster`` running the target's commands.

Everything a nemesis does to a node (start, SIGKILL, SIGSTOP / SIGCONT, restart, the graceful
stop at the end) is ``harness.live.cluster.LiveCluster``'s, so every target gets exactly the
faults raftlib gets; only the command differs: the DB's, run inside the node's network
namespace. A DB's companion (one per node, e.g. a Redis Sentinel) runs under a second
supervisor in the same namespace: faults never kill or pause it, the final stop stops it.
``wipe`` removes a stopped node's data directory (a fresh node, as Jepsen's ``wipe!``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import trio

from harness.live.cluster import STOP_SECONDS_MAX, LiveCluster
from harness.live.net import LiveNetwork, address_of
from harness.targets.base import DB, Host
from raftlib.supervisor import POLL_SECONDS, Supervisor


class TargetCluster(LiveCluster):
    def __init__(self, db: DB, nodes: int, network: LiveNetwork, run_dir: Path, seed: int,
                 log: Callable[[int, str], None],
                 on_spawn: Callable[[int], None] = lambda pid: None) -> None:
        self.db = db
        root = run_dir / "nodes"
        # Named apart from anything LiveCluster keeps (it may describe its own machines).
        addresses = {n: address_of(n) for n in range(1, nodes + 1)}
        self.target_hosts = {n: Host(n, addresses[n], root / f"node-{n}", addresses)
                      for n in addresses}
        self._set_up: set[int] = set()
        super().__init__(nodes, network, run_dir, seed, log=log, on_spawn=on_spawn)
        self.companions = Supervisor(root / "companions", addresses, self._companion_argv,
                                     on_event=lambda n, text: log(n, f"companion {text}"),
                                     on_spawn=on_spawn)

    def _argv(self, node: int) -> list[str]:
        host = self.target_hosts[node]
        if node not in self._set_up:
            host.data_dir.mkdir(parents=True, exist_ok=True)
            self.db.setup(host)
            self._set_up.add(node)
        return self.network.command(node, self.db.command(host))

    def _companion_argv(self, node: int) -> list[str]:
        argv = self.db.companion(self.target_hosts[node])
        assert argv is not None, "a companion started for a DB without one"
        return self.network.command(node, argv)

    def start_all(self) -> None:
        """Every node, then every companion (a companion may need its node's files)."""
        for node in sorted(self.members):
            self.start(node)
        for node in sorted(self.members):
            if self.db.companion(self.target_hosts[node]) is not None:
                self.companions.start(node)

    def stop(self, node: int) -> int | None:
        """Graceful stop of one node (SIGTERM; SIGKILL after ``STOP_SECONDS_MAX``); its exit
        status, None when it was not running."""
        return self.supervisor.stop(node, STOP_SECONDS_MAX)

    def wipe(self, node: int) -> None:
        """Remove the (stopped) node's data: its next start is a fresh node's."""
        assert not self.running(node), f"wipe of node {node} while it runs"
        shutil.rmtree(self.target_hosts[node].data_dir, ignore_errors=True)
        self._set_up.discard(node)

    def reap_unexpected(self) -> list[int]:
        return [*super().reap_unexpected(), *self.companions.reap_unexpected()]

    async def stop_all(self) -> None:
        self.companions.begin_stop_all(STOP_SECONDS_MAX)
        await super().stop_all()
        deadline = trio.current_time() + STOP_SECONDS_MAX
        while trio.current_time() < deadline and self.companions.stopping():
            await trio.sleep(POLL_SECONDS)
        self.companions.end_stop_all()

    def kill_all(self) -> None:
        super().kill_all()
        self.companions.kill_all()

    def all_pids(self) -> list[int]:
        return [*super().all_pids(), *self.companions.all_pids()]
