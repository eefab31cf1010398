"""The operator's tools against real `raftlib serve` processes: one-line errors for bad input,
the README's "Replacing a node" procedure while a client writes (every acknowledged write
survives), and the Prometheus endpoint showing a leader change."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from raftlib.client import ClientError, OutcomeUnknown, open_client
from raftlib.supervisor import Supervisor, free_ports, serve_argv

READY_SECONDS = 20.0
# Bounds of the waits below (a loaded 2-core machine): a leader change, a scrape refresh.
CHANGE_SECONDS_MAX = 15.0
POLL_SECONDS = 0.1
TICK_MS = 20.0


def raftlib_cli(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftlib.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["member", "add", "0", "127.0.0.1:1", "--address", "127.0.0.1:1"], "ID must be"),
        (["member", "add", "4", "nowhere", "--address", "127.0.0.1:1"],
         "RAFT_ADDRESS must be HOST:PORT"),
        (["member", "add", "4", "h:1", "--client", "h", "--address", "127.0.0.1:1"],
         "--client must be HOST:PORT"),
        (["member", "remove", "x", "--address", "127.0.0.1:1"], "invalid int value"),
        (["member", "list"], "--address"),
        (["member", "list", "--address", "localhost"], "--address must be HOST:PORT"),
        (["status", "--address", "127.0.0.1:1", "--timeout", "0"], "--timeout must be > 0"),
        (["status", "--address", "127.0.0.1:1", "--cert", "c.pem"], "need --cacert"),
        (["transfer-leader", "-3", "--address", "127.0.0.1:1"], "ID must be"),
        (["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--metrics-port", "9100"], "--metrics-port needs --client-port"),
        (["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--join"], "--join: --peers must list a member"),
        (["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--client-port", "6379", "--metrics-port", "6379"], "must differ"),
        (["cluster", "--data", "d", "--base-port", "7001", "--client-base-port", "6379",
          "--metrics-base-port", "7002"], "--metrics-base-port range overlaps"),
    ],
)
def test_bad_operator_input_gets_one_line_and_exit_2(args: list[str], needle: str) -> None:
    done = raftlib_cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]


def test_an_unreachable_cluster_gets_one_line_and_exit_1() -> None:
    (port,) = free_ports(1)
    done = raftlib_cli("member", "list", "--address", f"127.0.0.1:{port}", "--timeout", "5")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0], done.stderr


@attrs.define
class Cluster:
    """Founders 1..3 and spare ids for replacements, each with raft, client, metrics ports."""

    supervisor: Supervisor
    raft: dict[int, str]
    client: dict[int, int]
    metrics: dict[int, int]
    founders: tuple[int, ...] = (1, 2, 3)
    # The operator CLI's TLS options for this cluster's client ports.
    tls: tuple[str, ...] = ()

    def client_address(self, node: int) -> str:
        return f"127.0.0.1:{self.client[node]}"

    def op(self, *args: str, at: int = 1) -> str:
        done = raftlib_cli(*args, "--address", self.client_address(at), *self.tls)
        assert done.returncode == 0, (args, done.stderr, self.logs())
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"node {n}: {self.supervisor.log_tail(n, 6)}"
                         for n in self.supervisor.members)

    def scrape(self, node: int) -> dict[str, float]:
        """``name{labels}`` -> value of one node's /metrics."""
        url = f"http://127.0.0.1:{self.metrics[node]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values


@contextmanager
def cluster(tmp_path: Path, spares: tuple[int, ...] = (),
            security: tuple[str, ...] = ("--insecure",)) -> Iterator[Cluster]:
    ids = (1, 2, 3, *spares)
    ports = free_ports(3 * len(ids))
    raft = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(ids)}
    client = {n: ports[len(ids) + i] for i, n in enumerate(ids)}
    metrics = {n: ports[2 * len(ids) + i] for i, n in enumerate(ids)}

    def command(node: int) -> list[str]:
        founder = node in (1, 2, 3)
        # A replacement knows where the live members are, and itself; it joins.
        peers = {n: raft[n] for n in (1, 2, 3)} | {node: raft[node]}
        flags = [*security, "--metrics-port", str(metrics[node])]
        if not founder:
            flags.append("--join")
        return serve_argv(node, peers=peers, data=supervisor.data_dir(node),
                          client_port=client[node],
                          client_peers={n: f"127.0.0.1:{client[n]}" for n in (1, 2, 3)},
                          tick_ms=TICK_MS, flags=flags)

    with Supervisor(tmp_path / "cluster", ids, command) as supervisor:
        for node in (1, 2, 3):
            supervisor.start(node)
        waiting = supervisor.wait_ready({n: client[n] for n in (1, 2, 3)}, READY_SECONDS)
        tls_dir = security[security.index("--tls-dir") + 1] if "--tls-dir" in security else ""
        c = Cluster(supervisor, raft, client, metrics,
                    tls=("--tls-dir", tls_dir) if tls_dir else ())
        assert not waiting, c.logs()
        yield c
        supervisor.stop_all()


