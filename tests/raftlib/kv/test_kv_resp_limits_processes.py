"""Acceptance, on real processes (``raftlib cluster``, fsync on): a 16 MiB command and 10 held
partial commands sent to the leader cost no election (every node keeps the same term and
leader) and the leader's RSS grows by no more than the named limits allow."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from raftlib.resp.protocol import ARGUMENT_OVERHEAD_BYTES, RespLimits, encode_command
from tests.raftlib.cluster_cli import NODES, raftlib_cluster

MIB = 1024 * 1024
HELD_CONNECTIONS = 10
TIMEOUT_SECONDS = 20.0
# Start-up noise on top of what the held commands may cost (allocator slack, buffers).
RSS_SLACK_BYTES = 48 * MIB


def call(port: int, *args: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as sock:
        sock.sendall(encode_command(list(args)))
        return read_reply(sock)


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and len(data) < int(
            data.split(b"\r\n", 1)[0][1:]) + len(data.split(b"\r\n", 1)[0]) + 4):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def info(port: int) -> dict[str, str]:
    text = call(port, b"INFO").decode(errors="replace")
    return {k: v for k, sep, v in (line.partition(":") for line in text.splitlines()) if sep}


def views(ports: list[int]) -> list[tuple[str, str]]:
    """(term, leader_id) as each node sees it."""
    return [(i["term"], i["leader_id"]) for i in map(info, ports)]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def node_pid(data: Path, node_id: int) -> int:
    needle = str(data / f"node-{node_id}").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if needle in argv and b"serve" in argv:
                    return int(proc.name)
    raise AssertionError(f"no process for node {node_id}")


def big_del(total_bytes: int) -> bytes:
    count = min(65535, total_bytes // 264 + 1)
    return encode_command([b"DEL"] + [b"%0256d" % i for i in range(count)])


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        with contextlib.suppress(OSError):  # the server closes once it has refused
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_16_mib_command_and_10_held_partials_cost_no_election_and_bounded_rss(
    tmp_path: Path,
) -> None:
    limits = RespLimits()  # what `raftlib serve` runs with (its values are the defaults)
    with raftlib_cluster(tmp_path) as cluster:
        ports = [cluster.client_base + n for n in range(NODES)]
        deadline = time.monotonic() + TIMEOUT_SECONDS
        # Every node names the same leader in the same term: the view that must not change.
        while len(set(before := views(ports))) != 1 or before[0][1] == "0":
            assert time.monotonic() < deadline, before
            time.sleep(0.1)
        leader = int(before[0][1])
        port = ports[leader - 1]
        assert call(port, b"SET", b"k", b"v") == b"+OK\r\n"
        pid = node_pid(cluster.data, leader)
        rss_before = rss_bytes(pid)

        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as sock:
            wire = big_del(16 * MIB)
            assert len(wire) > 16 * MIB
            sender = send_in_background(sock, wire)
            reply = read_reply(sock)
            sender.join(TIMEOUT_SECONDS)
        assert reply.startswith(b"-ERR Protocol error") and b"request_bytes_max" in reply, reply

        held_wire = big_del(2 * limits.request_bytes_max)[: limits.request_bytes_max - 65536]
        held = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS)
                for _ in range(HELD_CONNECTIONS)]
        try:
            for sock in held:
                sock.sendall(held_wire)
            # Served meanwhile, and promptly: the leader is not stalled by what it holds.
            started = time.monotonic()
            assert call(port, b"SET", b"a", b"1") == b"+OK\r\n"
            assert call(port, b"GET", b"a") == b"$1\r\n1\r\n"
            assert time.monotonic() - started < 2.0
            rss_held = rss_bytes(pid)
            assert views(ports) == before
        finally:
            for sock in held:
                sock.close()
        per_connection = (limits.request_bytes_max + limits.unparsed_bytes_max
                          + limits.array_items_max * ARGUMENT_OVERHEAD_BYTES)
        growth = rss_held - rss_before
        assert growth <= HELD_CONNECTIONS * per_connection + RSS_SLACK_BYTES, (
            f"leader RSS grew {growth / MIB:.0f} MiB")
        assert views(ports) == before
        print(f"leader RSS {rss_before / MIB:.0f} MiB -> {rss_held / MIB:.0f} MiB with "
              f"{HELD_CONNECTIONS} held partial commands of {len(held_wire) / MIB:.1f} MiB; "
              f"bound {(HELD_CONNECTIONS * per_connection + RSS_SLACK_BYTES) / MIB:.0f} MiB")
    assert cluster.returncode == 0, cluster.output
