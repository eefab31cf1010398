"""Nodes on other hosts: a live run over SSH to three hosts (sshd in network namespaces this
test makes) is valid under partition, kill and pause, and leaves nothing on the hosts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from harness.live import net, netns
from harness.live.cluster import wait_pids_gone
from harness.options import RunOptions
from harness.runner import run

SSHD = "/usr/sbin/sshd"
HOSTS = 3
# How long an sshd may take to listen, and its per-connection processes to exit after the
# harness closed its connections.
SSHD_READY_SECONDS_MAX = 10.0
SSHD_CHILDREN_SECONDS_MAX = 10.0


def _skip_reason() -> str | None:
    reason = net.netns_unavailable_reason()
    if reason is not None:
        return f"needs network namespaces ({reason})"
    if not os.access(SSHD, os.X_OK):
        return f"needs {SSHD} (apt-get install openssh-server)"
    if importlib.util.find_spec("asyncssh") is None:
        return "needs asyncssh (pip install 'raft-toolkit[ssh]')"
    if shutil.which("nft") is None:
        return "needs nft for partitions on the hosts (apt-get install nftables)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@attrs.frozen
class Hosts:
    addresses: list[str]
    key: Path
    known_hosts: Path
    sshd: list[subprocess.Popen[bytes]]


def _keys(directory: Path) -> Any:
    directory.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # asyncssh's DSA import
        import asyncssh
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(str(directory / "client_key"))
    (directory / "authorized_keys").write_bytes(client.export_public_key())
    return asyncssh


def _sshd_config(directory: Path, address: str) -> Path:
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {address}:22",
        f"HostKey {directory / 'host_key'}",
        f"AuthorizedKeysFile {directory.parent / 'authorized_keys'}",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # pytest's tmp_path is not root's home
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
    ]) + "\n")
    return config


def _listening(address: str) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((address, 22)) == 0


@contextlib.contextmanager
def namespace_hosts(directory: Path) -> Iterator[Hosts]:
    """Three hosts: network namespaces rh-n1..3 (10.77.0.1..3, made by harness.live.net), each
    with an sshd listening on its address only, a host key of its own and this test's key."""
    made_privsep = not os.path.isdir("/run/sshd")  # sshd's privilege separation directory
    with net._machine_lock("for the SSH hosts of a test"):
        network = net.NetnsNetwork(HOSTS)
        sshd: list[subprocess.Popen[bytes]] = []
        try:
            network.setup()
            asyncssh = _keys(directory)
            os.makedirs("/run/sshd", exist_ok=True)
            known = []
            for node in range(1, HOSTS + 1):
                here = directory / f"host-{node}"
                here.mkdir()
                host_key = asyncssh.generate_private_key("ssh-ed25519")
                host_key.write_private_key(str(here / "host_key"))
                os.chmod(here / "host_key", 0o600)
                known.append(f"{net.address_of(node)} "
                             f"{host_key.export_public_key().decode().strip()}")
                config = _sshd_config(here, net.address_of(node))
                with (here / "sshd.log").open("wb") as log:
                    sshd.append(subprocess.Popen(
                        [sys.executable, "-m", "harness.live.nsexec", net.namespace_of(node),
                         SSHD, "-D", "-e", "-f", str(config)], stderr=log))
            (directory / "known_hosts").write_text("\n".join(known) + "\n")
            deadline = time.monotonic() + SSHD_READY_SECONDS_MAX
            addresses = [net.address_of(n) for n in range(1, HOSTS + 1)]
            while not all(_listening(a) for a in addresses):
                assert time.monotonic() < deadline, "sshd did not listen in the namespaces"
                time.sleep(0.05)
            yield Hosts(addresses, directory / "client_key", directory / "known_hosts", sshd)
        finally:
            for proc in sshd:
                proc.terminate()
                proc.wait(timeout=10)
            network.teardown()
            if made_privsep:
                shutil.rmtree("/run/sshd", ignore_errors=True)


def _nft_tables(node: int) -> str:
    done = subprocess.run([sys.executable, "-m", "harness.live.nsexec", net.namespace_of(node),
                           "nft", "list", "tables"], capture_output=True, text=True, check=True)
    return done.stdout


def _others_inside(node: int, sshd: subprocess.Popen[bytes]) -> list[int]:
    """Processes in host ``node``'s namespace besides its sshd listener, once its
    per-connection processes have had the time to exit."""
    deadline = time.monotonic() + SSHD_CHILDREN_SECONDS_MAX
    while True:
        others = [p for p in netns.pids_inside(net.namespace_of(node)) if p != sshd.pid]
        if not others or time.monotonic() > deadline:
            return others
        time.sleep(0.05)


