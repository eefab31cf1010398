"""etcd (Debian's ``etcd-server``) as a target: three members, driven over the v3 JSON gateway.

Each member runs in its node's namespace host with its peer URL ``http://ADDR:2380`` and its
client URL ``http://ADDR:2379`` (ADDR: the namespace's address), so partitions cut the peer
traffic while the harness still reaches every member, as Jepsen's clients do. The client speaks
the v3 API through etcd's gRPC-gateway (JSON over HTTP, keys and values in base64): no Python
etcd client is needed (the PyPI ones lag behind protobuf releases).

- write / put: ``/v3/kv/put``;
- read / get: ``/v3/kv/range``, linearizable (etcd's default: a ReadIndex round through the
  leader); with ``--etcd-serializable-reads`` serializable (the member's local state, possibly
  stale: a partitioned member answers with old data, which the checker must catch);
- cas: ``/v3/kv/txn`` comparing the value (from the register's initial nil: comparing the
  key's create revision with 0, i.e. absent), putting the new value on success.

A worker talks to its home member and moves to the next after any error. Every error of a
write after its request was sent is ``info`` (an etcd "request timed out" may still commit).
"""

from __future__ import annotations

import base64
import functools
import subprocess
from collections.abc import Mapping
from typing import Any

import trio

from harness.live.clients import decode_read, key_bytes
from harness.targets.base import DB, Client, Host
from harness.targets.wire import post_json
from harness.workloads import OpSpec

CLIENT_PORT = 2379
PEER_PORT = 2380
# etcd's own defaults, written out: a heartbeat every 100 ms, elections after 1 s of silence.
HEARTBEAT_MS = 100
ELECTION_TIMEOUT_MS = 1000
# A status request of ``ready``/``primary`` gives up on a member after this.
STATUS_SECONDS_MAX = 0.5
VERSION_SECONDS_MAX = 10.0
BINARY = "etcd"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@functools.lru_cache(maxsize=1)
def _binary_version() -> str:
    done = subprocess.run([BINARY, "--version"], capture_output=True, text=True, check=False,
                          timeout=VERSION_SECONDS_MAX)
    first = (done.stdout or done.stderr).strip().splitlines()
    words = first[0].split() if first else []
    return f"etcd {words[-1]}" if words else "etcd (version unknown)"


class EtcdDB(DB):
    name = "etcd"
    description = "etcd cluster (Debian etcd-server) over the v3 JSON gateway"
    workloads = ("register", "kv")

    def __init__(self, serializable_reads: bool = False) -> None:
        self.serializable_reads = serializable_reads

    def missing(self) -> str | None:
        import shutil

        if shutil.which(BINARY) is None:
            return f"{BINARY} is not installed (apt-get install etcd-server)"
        return None

    def version(self) -> str:
        return _binary_version()

    def command(self, host: Host) -> list[str]:
        cluster = ",".join(f"n{n}=http://{a}:{PEER_PORT}"
                           for n, a in sorted(host.addresses.items()))
        peer = f"http://{host.address}:{PEER_PORT}"
        client = f"http://{host.address}:{CLIENT_PORT}"
        return [BINARY, "--name", f"n{host.node}", "--data-dir", str(host.data_dir / "etcd"),
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "raft-harness",
                "--heartbeat-interval", str(HEARTBEAT_MS),
                "--election-timeout", str(ELECTION_TIMEOUT_MS),
                "--logger", "zap", "--log-outputs", "stderr"]

    async def _statuses(self, hosts: Mapping[int, Host]) -> dict[int, dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}

        async def ask(node: int) -> None:
            with trio.move_on_after(STATUS_SECONDS_MAX):
                try:
                    answers[node] = await post_json(hosts[node].address, CLIENT_PORT,
                                                    "/v3/maintenance/status", {})
                except Exception:  # a member that does not answer has no status
                    return

        async with trio.open_nursery() as nursery:
            for node in hosts:
                nursery.start_soon(ask, node)
        return answers

    @staticmethod
    def _leaders(statuses: Mapping[int, dict[str, Any]]) -> dict[int, int | None]:
        """node -> the node it names as leader (None: none, or one not answering)."""
        by_id = {str(s.get("header", {}).get("member_id")): n for n, s in statuses.items()}
        return {n: by_id.get(str(s.get("leader", "0"))) for n, s in statuses.items()}

    async def ready(self, hosts: Mapping[int, Host]) -> str | None:
        statuses = await self._statuses(hosts)
        if len(statuses) < len(hosts):
            return f"members answering: {sorted(statuses) or 'none'}"
        leaders = set(self._leaders(statuses).values())
        if len(leaders) != 1 or None in leaders:
            return f"members do not agree on one leader: {self._leaders(statuses)}"
        return None

    async def primary(self, hosts: Mapping[int, Host]) -> int | None:
        named = [n for n in self._leaders(await self._statuses(hosts)).values() if n]
        return max(set(named), key=named.count) if named else None

    def client(self, hosts: Mapping[int, Host], *, home: int, timeout: float,
               workload: str) -> Client:
        return EtcdClient(hosts, home, workload, self.serializable_reads)


class EtcdClient(Client):
    def __init__(self, hosts: Mapping[int, Host], home: int, workload: str,
                 serializable: bool) -> None:
        self._order = sorted(hosts)
        self._at = self._order.index(home)
        self._hosts = hosts
        self._workload = workload
        self._serializable = serializable

    async def invoke(self, spec: OpSpec) -> Any:
        host = self._hosts[self._order[self._at]].address
        try:
            return await self._call(host, spec)
        except BaseException:
            self._at = (self._at + 1) % len(self._order)  # try another member next time
            raise

    async def _call(self, host: str, spec: OpSpec) -> Any:
        key = _b64(key_bytes(self._workload, spec.key))
        if spec.f in ("read", "get"):
            body: dict[str, Any] = {"key": key}
            if self._serializable:
                body["serializable"] = True
            answer = await post_json(host, CLIENT_PORT, "/v3/kv/range", body)
            kvs = answer.get("kvs") or []
            raw = base64.b64decode(kvs[0].get("value", "")) if kvs else None
            return decode_read(self._workload, raw)
        if spec.f in ("write", "put"):
            await post_json(host, CLIENT_PORT, "/v3/kv/put",
                            {"key": key, "value": _b64(str(spec.value).encode())})
            return spec.value
        if spec.f == "cas":
            expected, new = spec.value
            compare: dict[str, Any] = (
                {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                if expected is None else
                {"key": key, "target": "VALUE", "result": "EQUAL",
                 "value": _b64(str(expected).encode())})
            put = {"requestPut": {"key": key, "value": _b64(str(new).encode())}}
            answer = await post_json(host, CLIENT_PORT, "/v3/kv/txn",
                                     {"compare": [compare], "success": [put], "failure": []})
            return bool(answer.get("succeeded", False))
        raise AssertionError(f"the etcd target has no operation {spec.f!r}")

    async def close(self) -> None:
        return None  # a connection per request: nothing stays open


