"""Any Redis-protocol service as a target (``--target resp``), and the RESP client both RESP
targets share.

The generic target starts ``--resp-command`` on every node, its ``{host}``, ``{port}`` and
``{data_dir}`` filled in (the node's namespace address, ``PORT``, its data directory), and
knows no leader: a worker sends every operation to its home node and moves to the next after
an error. Operations (keys and values as ``harness.live.clients`` spells them for raftlib):
read/get = GET (set: SMEMBERS), write/put = SET, add = SADD, cas from the register's nil =
``SETNX key new``, any other cas = ``--resp-cas`` (e.g. ``CAS {key} {expected} {new}``;
without it the cas is recorded fail and nothing is sent). An error reply is a definite
refusal: the service answered that it did not do it.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from harness.live.clients import decode_members, decode_read, key_bytes
from harness.targets.base import DB, Client, Host, NotApplied
from harness.targets.wire import RespConnection
from harness.workloads import OpSpec
from raftlib.resp import ErrorReply, Reply, SimpleString

PORT = 6379
PING_SECONDS_MAX = 0.5
VERSION_SECONDS_MAX = 10.0
# The cas of a key that holds a value: (connection, key, expected, new) -> the reply.
CasCall = Callable[[RespConnection, bytes, bytes, bytes], Any]


def _refused(reply: Reply) -> Reply:
    if isinstance(reply, ErrorReply):
        raise NotApplied(f"error reply: {reply.text}")
    return reply


def _succeeded(reply: Reply) -> bool:
    return reply == 1 or reply == SimpleString("OK") or reply == b"OK"


async def resp_operation(conn: RespConnection, spec: OpSpec, workload: str,
                         cas: CasCall | None) -> Any:
    """``spec`` on ``conn``; its output, or ``NotApplied`` on an error reply."""
    key = key_bytes(workload, spec.key)
    if spec.f in ("read", "get"):
        if workload == "set":
            members = _refused(await conn.call(b"SMEMBERS", key))
            assert isinstance(members, list), f"SMEMBERS answered {members!r}"
            return decode_members([m for m in members if isinstance(m, bytes)])
        raw = _refused(await conn.call(b"GET", key))
        return decode_read(workload, raw if isinstance(raw, bytes) else None)
    if spec.f in ("write", "put"):
        _refused(await conn.call(b"SET", key, str(spec.value)))
        return spec.value
    if spec.f == "add":
        _refused(await conn.call(b"SADD", key, str(spec.value)))
        return spec.value
    if spec.f == "cas":
        expected, new = spec.value
        if expected is None:
            # SETNX rather than SET ... NX: the older command, which more services implement.
            return _succeeded(_refused(await conn.call(b"SETNX", key, str(new))))
        if cas is None:
            raise NotApplied("this target has no compare-and-set command (--resp-cas)")
        return _succeeded(_refused(await cas(conn, key, str(expected).encode(),
                                             str(new).encode())))
    raise AssertionError(f"RESP targets have no operation {spec.f!r}")


async def ping(host: str, port: int) -> str | None:
    """None when ``host:port`` answers PING with PONG, else what it did instead."""
    with trio.move_on_after(PING_SECONDS_MAX):
        try:
            conn = await RespConnection.open(host, port)
        except Exception as exc:
            return str(exc)
        try:
            reply = await conn.call(b"PING")
        except Exception as exc:
            return str(exc)
        finally:
            await conn.aclose()
        return None if reply == SimpleString("PONG") else f"PING answered {reply!r}"[:200]
    return f"no answer to PING within {PING_SECONDS_MAX:g} s"


@functools.lru_cache(maxsize=8)
def program_version(program: str) -> str:
    """The first line ``program --version`` prints, or a note that it said nothing."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, text=True,
                              check=False, timeout=VERSION_SECONDS_MAX)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{program} (version unknown: {exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else f"{program} (version unknown)"


class RespClient(Client):
    """A worker's connection to its home node; after an error, the next node's."""

    def __init__(self, hosts: Mapping[int, Host], home: int, workload: str,
                 cas: CasCall | None) -> None:
        self._order = sorted(hosts)
        self._at = self._order.index(home)
        self._hosts = hosts
        self._workload = workload
        self._cas = cas
        self._conn: RespConnection | None = None

    async def invoke(self, spec: OpSpec) -> Any:
        try:
            if self._conn is None:
                address = self._hosts[self._order[self._at]].address
                self._conn = await RespConnection.open(address, PORT)
            return await resp_operation(self._conn, spec, self._workload, self._cas)
        except BaseException:
            await self.close()
            self._at = (self._at + 1) % len(self._order)
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


def template_cas(template: str) -> CasCall:
    """``--resp-cas`` as a call: its words, ``{key}`` ``{expected}`` ``{new}`` filled in."""
    words = shlex.split(template)

    async def call(conn: RespConnection, key: bytes, expected: bytes, new: bytes) -> Any:
        fill = {"{key}": key, "{expected}": expected, "{new}": new}
        return await conn.call(*[fill.get(word, word.encode()) for word in words])

    return call


class RespDB(DB):
    name = "resp"
    description = "a Redis-protocol service (--resp-command)"
    workloads = ("register", "kv", "set")

    def __init__(self, command_template: str, cas_template: str = "") -> None:
        self.template = command_template
        self.cas = template_cas(cas_template) if cas_template else None

    def _words(self, host: Host | None = None) -> Sequence[str]:
        if host is None:
            return shlex.split(self.template)
        return [word.format(host=host.address, port=PORT, data_dir=host.data_dir)
                for word in shlex.split(self.template)]

    def missing(self) -> str | None:
        words = self._words()
        if not words or shutil.which(words[0]) is None:
            return f"--resp-command: {words[0] if words else '(empty)'!r} is not a program here"
        return None

    def version(self) -> str:
        return program_version(self._words()[0])

    def command(self, host: Host) -> list[str]:
        return list(self._words(host))

    async def ready(self, hosts: Mapping[int, Host]) -> str | None:
        for node, host in sorted(hosts.items()):
            why = await ping(host.address, PORT)
            if why is not None:
                return f"node {node}: {why}"
        return None

    async def primary(self, hosts: Mapping[int, Host]) -> int | None:
        return None  # a generic service names no leader: leader-targeted faults pick at random

    def client(self, hosts: Mapping[int, Host], *, home: int, timeout: float,
               workload: str) -> Client:
        return RespClient(hosts, home, self._workload_check(workload), self.cas)

    def _workload_check(self, workload: str) -> str:
        assert workload in self.workloads, f"resp target given workload {workload!r}"
        return workload
