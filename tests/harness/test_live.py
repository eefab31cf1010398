"""The live backend: real raftlib processes under real faults stay valid, and runs clean up."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from harness.checks import Check
from harness.cli import main
from harness.live import net, netns
from harness.live.checks import NodeLog, check_durability, check_safety
from harness.live.clients import Acked, decode_read, key_bytes
from harness.live.cluster import wait_pids_gone
from harness.options import RunOptions
from harness.runner import run
from raftlib.core.types import Entry, HardState
from raftlib.kv.commands import Request, Set, encode_command

ROOT_NETNS = net.netns_unavailable_reason() is None
needs_netns = pytest.mark.skipif(not ROOT_NETNS, reason="needs root on Linux and pyroute2")


def _live(tmp_path: Path, **kw: Any) -> tuple[Any, dict[str, Any]]:
    options = RunOptions(backend="live", **kw)
    report = run(options, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    return report, results


def _assert_clean(results: dict[str, Any]) -> None:
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert pids, "the run started no node process"
    assert wait_pids_gone(pids, 5.0) == [], "node processes outlived the run"
    if ROOT_NETNS:
        assert net.leftovers_when_idle() == [], "namespaces or links outlived the run"


def test_live_run_under_partition_kill_pause_is_valid_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    report, results = _live(tmp_path, nodes=3, time_limit=8.0, nemesis=("partition", "kill",
                            "pause"), seed=3, recovery_time=10.0)
    assert report.verdict == "valid", f"reproduce with seed=3: {report.line}"
    expected = "netns" if ROOT_NETNS else "proxy (weaker)"
    assert results["live"]["partitions"] == expected
    assert f"partitions: {results['live']['partitions']}" in report.line
    started = results["stats"]["faults_started"]
    assert set(started) == {"partition", "kill", "pause"}, started
    assert results["stats"]["acknowledged_writes"] > 0
    # Each node's own data and output are inside the run directory.
    events = (tmp_path / "run" / "nodes.log").read_text()
    for node in (1, 2, 3):
        assert (tmp_path / "run" / "nodes" / f"node-{node}").is_dir()
        assert f"n{node} start #1" in events
    _assert_clean(results)


@needs_netns
def test_live_nodes_run_the_core_settings_of_the_run_lease_reads_under_pauses_stay_valid(
    tmp_path: Path,
) -> None:
    """Core settings reach live raftlib nodes as `raftlib serve` flags. With lease reads on,
    leaders stopped by SIGSTOP count the time they lost before answering from their lease
    (raftlib.node's ticks follow the clock): the history stays linearizable, and the leaders
    did answer reads from their lease (the nodes' Prometheus counter, scraped during the run)."""
    report, results = _live(tmp_path, nodes=3, time_limit=8.0, nemesis=("partition", "pause"),
                            seed=4, recovery_time=10.0, core={"lease_reads": True})
    assert report.verdict == "valid", f"reproduce with seed=4: {report.line}"
    assert results["options"]["lease_reads"] is True
    assert "--lease-reads" in results["command"]
    scraped = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    served = [row for row in scraped
              if row.get("raftlib_lease_reads_total", 0) > 0]
    assert served, "no node answered a read from its lease"
    _assert_clean(results)


def test_proxy_fallback_when_namespaces_are_disabled_is_valid_and_says_it_is_weaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(net.PARTITIONS_ENV, "proxy")
    report, results = _live(tmp_path, nodes=3, time_limit=5.0, nemesis=("partition",),
                            seed=4, nemesis_interval=1.0, recovery_time=10.0)
    assert report.verdict == "valid", f"reproduce with seed=4: {report.line}"
    assert results["live"]["partitions"] == "proxy (weaker)"
    assert "partitions: proxy (weaker)" in report.line
    assert results["stats"]["faults_started"].get("partition", 0) >= 1
    assert results["live"]["proxied_connections"] > 0
    _assert_clean(results)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--nemesis", "reorder"], "cannot reorder"),
        (["--nemesis", "crash-after-vote"], "simulator only"),
        (["--bug", "local-reads"], "patches the simulator's SimNode"),
        (["--nemesis", "duplicate"], "absorbed by TCP"),
        (["--clients", "500"], "--clients"),
        (["--request-timeout", "0.05"], "--request-timeout"),
    ],
)
def test_bad_live_options_get_one_line_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    status = main(["run", "--backend", "live", "--no-progress", "--out", str(tmp_path / "x"),
                   *argv])
    err = capsys.readouterr().err
    assert status == 3
    assert needle in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x" / "nodes").exists(), "nothing may start on bad options"


