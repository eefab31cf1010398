"""Redis with replication and Sentinel failover (Debian's ``redis-server``, ``redis-sentinel``).

Node 1 starts as the primary, the others as its replicas (``replicaof``); a Sentinel runs
beside every node, in its namespace host (a companion: faults kill or pause the Redis server,
the Sentinel stays, but a partition cuts it off with its node). The Sentinels monitor the
primary under the name ``MASTER_NAME`` with a quorum of a majority and fail over after
``DOWN_AFTER_MS`` of silence. Each Redis server keeps an append-only file synced on every write
(``appendfsync always``), so a SIGKILL loses nothing a node acknowledged: what this target
loses, it loses through replication.

A client asks a Sentinel (its home node's first, then the others) which node is the primary,
connects there, checks with ROLE that it is one (Redis's guidelines for Sentinel clients) and
runs every operation on it until an error; then it asks again. A cas is a
short Lua script (compare, then SET, atomically); from the register's nil it is ``SETNX``.

Redis replication is asynchronous: a primary acknowledges a write before any replica has it.
When a partition isolates the primary, the Sentinels on the majority side promote a replica;
the old primary goes on acknowledging writes from the clients that still reach it until the
partition heals, and then it becomes a replica of the new primary and discards them. These
are lost acknowledged writes, the behaviour Redis documents ("Redis Sentinel ... does not
guarantee that acknowledged writes are retained during failures", see the Sentinel and
replication documentation: https://redis.io/docs/management/sentinel/ and
https://redis.io/docs/management/replication/); the run reports them and names them expected.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any, ClassVar

import trio

from harness.targets.base import DB, Client, Host, NotApplied, Unknown
from harness.targets.resp import PORT, ping, program_version, resp_operation
from harness.targets.wire import RespConnection
from harness.workloads import OpSpec

SENTINEL_PORT = 26379
MASTER_NAME = "rh"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000
ASK_SECONDS_MAX = 0.5
# Compare and set, atomically (a Lua script runs alone): 1 when it set, else 0.
CAS_SCRIPT = (b"if redis.call('GET', KEYS[1]) == ARGV[1] then "
              b"redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end")
WHY_LOST = ("acknowledged writes lost, as documented: Redis replication is asynchronous and a "
            "Sentinel failover discards what the old primary acknowledged but had not "
            "replicated")


async def _ask(address: str, port: int, *args: bytes) -> Any:
    """One command to a Redis server or Sentinel; None when it does not answer in time."""
    with trio.move_on_after(ASK_SECONDS_MAX):
        try:
            conn = await RespConnection.open(address, port)
        except Exception:
            return None
        try:
            return await conn.call(*args)
        except Exception:
            return None
        finally:
            await conn.aclose()
    return None


def _pairs(reply: Any) -> dict[str, str]:
    """A flat [field, value, ...] reply (SENTINEL MASTER) as a dict of text."""
    if not isinstance(reply, list):
        return {}
    text = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
    return dict(zip(text[::2], text[1::2], strict=False))


def _info(reply: Any) -> dict[str, str]:
    """``INFO`` text as a dict (``field:value`` lines)."""
    if not isinstance(reply, bytes):
        return {}
    lines = reply.decode("utf-8", "replace").splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


async def cas_script(conn: RespConnection, key: bytes, expected: bytes, new: bytes) -> Any:
    return await conn.call(b"EVAL", CAS_SCRIPT, b"1", key, expected, new)


class RedisSentinelDB(DB):
    name = "redis-sentinel"
    description = "Redis primary and replicas with Sentinel failover (Debian redis-server)"
    workloads = ("register", "kv", "set")
    expected_failures: ClassVar[Mapping[str, str]] = {
        "lost-writes": WHY_LOST, "set": WHY_LOST, "linearizable": WHY_LOST}

    def missing(self) -> str | None:
        for program in ("redis-server", "redis-sentinel"):
            if shutil.which(program) is None:
                return f"{program} is not installed (apt-get install redis-server redis-sentinel)"
        return None

    def version(self) -> str:
        words = program_version("redis-server").split()
        number = next((w[2:] for w in words if w.startswith("v=")), " ".join(words))
        return f"redis {number} (Sentinel failover)"

    def setup(self, host: Host) -> None:
        first = min(host.addresses)
        lines = [f"bind {host.address}", f"port {PORT}", "protected-mode no",
                 f"dir {host.data_dir}", "appendonly yes", "appendfsync always", 'save ""',
                 'logfile ""', "daemonize no"]
        if host.node != first:
            lines.append(f"replicaof {host.addresses[first]} {PORT}")
        (host.data_dir / "redis.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        quorum = len(host.addresses) // 2 + 1
        sentinel = [f"bind {host.address}", f"port {SENTINEL_PORT}", "protected-mode no",
                    f"dir {host.data_dir}", 'logfile ""', "daemonize no",
                    f"sentinel monitor {MASTER_NAME} {host.addresses[first]} {PORT} {quorum}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER_NAME} {len(host.addresses)}"]
        (host.data_dir / "sentinel.conf").write_text("\n".join(sentinel) + "\n",
                                                     encoding="utf-8")

    def command(self, host: Host) -> list[str]:
        return ["redis-server", str(host.data_dir / "redis.conf")]

    def companion(self, host: Host) -> list[str] | None:
        return ["redis-sentinel", str(host.data_dir / "sentinel.conf")]

    async def _named(self, hosts: Mapping[int, Host]) -> dict[int, int | None]:
        """Sentinel of node -> the node it names primary (None: unknown address)."""
        by_address = {h.address: n for n, h in hosts.items()}
        named: dict[int, int | None] = {}

        async def ask(node: int) -> None:
            reply = await _ask(hosts[node].address, SENTINEL_PORT, b"SENTINEL",
                               b"get-master-addr-by-name", MASTER_NAME.encode())
            if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
                named[node] = by_address.get(reply[0].decode())

        async with trio.open_nursery() as nursery:
            for node in hosts:
                nursery.start_soon(ask, node)
        return named

    async def primary(self, hosts: Mapping[int, Host]) -> int | None:
        votes = [n for n in (await self._named(hosts)).values() if n is not None]
        return max(set(votes), key=votes.count) if votes else None

    async def ready(self, hosts: Mapping[int, Host]) -> str | None:
        """Every server answers, every Sentinel names the same primary and knows the others
        and the replicas, every other server is a replica whose link is up, none rewrites its
        append-only file."""
        for node, host in sorted(hosts.items()):
            why = await ping(host.address, PORT)
            if why is not None:
                return f"Redis server of node {node}: {why}"
        named = await self._named(hosts)
        if len(named) < len(hosts) or len(set(named.values())) != 1 or None in named.values():
            return f"Sentinels do not agree on one primary: {named}"
        primary = next(iter(named.values()))
        assert primary is not None
        addresses = {h.address for h in hosts.values()}
        for node, host in sorted(hosts.items()):
            state = _pairs(await _ask(host.address, SENTINEL_PORT, b"SENTINEL", b"MASTER",
                                      MASTER_NAME.encode()))
            if (state.get("num-other-sentinels") != str(len(hosts) - 1)
                    or state.get("num-slaves") != str(len(hosts) - 1)
                    or state.get("flags") != "master"):
                return f"Sentinel of node {node} does not see the whole cluster yet: " + (
                    ", ".join(f"{k} {state.get(k)}" for k in ("flags", "num-slaves",
                                                              "num-other-sentinels")))
        for node, host in sorted(hosts.items()):
            info = _info(await _ask(host.address, PORT, b"INFO", b"all"))
            # A server rewriting its append-only file after a full resync refuses SIGTERM
            # ("Writing initial AOF, can't exit"): the cluster is quiet only when none does.
            if info.get("aof_rewrite_in_progress") != "0" or info.get(
                    "aof_rewrite_scheduled") != "0":
                return f"node {node} is rewriting its append-only file"
            # A replica may replicate through another replica (Sentinel leaves such chains
            # after some failovers): linked to a node of the cluster is enough.
            if node != primary and (info.get("role") != "slave"
                                    or info.get("master_host") not in addresses
                                    or info.get("master_link_status") != "up"):
                return (f"node {node} is not a linked replica (primary: node {primary}): role "
                        f"{info.get('role')}, link {info.get('master_link_status')}")
        return None

    def client(self, hosts: Mapping[int, Host], *, home: int, timeout: float,
               workload: str) -> Client:
        return SentinelClient(hosts, home, workload)


class SentinelClient(Client):
    """Asks a Sentinel for the primary, then runs operations there until an error."""

    def __init__(self, hosts: Mapping[int, Host], home: int, workload: str) -> None:
        self._hosts = hosts
        order = sorted(hosts)
        self._sentinels = order[order.index(home):] + order[:order.index(home)]
        self._workload = workload
        self._conn: RespConnection | None = None

    async def _primary_address(self) -> str:
        for node in self._sentinels:
            reply = await _ask(self._hosts[node].address, SENTINEL_PORT, b"SENTINEL",
                               b"get-master-addr-by-name", MASTER_NAME.encode())
            if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
                return reply[0].decode()
        raise NotApplied("no Sentinel named a primary")

    async def _connect(self) -> RespConnection:
        """A connection to the primary, checked with ROLE as Redis's guidelines for Sentinel
        clients ask: the node a Sentinel names may have been demoted since. Nothing of the
        operation is sent before this returns, so every failure here is ``NotApplied``."""
        address = await self._primary_address()
        conn = await RespConnection.open(address, PORT)
        try:
            role = await conn.call(b"ROLE")
        except Unknown as exc:
            await conn.aclose()
            raise NotApplied(f"ROLE of {address}: {exc}") from None
        if not (isinstance(role, list) and role and role[0] == b"master"):
            await conn.aclose()
            raise NotApplied(f"the primary a Sentinel named, {address}, is not one: ROLE "
                             f"{role!r}"[:200])
        return conn

    async def invoke(self, spec: OpSpec) -> Any:
        try:
            if self._conn is None:
                self._conn = await self._connect()
            return await resp_operation(self._conn, spec, self._workload, cas_script)
        except BaseException:
            # A replica refusing (READONLY), a dead or cut-off primary: ask again next time.
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

