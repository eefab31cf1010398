"""What the README promises redis-py users: a client that retries after a lost reply applies a
plain INCR twice; SESSION.CALL (examples/redis_py_exactly_once.py) applies it once; with
retries off the client gets an error instead. Against `raftlib cluster` on loopback, with a
proxy that forwards one request, waits for its reply and then drops the connection."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from raftlib.resp.protocol import RespParser
from tests.raftlib.cluster_cli import raftlib_cluster

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
RECEIVE_BYTES_MAX = 64 * 1024
LEADER_WAIT_SECONDS = 20.0
SOCKET_TIMEOUT_SECONDS = 5.0


class ReplyDropper:
    """A TCP proxy on 127.0.0.1 to ``target``: the first request containing ``trigger`` is
    delivered and answered, but the answer is thrown away and the client's connection closed
    (a reply lost to a crash or a network fault). Every other request passes through."""

    def __init__(self, target: tuple[str, int], trigger: bytes) -> None:
        self.target = target
        self.trigger = trigger
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self.listener:
            while True:
                try:
                    client, _ = self.listener.accept()
                except OSError:
                    return  # closed: the test is over
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with closing(client), socket.create_connection(self.target) as upstream:
            client.settimeout(SOCKET_TIMEOUT_SECONDS)
            upstream.settimeout(SOCKET_TIMEOUT_SECONDS)
            try:
                while request := client.recv(RECEIVE_BYTES_MAX):
                    upstream.sendall(request)
                    reply = _one_reply(upstream)
                    if self.trigger in request and not self.dropped:
                        self.dropped += 1
                        return
                    client.sendall(reply)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def _one_reply(sock: socket.socket) -> bytes:
    parser = RespParser()
    data = b""
    while True:
        chunk = sock.recv(RECEIVE_BYTES_MAX)
        if not chunk:
            raise ConnectionResetError("upstream closed")
        data += chunk
        parser.feed(chunk)
        if parser.next_value() is not None:
            return data


@contextmanager
def dropping_proxy(target: tuple[str, int], trigger: bytes) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(target, trigger)
    try:
        yield proxy
    finally:
        proxy.close()


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "redis_py_exactly_once", ROOT / "examples" / "redis_py_exactly_once.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leader_of(client_base: int) -> tuple[str, int]:
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while time.monotonic() < deadline:
        info: dict[str, Any] = redis.Redis(port=client_base, protocol=2).info()
        address = str(info.get("leader_client_address", ""))
        if ":" in address:
            host, _, port = address.rpartition(":")
            return host, int(port)
        time.sleep(0.1)
    raise AssertionError("no leader within the wait")


def plain(port: int, retries: int) -> Any:
    """A plain redis-py client that retries ``retries`` times after a connection error (named
    explicitly: redis-py's defaults differ between versions; 8.2 retries up to 10 times)."""
    return redis.Redis(port=port, protocol=2, retry=Retry(NoBackoff(), retries),
                       retry_on_error=[redis.exceptions.ConnectionError],
                       socket_timeout=SOCKET_TIMEOUT_SECONDS)


def test_redis_py_clients_and_lost_replies(tmp_path: Path) -> None:
    with raftlib_cluster(tmp_path) as cluster:
        leader = leader_of(cluster.client_base)
        direct = plain(leader[1], 0)

        # A client that retries once after a connection error (redis-py's default retries
        # more): the INCR is applied, its reply lost, and the retry applies it again.
        with dropping_proxy(leader, b"INCR") as proxy:
            assert plain(proxy.port, 1).incr("retried") == 2
            assert proxy.dropped == 1
        assert direct.get("retried") == b"2"

        # Retries off: the caller learns the outcome is unknown (it was in fact applied once).
        with dropping_proxy(leader, b"INCR") as proxy, \
                pytest.raises(redis.exceptions.ConnectionError):
            plain(proxy.port, 0).incr("unretried")
        assert direct.get("unretried") == b"1"

        # A session: the retry carries the same seq and gets the original reply.
        nodes = [("127.0.0.1", cluster.client_base + i) for i in range(3)]
        with dropping_proxy(leader, b"SESSION.CALL") as proxy:
            kv = example().ExactlyOnce([("127.0.0.1", proxy.port), *nodes])
            assert [kv.write("INCR", "once") for _ in range(5)] == [1, 2, 3, 4, 5]
            assert proxy.dropped == 1
        assert direct.get("once") == b"5"
    assert cluster.returncode == 0, cluster.output