def test_bad_partitions_env_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv(net.PARTITIONS_ENV, "carrier-pigeon")
    status = main(["run", "--backend", "live", "--no-progress", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert status == 3
    assert net.PARTITIONS_ENV in err and err.count("\n") == 1


def test_reads_decode_to_the_models_values() -> None:
    assert decode_read("register", None) is None
    assert decode_read("register", b"3") == 3
    assert decode_read("kv", None) == ""
    assert decode_read("append", None) == []
    assert decode_read("append", b"4,7,11,") == [4, 7, 11]
    # Garbage is kept as text, so lincheck sees a value nobody wrote.
    assert decode_read("kv", b"\xff!") == "\ufffd!"
    assert key_bytes("register", None) == b"register"
    assert key_bytes("kv", 12) == b"k12"


def _entry(index: int, term: int, session: int, seq: int, value: bytes) -> Entry:
    data = encode_command(Request(session, seq, 0, Set(b"k1", value)))
    return Entry(term=term, index=index, data=data)


def test_durability_check_finds_an_acknowledged_write_missing_from_a_node() -> None:
    full = [_entry(1, 1, 1, 1, b"1"), _entry(2, 1, 1, 2, b"2")]
    acked = [Acked(1, 1, Set(b"k1", b"1"), 0, "put"), Acked(1, 2, Set(b"k1", b"2"), 0, "put")]
    good = {1: NodeLog(HardState(1, 1, 2), full), 2: NodeLog(HardState(1, 1, 2), full)}
    assert check_durability(good, acked).valid is True
    lossy = {1: NodeLog(HardState(1, 1, 2), full), 2: NodeLog(HardState(1, 1, 1), full[:1])}
    check = check_durability(lossy, acked)
    assert check.valid is False
    assert "node 2 lacks 1 acknowledged write" in check.violations[0]
    # A node persists its commit index lazily: the acknowledged write itself proves its
    # entry was committed, so a smaller persisted commit index is no loss.
    lazy = {1: NodeLog(HardState(1, 1, 1), full), 2: NodeLog(HardState(1, 1, 1), full)}
    assert check_durability(lazy, acked).valid is True
    # The same bytes under another (session, seq) are a different write.
    other = [Acked(2, 1, Set(b"k1", b"1"), 0, "put")]
    assert check_durability(good, other).valid is False
    # A node removed from the configuration is not held to what was written after it left;
    # a member is.
    assert check_durability(lossy, acked, members={1}).valid is True
    assert check_durability(lossy, acked, members={1, 2}).valid is False


def test_safety_check_finds_divergent_committed_logs_and_two_leaders_in_a_term() -> None:
    a = [_entry(1, 1, 1, 1, b"1"), _entry(2, 2, 1, 2, b"2")]
    b = [_entry(1, 1, 1, 1, b"1"), _entry(2, 3, 1, 2, b"3")]
    logs = {1: NodeLog(HardState(3, 1, 2), a), 2: NodeLog(HardState(3, 2, 2), b)}
    check: Check = check_safety(logs, [], {2: {1}, 3: {2}})
    assert check.valid is False
    assert any("state machine safety" in v for v in check.violations)
    same = {1: NodeLog(HardState(3, 1, 2), a), 2: NodeLog(HardState(3, 2, 1), a[:1])}
    assert check_safety(same, [], {2: {1}}).valid is True
    assert check_safety(same, [], {2: {1, 2}}).valid is False



def test_a_removed_nodes_stale_uncommitted_tail_is_no_committed_history() -> None:
    """A live run (seed 1 of member, partition, kill) blamed a learner removed while it held
    an entry nobody committed: no leader sends to it again, so the entry stays. Its log is
    committed only as far as its own persisted commit index; a member's, as far as the
    cluster's."""
    ours = [_entry(1, 1, 1, 1, b"1"), _entry(2, 3, 1, 2, b"2")]
    stale = [_entry(1, 1, 1, 1, b"1"), _entry(2, 2, 1, 2, b"x")]
    logs = {1: NodeLog(HardState(3, 1, 2), ours), 2: NodeLog(HardState(3, 1, 2), ours),
            4: NodeLog(HardState(2, 0, 1), stale)}
    assert check_safety(logs, [], {3: {1}}, members={1, 2}).valid is True
    assert check_safety(logs, [], {3: {1}}, members={1, 2, 4}).valid is False
    assert check_safety(logs, [], {3: {1}}).valid is False

# --- the namespace network itself ---------------------------------------------------------

_LISTENER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('10.77.0.1', 7000)); s.listen(16); print('ready', flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.sendall(b'hi'); c.close()\n"
)
_DIAL = (
    "import socket,sys\n"
    "try:\n"
    "    s=socket.create_connection(('10.77.0.1', 7000), timeout=1.0); print(s.recv(2))\n"
    "except OSError as e:\n"
    "    print('cut', type(e).__name__)\n"
)


def _in_namespace(node: int, *argv: str) -> list[str]:
    # nsexec, not ``ip netns exec``: the harness must not need the ip binary.
    return [sys.executable, "-m", "harness.live.nsexec", f"rh-n{node}", *argv]


def _dial_from(node: int) -> str:
    done = subprocess.run(_in_namespace(node, sys.executable, "-c", _DIAL),
                          capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip()


@needs_netns
def test_netns_partition_drops_packets_only_on_blocked_links_and_heals() -> None:
    with net.open_network(3) as network:
        assert isinstance(network, net.NetnsNetwork)
        listener = subprocess.Popen(_in_namespace(1, sys.executable, "-c", _LISTENER),
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None and listener.stdout.readline().startswith("ready")
            assert _dial_from(2) == "b'hi'" and _dial_from(3) == "b'hi'"
            trio.run(network.set_blocked, frozenset({(2, 1), (1, 2)}))
            assert _dial_from(2) == "cut TimeoutError"  # silence, not an ICMP error
            assert _dial_from(3) == "b'hi'"
            trio.run(network.set_blocked, frozenset())
            assert _dial_from(2) == "b'hi'"
        finally:
            listener.kill()
            listener.wait()
            if listener.stdout is not None:
                listener.stdout.close()
    assert net.leftovers_when_idle() == []


@needs_netns
def test_leftovers_of_a_crashed_run_are_removed_before_a_new_one() -> None:
    from harness.live.rtnl import Rtnl

    netns.create("rh-n7")
    sleeper = subprocess.Popen(_in_namespace(7, "sh", "-c", "echo inside; exec sleep 60"),
                               stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "inside\n"
        with Rtnl() as rt:
            rt.add_link("rh-stale", "bridge")
        with net.open_network(2) as network:
            assert isinstance(network, net.NetnsNetwork)
            assert "netns rh-n7" in network.removed_leftovers
            assert "link rh-stale" in network.removed_leftovers
            assert sleeper.wait(timeout=5) != 0  # killed with its namespace
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
        if sleeper.stdout is not None:
            sleeper.stdout.close()
        # Whatever failed above, remove this test's own objects (and only those).
        with contextlib.suppress(OSError):
            netns.remove("rh-n7")
        with Rtnl() as rt:
            stale = rt.links().get("rh-stale")
            if stale is not None:
                rt.delete_link(stale)
    assert net.leftovers_when_idle() == []


def test_proxy_network_blackholes_a_blocked_link_and_reopens_it() -> None:
    async def scenario() -> None:
        proxy = net.ProxyNetwork(2, "test")
        received: list[bytes] = []

        async def target(stream: trio.SocketStream) -> None:
            received.append(await stream.receive_some(16))

        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            port = proxy.peers_for(2)[2][1]  # where node 2 itself listens
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, target, listeners)
            link_port = proxy.peers_for(1)[2][1]
            await proxy.set_blocked(frozenset({(1, 2)}))
            async with await trio.open_tcp_stream("127.0.0.1", link_port) as stream:
                await stream.send_all(b"lost")
                await trio.sleep(0.3)
                assert received == []  # held, never forwarded
                await proxy.set_blocked(frozenset())
                # Closed at heal (with a reset: it held unread bytes).
                with trio.fail_after(2), contextlib.suppress(trio.BrokenResourceError):
                    assert await stream.receive_some(16) == b""
            async with await trio.open_tcp_stream("127.0.0.1", link_port) as stream:
                await stream.send_all(b"kept")
                with trio.fail_after(2):
                    while not received:
                        await trio.sleep(0.02)
            assert received == [b"kept"]
            nursery.cancel_scope.cancel()

    trio.run(scenario)


@pytest.mark.slow
def test_five_node_live_run_of_sixty_seconds_is_valid(tmp_path: Path) -> None:
    report, results = _live(tmp_path, nodes=5, time_limit=60.0,
                            nemesis=("partition", "kill", "pause"), seed=0)
    assert report.verdict == "valid", f"reproduce with seed=0: {report.line}"
    _assert_clean(results)
