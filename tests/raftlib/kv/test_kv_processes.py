"""The KV service as real processes on TCP: concurrent clients stay linearizable while the
leader is SIGKILLed and restarted; ``raftlib cluster`` works with redis-cli and
redis-benchmark (when Debian's redis-tools is installed)."""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import time
from pathlib import Path

import lincheck
import pytest
import trio

from raftlib.client import KvClient, TcpConnector, open_client
from raftlib.supervisor import Supervisor, free_ports, serve_argv
from tests.raftlib.cluster_cli import raftlib_cluster
from tests.raftlib.kv.workload import History, kv_worker

KILLS = 2
SEED = 17


class Cluster(Supervisor):
    """``raftlib serve`` KV nodes on loopback, on free ports, under the one supervisor."""

    def __init__(self, tmp: Path, nodes: int) -> None:
        ports = free_ports(2 * nodes)
        self.nodes = nodes
        self.raft = dict(zip(range(1, nodes + 1), ports[:nodes], strict=True))
        self.client = dict(zip(range(1, nodes + 1), ports[nodes:], strict=True))
        super().__init__(tmp, range(1, nodes + 1), self._command)

    def address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.client[node_id]}"

    def _command(self, node_id: int) -> list[str]:
        return serve_argv(node_id, peers={n: f"127.0.0.1:{p}" for n, p in self.raft.items()},
                          data=self.data_dir(node_id), client_port=self.client[node_id],
                          client_peers={n: self.address(n) for n in self.client},
                          flags=["--insecure"])


async def find_leader(cluster: Cluster, timeout_seconds: float = 10.0) -> int:
    async with open_client([cluster.address(1)], request_timeout_seconds=0.5) as probe:
        with trio.fail_after(timeout_seconds):
            while True:
                for node_id in [n for n in cluster.members if cluster.running(n)]:
                    try:
                        info = await probe.info(cluster.address(node_id))
                    except Exception:
                        continue
                    if info.get("role") == "leader":
                        return node_id
                await trio.sleep(0.1)


@pytest.mark.parametrize("nodes", [3, 5])
async def test_real_processes_stay_linearizable_while_the_leader_is_killed(
    tmp_path: Path, nodes: int
) -> None:
    cluster = Cluster(tmp_path, nodes)
    history = History()
    rng = random.Random(SEED)
    killed: list[int] = []
    for node_id in range(1, nodes + 1):
        cluster.start(node_id)
    try:
        await find_leader(cluster, timeout_seconds=20)
        addresses = [cluster.address(n) for n in range(1, nodes + 1)]

        async def nemesis() -> None:
            for _ in range(KILLS):
                await trio.sleep(rng.uniform(1.0, 2.0))
                leader = await find_leader(cluster)
                cluster.kill(leader)
                killed.append(leader)
                await trio.sleep(rng.uniform(0.5, 1.5))
                cluster.start(leader)

        clients = [
            KvClient(addresses, connector=TcpConnector(), request_timeout_seconds=1.0,
                     op_timeout_seconds=10.0)
            for _ in range(4)
        ]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(nemesis)
                async with trio.open_nursery() as workers:
                    for w, client in enumerate(clients):
                        workers.start_soon(functools.partial(
                            kv_worker, client, history, worker=w, keys=["a", "b"], ops=60,
                            rng=random.Random(SEED * 10 + w), pause_seconds_max=0.15))
                nursery.cancel_scope.cancel()
        finally:
            for client in clients:
                await client.aclose()
    finally:
        cluster.stop_all()
    assert len(killed) >= 1, f"seed={SEED}: the workload ended before any kill"
    assert history.count("ok") > 100, f"seed={SEED}"
    lincheck.assert_linearizable(history.events, "kv", timeout=60)


def _redis_tools() -> tuple[str, str]:
    cli, bench = shutil.which("redis-cli"), shutil.which("redis-benchmark")
    if cli is None or bench is None:
        pytest.skip("redis-tools (redis-cli, redis-benchmark) is not installed")
    return cli, bench


def test_redis_cli_and_redis_benchmark_work_against_raftlib_cluster(tmp_path: Path) -> None:
    cli, bench = _redis_tools()
    with raftlib_cluster(tmp_path) as cluster:
        client_base = cluster.client_base

        def redis(*args: str) -> str:
            done = subprocess.run([cli, "-c", "-p", str(client_base), *args],
                                  capture_output=True, text=True, timeout=20)
            return done.stdout.strip()

        deadline = time.monotonic() + 20
        while redis("SET", "greeting", "hello") != "OK" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert redis("GET", "greeting") == "hello"
        assert redis("INCR", "visits") == "1"
        assert redis("APPEND", "greeting", "!") == "6"
        assert "role:" in redis("INFO")
        leader_port = next(
            client_base + i for i in range(3)
            if "role:leader" in subprocess.run(
                [cli, "-p", str(client_base + i), "INFO"], capture_output=True, text=True,
                timeout=20).stdout
        )
        done = subprocess.run(
            [bench, "-p", str(leader_port), "-t", "set,get", "-n", "2000", "-c", "20", "--csv"],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        rows = [line for line in done.stdout.splitlines() if line.startswith(('"SET"', '"GET"'))]
        assert len(rows) == 2, done.stdout
        for row in rows:
            assert float(row.split(",")[1].strip('"')) > 0, row
        assert redis("GET", "greeting") == "hello!"
    assert cluster.returncode == 0, cluster.output
    assert "cluster stopped" in cluster.output