def assert_nothing_left_on(hosts: Hosts, results: dict[str, Any]) -> None:
    """No node process, filter table or temporary directory of the run on any host."""
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert pids, "the run started no node process"
    # The namespaces share this machine's process ids, so the hosts' pids are checked here.
    assert wait_pids_gone(pids, 5.0) == [], "node processes outlived the run"
    for node, sshd in enumerate(hosts.sshd, start=1):
        assert _others_inside(node, sshd) == [], f"processes left on host {node}"
        assert "raft_harness" not in _nft_tables(node), f"filter table left on host {node}"
    for host in results["live"]["hosts"].values():
        assert host["temporary_dir"].startswith("/tmp/raft-harness-ssh-")
        assert not os.path.exists(host["temporary_dir"]), f"{host} left its directory"


def _wait_state(pid: int, state: str, seconds: float = 5.0) -> str:
    """``pid``'s scheduler state once it is ``state`` (a signal acts when the process next
    runs), or whatever it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            now = stat.read().rsplit(")", 1)[1].split()[0]
        if now == state or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


def _connects(namespace: str | None, address: str) -> bool:
    """Whether a TCP connection from ``namespace`` (None: this one) to sshd at ``address``
    opens within a short bound (a dropped SYN makes it time out)."""
    import socket

    sock = netns.socket_inside(namespace) if namespace else socket.socket()
    with sock:
        sock.settimeout(0.5)
        try:
            sock.connect((address, 22))
        except OSError:
            return False
        return True


class _RunFailed(Exception):
    pass


def test_an_ssh_host_starts_signals_filters_fetches_and_removes_what_it_made(
    tmp_path: Path,
) -> None:
    from harness.live.cluster import child_env, pid_alive
    from harness.live.ssh import SshError, open_ssh_network

    nodes = tmp_path / "nodes"
    with namespace_hosts(tmp_path) as hosts:
        options = RunOptions(backend="live", nodes=HOSTS, ssh_hosts=",".join(hosts.addresses),
                             ssh_key=str(hosts.key), ssh_known_hosts=str(hosts.known_hosts))
        # Wrong key, wrong host key, nobody listening: one line naming the option.
        other = tmp_path / "other"
        _keys(other)  # a key pair the hosts do not know
        wrong_known = tmp_path / "wrong_known_hosts"
        wrong_known.write_text("".join(f"{a} {(other / 'authorized_keys').read_text()}"
                                       for a in hosts.addresses))
        refusals = [
            (attrs.evolve(options, ssh_key=str(other / "client_key")),
             "--ssh-key: 10.77.0.1 (10.77.0.1:22) refused"),
            (attrs.evolve(options, ssh_known_hosts=str(wrong_known)), "--ssh-known-hosts: "),
            (attrs.evolve(options, ssh_hosts="10.77.0.1:2222,10.77.0.2,10.77.0.3"),
             "--ssh-hosts: cannot reach 10.77.0.1:2222"),
        ]
        for wrong, needle in refusals:
            with pytest.raises(SshError) as caught, \
                    open_ssh_network(wrong, nodes, child_env(), partitions=True):
                pass
            assert str(caught.value).startswith(needle) and "\n" not in str(caught.value)
        # The run fails with a process and a filter left on a host (the end must remove them
        # whatever ends the run).
        with pytest.raises(_RunFailed), \
                open_ssh_network(options, nodes, child_env(), partitions=True) as network:
            host = network.hosts[1]
            log = nodes / "node-1.log"
            paused = host.spawn(["sleep", "60"], log=log, marker="--- start #1", env={})
            assert pid_alive(paused.pid) and paused.poll() is None
            paused.send_signal(signal.SIGSTOP)
            assert _wait_state(paused.pid, "T") == "T"
            paused.send_signal(signal.SIGKILL)
            assert paused.wait(timeout=5.0) == -signal.SIGKILL
            # 2 -> 1 blocked: host 1 drops every packet host 2 sends, and only those (so no
            # TCP connection between them opens either way, as with netns partitions).
            trio.run(network.set_blocked, frozenset({(2, 1)}))
            assert "raft_harness" in _nft_tables(1) and "raft_harness" not in _nft_tables(2)
            assert not _connects(net.namespace_of(2), hosts.addresses[0])
            assert _connects(net.namespace_of(3), hosts.addresses[0])
            assert _connects(net.namespace_of(2), hosts.addresses[2])
            assert _connects(None, hosts.addresses[0])  # the harness still reaches it
            trio.run(network.set_blocked, frozenset())
            assert _connects(net.namespace_of(2), hosts.addresses[0])
            trio.run(network.set_blocked, frozenset({(3, 1)}))  # left on for the end to remove
            # Left running for the end to kill.
            running = host.spawn(["sleep", "60"], log=log, marker="--- start #2", env={})
            root = host.root
            assert os.path.isdir(root)
            raise _RunFailed
        assert not pid_alive(running.pid), "the end left a process on the host"
        assert "raft_harness" not in _nft_tables(1), "the end left the filter table"
        assert not os.path.exists(root), "the end left the host's temporary directory"
        assert log.read_text() == "--- start #1\n--- start #2\n"  # fetched back


@pytest.mark.slow  # 19 to 45 s on a loaded 2-core machine
def test_a_live_run_over_ssh_is_valid_under_faults_and_leaves_nothing_on_the_hosts(
    tmp_path: Path,
) -> None:
    with namespace_hosts(tmp_path) as hosts:
        options = RunOptions(
            backend="live", nodes=HOSTS, clients=4, time_limit=6.0, seed=5,
            nemesis=("partition", "kill", "pause"), nemesis_interval=1.0, recovery_time=10.0,
            ssh_hosts=",".join(hosts.addresses), ssh_key=str(hosts.key),
            ssh_known_hosts=str(hosts.known_hosts))
        report = run(options, tmp_path / "run")
        results = json.loads((tmp_path / "run" / "results.json").read_text())
        assert report.verdict == "valid", f"reproduce with seed=5: {report.line}"
        assert results["live"]["partitions"] == "ssh (nft)"
        assert "partitions: ssh (nft)" in report.line
        assert set(results["stats"]["faults_started"]) == {"partition", "kill", "pause"}
        assert results["live"]["rule_updates"] > 0
        assert results["stats"]["acknowledged_writes"] > 0
        # The nodes' logs, data and listings came back into the run directory.
        nodes = tmp_path / "run" / "nodes"
        for node in range(1, HOSTS + 1):
            assert "--- supervisor: start #1 of node" in (nodes / f"node-{node}.log").read_text()
            assert any((nodes / f"node-{node}").iterdir())
            assert (nodes / f"node-{node}.files.txt").read_text().strip()
        assert_nothing_left_on(hosts, results)
        sshd = [proc.pid for proc in hosts.sshd]
    assert wait_pids_gone(sshd, 5.0) == [], "sshd outlived the test"
    assert net.leftovers() == [], "namespaces or links outlived the test"


@pytest.mark.slow  # a whole run's start and end: 10 to 50 s on a loaded 2-core machine
def test_ctrl_c_during_a_run_over_ssh_leaves_nothing_on_the_hosts(tmp_path: Path) -> None:
    with namespace_hosts(tmp_path) as hosts:
        out = tmp_path / "run"
        argv = [sys.executable, "-m", "harness", "run", "--backend", "live", "--nodes",
                str(HOSTS), "--time-limit", "60", "--nemesis", "partition,pause",
                "--nemesis-interval", "0.5", "--ssh-hosts", ",".join(hosts.addresses),
                "--ssh-key", str(hosts.key), "--out", str(out), "--no-progress"]
        before = set(Path("/tmp").glob("raft-harness-ssh-*"))
        harness = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            _wait_phase(harness, "workload")
            # Interrupted while a partition is on: a filter table is on some host.
            deadline = time.monotonic() + 30.0
            while not any("raft_harness" in _nft_tables(n) for n in range(1, HOSTS + 1)):
                assert harness.poll() is None and time.monotonic() < deadline, "no partition"
                time.sleep(0.05)
            harness.send_signal(signal.SIGINT)
            _, stderr = harness.communicate(timeout=60)
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()
        assert harness.returncode == 130, stderr
        results = json.loads((out / "results.json").read_text())
        assert results["verdict"] == "interrupted"
        for node in range(1, HOSTS + 1):
            assert (out / "nodes" / f"node-{node}.log").exists()
        for node, sshd in enumerate(hosts.sshd, start=1):
            assert _others_inside(node, sshd) == [], f"processes left on host {node}"
            assert "raft_harness" not in _nft_tables(node), f"filter table left on host {node}"
        left = set(Path("/tmp").glob("raft-harness-ssh-*")) - before
        assert not left, f"temporary directories left: {sorted(left)}"


def _wait_phase(harness: subprocess.Popen[str], phase: str) -> None:
    """Until the harness's ledger file says the run is in ``phase``."""
    from harness.live import ledger

    path = ledger.state_dir() / f"run-{harness.pid}.json"
    deadline = time.monotonic() + 60.0
    while True:
        state = ledger.read(path)
        if state is not None and state["phase"] == phase:
            return
        assert harness.poll() is None, f"the harness exited: {harness.communicate()[1]}"
        assert time.monotonic() < deadline, f"the run never reached {phase}"
        time.sleep(0.05)