class Writer:
    """Writes distinct keys until stopped (bounded by ``count``); ``acked`` holds the writes
    the cluster acknowledged, ``unknown`` those whose outcome is unknown."""

    def __init__(self, addresses: list[str], count: int) -> None:
        self.addresses = addresses
        self.count = count
        self.acked: dict[bytes, bytes] = {}
        self.unknown = 0
        self.stop = trio.Event()

    async def run(self) -> None:
        async with open_client(self.addresses, op_timeout_seconds=10.0) as kv:
            for i in range(self.count):
                if self.stop.is_set():
                    return
                key, value = b"key-%d" % i, b"value-%d" % i
                try:
                    await kv.set(key, value)
                except OutcomeUnknown:
                    self.unknown += 1
                    continue
                except ClientError:
                    continue
                self.acked[key] = value
                await trio.sleep(0.01)


async def _run_cli(c: Cluster, *args: str, at: int = 1) -> str:
    done = await trio.run_process(
        [sys.executable, "-m", "raftlib.cli", *args, "--address", c.client_address(at)],
        capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, (args, done.stderr.decode(), c.logs())
    return done.stdout.decode()


def test_replacing_a_node_that_lost_its_disk_keeps_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    """The README procedure: the dead node is removed, a replacement with a NEW id and an
    empty data directory starts with --join and is added (learner, caught up, promoted),
    while a client writes; then the replacement holds every acknowledged write and counts in
    the quorum (the cluster writes with a founder stopped)."""
    with cluster(tmp_path, spares=(4,)) as c:
        sup = c.supervisor

        async def scenario() -> Writer:
            writer = Writer([c.client_address(n) for n in (1, 2, 3, 4)], 5000)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                await trio.sleep(1.0)
                sup.kill(2)
                shutil.rmtree(sup.data_dir(2))  # the disk is gone
                await _run_cli(c, "member", "remove", "2")
                sup.start(4)
                assert not sup.wait_ready({4: c.client[4]}, READY_SECONDS), c.logs()
                # Several election timeouts: a joining node with an empty disk waits to be
                # added; it is no voter of any configuration and never campaigns.
                await trio.sleep(1.0)
                status = await _run_cli(c, "status", at=4)
                assert "voters:\r\n" in status and "term:0\r\n" in status, status
                assert "role:follower" in status, status
                out = await _run_cli(c, "member", "add", "4", c.raft[4],
                                     "--client", c.client_address(4))
                assert out.strip() == "node 4 added as a voter"
                await trio.sleep(1.0)
                writer.stop.set()
            members = await _run_cli(c, "member", "list")
            assert [line.split()[:2] for line in members.splitlines()[1:]] == [
                ["1", "voter"], ["3", "voter"], ["4", "voter"]], members
            # Every acknowledged write, read from the replacement's own state machine.
            assert (await _run_cli(c, "transfer-leader", "4")).strip() == "node 4 leads"
            async with open_client([c.client_address(4)]) as kv:
                for key, value in writer.acked.items():
                    assert await kv.get(key) == value, key
            # The replacement counts in the quorum: with a founder stopped, 3 and 4 commit.
            sup.stop(1)
            async with open_client([c.client_address(n) for n in (3, 4)]) as kv:
                await kv.set(b"after", b"replacement")
                assert await kv.get(b"after") == b"replacement"
            return writer

        writer = trio.run(scenario)
        assert len(writer.acked) >= 50, (len(writer.acked), writer.unknown)
        assert not sup.reap_unexpected(), c.logs()


Scrapes = dict[int, dict[str, float]]


def _leader_by_metrics(c: Cluster, nodes: tuple[int, ...]) -> tuple[int, Scrapes]:
    scraped = {n: c.scrape(n) for n in nodes}
    leaders = [n for n, v in scraped.items() if v.get("raftlib_role{role=leader}") == 1.0]
    return (leaders[0] if len(leaders) == 1 else 0), scraped


def _wait_leader_by_metrics(c: Cluster, nodes: tuple[int, ...],
                            other_than: int = 0) -> tuple[int, Scrapes]:
    """The leader all ``nodes`` agree on in their metrics (not ``other_than``)."""
    deadline = time.monotonic() + CHANGE_SECONDS_MAX
    while True:
        leader, scraped = _leader_by_metrics(c, nodes)
        agreed = leader and all(v["raftlib_leader_id"] == leader for v in scraped.values())
        if agreed and leader != other_than:
            return leader, scraped
        assert time.monotonic() < deadline, (scraped, c.logs())
        time.sleep(POLL_SECONDS)


def test_metrics_show_the_leader_change_a_transfer_and_a_kill_cause(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        nodes = (1, 2, 3)
        first, scraped = _wait_leader_by_metrics(c, nodes)

        async def write(count: int) -> None:
            async with open_client([c.client_address(n) for n in nodes]) as kv:
                for i in range(count):
                    await kv.set(b"m-%d" % i, b"x")

        trio.run(write, 20)
        # Scrapes see values at most raftlib.metrics.REFRESH_SECONDS old.
        deadline = time.monotonic() + CHANGE_SECONDS_MAX
        while c.scrape(first)["raftlib_proposals_total"] < 20:
            assert time.monotonic() < deadline, c.scrape(first)
            time.sleep(POLL_SECONDS)
        _, scraped = _wait_leader_by_metrics(c, nodes)
        on_leader = scraped[first]
        assert on_leader["raftlib_commit_seconds_count"] >= 20
        assert on_leader["raftlib_fsync_seconds_count"] >= 1
        for n in nodes:
            if n != first:
                assert f"raftlib_follower_lag_entries{{follower={n}}}" in on_leader
        changes = {n: v["raftlib_leader_changes_total"] for n, v in scraped.items()}

        target = next(n for n in nodes if n != first)
        assert c.op("transfer-leader", str(target)).strip() == f"node {target} leads"
        second, scraped = _wait_leader_by_metrics(c, nodes, other_than=first)
        assert second == target
        for n in nodes:
            assert scraped[n]["raftlib_leader_changes_total"] == changes[n] + 1, n

        # INFO shows the same values under the same names.
        done = raftlib_cli("status", "--address", c.client_address(second))
        assert f"leader_id:{second}" in done.stdout
        info = subprocess.run(
            [sys.executable, "-c", "import socket,sys; s=socket.create_connection(("
             f"'127.0.0.1',{c.client[second]})); s.sendall(b'INFO\\r\\n');"
             "import time; time.sleep(0.5); sys.stdout.write(s.recv(65536).decode())"],
            capture_output=True, text=True, timeout=10).stdout
        assert "raftlib_role_leader:1" in info and f"raftlib_leader_id:{second}" in info

        c.supervisor.kill(second)
        rest = tuple(n for n in nodes if n != second)
        third, scraped = _wait_leader_by_metrics(c, rest, other_than=second)
        assert third in rest
        assert all(v["raftlib_leader_changes_total"] >= changes[n] + 2
                   for n, v in scraped.items())


def test_operator_commands_speak_tls_to_a_tls_cluster(tmp_path: Path) -> None:
    from raftlib.certs import ensure_certs

    certs = tmp_path / "certs"
    ensure_certs(certs, nodes=3)
    with cluster(tmp_path, security=("--tls-dir", str(certs))) as c:
        deadline = time.monotonic() + CHANGE_SECONDS_MAX
        while "leader_id:0" in (out := c.op("status")):
            assert time.monotonic() < deadline, out
            time.sleep(POLL_SECONDS)
        members = c.op("member", "list", at=2)
        assert len(members.splitlines()) == 4, members
        leader = int(out.split("leader_id:")[1].split()[0])
        target = next(n for n in (1, 2, 3) if n != leader)
        assert c.op("transfer-leader", str(target), at=3).strip() == f"node {target} leads"
        plain = raftlib_cli("member", "list", "--address", c.client_address(1), "--timeout", "5")
        assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1, plain
        assert "pass --tls-dir or --cacert" in plain.stderr


def test_cluster_serves_metrics_of_every_node(tmp_path: Path) -> None:
    from raftlib.supervisor import consecutive_free_ports
    from tests.raftlib.cluster_cli import raftlib_cluster

    base = consecutive_free_ports(3)
    with raftlib_cluster(tmp_path, "--metrics-base-port", str(base)) as running:
        for port in range(base, base + 3):
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert b"raftlib_commit_index " in response.read()
    assert running.returncode == 0, running.output
