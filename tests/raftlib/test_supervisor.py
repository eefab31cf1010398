"""The one process supervisor of local clusters: it starts, pauses, resumes, kills and stops
node processes, keeps their logs across restarts (marking a line a SIGKILL cut off), tells
the crashes it did not cause from those it did, and lets no process outlive it."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from harness.live.cluster import pid_alive
from raftlib.supervisor import (
    CUT_NOTE,
    Supervisor,
    consecutive_free_ports,
    free_ports,
    port_open,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, /proc")

# A node stand-in: says it is up, then waits; exits 0 on SIGTERM. Its behaviour comes from
# argv: "partial" writes half a line first, "ignore-term" ignores SIGTERM, "exit" exits 3 at
# once, "listen PORT" accepts connections on PORT.
CHILD = r"""
import signal, socket, sys, time
mode = sys.argv[1:]
if "exit" in mode:
    sys.exit(3)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "ignore-term" in mode
              else (lambda *_: sys.exit(0)))
if "listen" in mode:
    server = socket.socket()
    server.bind(("127.0.0.1", int(mode[mode.index("listen") + 1])))
    server.listen()
print("READY", flush=True)
if "partial" in mode:
    sys.stdout.write("half a li")
    sys.stdout.flush()
while True:
    time.sleep(0.05)
"""
STOP_SECONDS = 2.0


def _supervisor(root: Path, *mode: str, nodes: int = 1) -> Supervisor:
    return Supervisor(root, range(1, nodes + 1), lambda node: [sys.executable, "-c", CHILD,
                                                               *mode])


def _wait_log(sup: Supervisor, node: int, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in sup.log_path(node).read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert text in sup.log_path(node).read_text()


def test_a_paused_node_still_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    events: list[str] = []
    sup = Supervisor(tmp_path, [1], lambda n: [sys.executable, "-c", CHILD],
                     on_event=lambda n, text: events.append(text.split()[0]))
    with sup:
        sup.start(1)
        _wait_log(sup, 1, "READY")
        assert sup.pause(1) and not sup.pause(1)
        sup.stop_all(STOP_SECONDS)
    # SIGCONT went before SIGTERM: the node handled it and exited 0, nothing was forced.
    assert sup.stop_statuses == {1: 0} and sup.forced_stops == []
    assert events == ["start", "pause", "stopped"]


def test_a_node_that_ignores_sigterm_is_killed_after_the_bound(tmp_path: Path) -> None:
    with _supervisor(tmp_path, "ignore-term") as sup:
        sup.start(1)
        _wait_log(sup, 1, "READY")
        started = time.monotonic()
        sup.stop_all(0.5)
        assert time.monotonic() - started < 0.5 + 5
    assert sup.forced_stops == [1] and sup.stop_statuses[1] == -9


def test_exits_it_did_not_cause_are_reported_and_kills_are_not(tmp_path: Path) -> None:
    with Supervisor(tmp_path, [1, 2], lambda n: [sys.executable, "-c", CHILD,
                                                 *(["exit"] if n == 2 else [])]) as sup:
        sup.start(1)
        sup.start(2)
        _wait_log(sup, 1, "READY")
        assert sup.kill(1) and not sup.kill(1)
        deadline = time.monotonic() + 10
        while sup.running(2) and time.monotonic() < deadline:
            sup.reap_unexpected()
            time.sleep(0.02)
    assert sup.unexpected_exits == [(2, 3, "running")]
    assert sup.members[1].kills == 1


def test_an_exit_the_caller_expects_is_not_reported_and_reap_returns_its_status(
    tmp_path: Path,
) -> None:
    with Supervisor(tmp_path, [1, 2], lambda n: [sys.executable, "-c", CHILD,
                                                 *(["exit"] if n == 1 else [])]) as sup:
        sup.members[1].expecting_exit = True
        sup.start(1)
        sup.process(1).wait(timeout=10)
        assert sup.reap_unexpected() == [] and sup.running(1)
        assert sup.reap(1) == 3 and not sup.running(1)
        # A signal of the caller's own (here SIGTERM, which the child exits 0 on), whose
        # exit the caller waited for: reap keeps that status and reports nothing.
        sup.start(2)
        _wait_log(sup, 2, "READY")
        sup.process(2).send_signal(signal.SIGTERM)
        sup.process(2).wait(timeout=10)
        assert sup.reap(2) == 0 and not sup.running(2)
        assert sup.reap_unexpected() == []
    assert sup.unexpected_exits == [] and sup.members[2].kills == 0


def test_the_log_survives_restarts_and_marks_a_line_a_kill_cut_off(tmp_path: Path) -> None:
    with _supervisor(tmp_path, "partial") as sup:
        sup.start(1)
        _wait_log(sup, 1, "half a li")
        sup.kill(1)
        sup.start(1)
        _wait_log(sup, 1, "start #2")
    lines = sup.log_path(1).read_bytes().split(b"\n")
    cut = lines.index(b"half a li")
    assert lines[cut + 1] == b"--- supervisor: start #2 of node 1" + CUT_NOTE
    assert lines[0] == b"--- supervisor: start #1 of node 1"
    assert sup.members[1].starts == 2 and len(sup.members[1].pids) == 2


def test_no_process_outlives_the_with_block(tmp_path: Path) -> None:
    with _supervisor(tmp_path, nodes=3) as sup:
        for node in (1, 2, 3):
            sup.start(node)
        sup.pause(2)
        pids = sup.all_pids()
        assert all(pid_alive(pid) for pid in pids)
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(sup.running(node) for node in (1, 2, 3))


def test_wait_ready_waits_for_the_port_and_gives_up_when_a_node_dies(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with _supervisor(tmp_path, "listen", str(port)) as sup:
        sup.start(1)
        assert sup.wait_ready({1: port}, 10.0) == []
        assert port_open(port)
    (other,) = free_ports(1)
    with _supervisor(tmp_path / "dying", "exit") as sup:
        sup.start(1)
        started = time.monotonic()
        assert sup.wait_ready({1: other}, 10.0) == [1]
        assert time.monotonic() - started < 5  # it noticed the exit, not the bound


def test_free_ports_are_distinct_and_a_run_avoids_the_ports_it_is_told() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    base = consecutive_free_ports(3)
    other = consecutive_free_ports(3, avoid=range(base, base + 3))
    assert not set(range(base, base + 3)) & set(range(other, other + 3))
    for port in range(other, other + 3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
