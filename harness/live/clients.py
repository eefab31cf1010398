"""Live clients: Jepsen's workers over ``raftlib.client``, recording what they see honestly.

Each worker owns one ``KvClient`` (one exactly-once session: a write that timed out is retried
with the same sequence number, so it applies at most once) and runs one operation at a time:

- ``ok``: the service answered;
- ``fail``: a definite refusal (``Unavailable``: every attempt was refused before it could
  enter a log, so nothing was applied; ``CommandError``: the service rejected the command
  itself). ``raftlib.client`` only says ``Unavailable`` when no attempt's request was ever
  handed to a connection without a definite refusal coming back, so a write cut short by a
  deadline while in flight is never ``fail``. Each such write is kept in ``refused`` (its
  session and seq), for the check that none of them is in a committed log;
- ``info``: ``OutcomeUnknown``, a timeout or any other surprise on a write: it may have been
  applied or may still be. As in Jepsen, that process id is retired and the worker continues
  as a new process (same session: a later sequence number makes a stale retry of the unknown
  write refused, never applied).

A read changes nothing, so a read without an answer is recorded ``fail`` (it did not take
effect), as the simulator's clients and Jepsen's do for idempotent reads.

Values on the wire: register and kv values are decimal strings; an append adds ``"<n>,"`` to the
key's string, and a read of it is parsed back into the list of elements. A key never written
reads as the model's initial value (``ABSENT``); a value that does not parse is recorded as the
raw text, so lincheck flags it rather than the harness hiding it. The counter is INCRBY/GET on
the key ``counter``, the set SADD/SMEMBERS on ``set`` (a read is the sorted elements), the
queues RPUSH/LPOP on ``q<n>`` (a dequeue of an empty queue is nil).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from harness.history import HistoryRecorder
from harness.workloads import OpSpec, Workload
from raftlib.client import ClientError, CommandError, KvClient, OutcomeUnknown, Unavailable
from raftlib.kv.commands import Append, Cas, Incr, LPop, Op, RPush, SAdd, Set

# What a never-written key reads as, per workload; the lincheck model starts there too.
# raftlib's CAS never matches an absent key, so the kv model's initial value must be one no
# cas expects ("" is lincheck's kv default); the register's is nil, the append list's [].
ABSENT: dict[str, Any] = {"register": None, "kv": "", "append": [], "counter": 0, "set": [],
                          "queue": None}
MODEL_INITIAL: dict[str, Any] = {"register": None, "kv": None, "append": [], "counter": 0,
                                 "set": [], "queue": None}
# Attempts one operation may make (redirects, retries) inside its timeout.
ATTEMPTS_MAX = 50
# Beyond the client's own timeouts (one for opening the session, one for the call), the
# worker's hard bound on an operation.
GUARD_SLACK_SECONDS = 1.0


@attrs.frozen
class Acked:
    """A write acknowledged to a client, as the durability check finds it in a log."""

    session: int
    seq: int
    op: Op
    process: int
    f: str


def key_bytes(workload: str, key: Any) -> bytes:
    if workload in ("register", "counter", "set"):
        return workload.encode()
    return f"{workload[0]}{key}".encode()


def decode_members(raw: list[bytes]) -> Any:
    try:
        return sorted(int(member) for member in raw)
    except ValueError:
        return [member.decode("utf-8", "replace") for member in raw]


def decode_read(workload: str, raw: bytes | None) -> Any:
    if raw is None:
        return ABSENT[workload]
    text = raw.decode("utf-8", "replace")
    try:
        if workload == "append":
            return [int(part) for part in text.split(",") if part]
        return int(text)
    except ValueError:
        return text


class LiveClient:
    def __init__(
        self,
        *,
        addresses: list[str],
        workload: str,
        history: HistoryRecorder,
        new_process: Callable[[], int],
        request_timeout: float,
        rng: random.Random,
    ) -> None:
        self._workload = workload
        self._history = history
        self._new_process = new_process
        self._timeout = request_timeout
        # Start at a random node so the workers do not all knock on node 1 first.
        start = rng.randrange(len(addresses))
        self.kv = KvClient(
            addresses[start:] + addresses[:start],
            request_timeout_seconds=max(request_timeout / 2, 0.05),
            op_timeout_seconds=request_timeout,
            attempts_max=ATTEMPTS_MAX,
        )
        self.process = new_process()
        self.acked: list[Acked] = []
        # Writes recorded ``fail`` as Unavailable after their (session, seq) was numbered.
        self.refused: list[Acked] = []
        self.busy = False

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.kv.aclose()

    async def execute(self, spec: OpSpec) -> str:
        """Invoke ``spec``, wait for its outcome, record both; the outcome type."""
        self.busy = True
        process = self.process
        self._history.invoke(process, spec)
        outcome, output = "info", spec.value
        try:
            with trio.move_on_after(2 * self._timeout + GUARD_SLACK_SECONDS):
                outcome, output = await self._call(spec, process)
        finally:
            if outcome == "info" and not spec.is_write:
                outcome = "fail"  # a read takes no effect: see the module docstring
            self._history.complete(process, spec, outcome, output)
            if outcome == "info":
                self.process = self._new_process()
            self.busy = False
        return outcome

    async def _call(self, spec: OpSpec, process: int) -> tuple[str, Any]:
        kv = self.kv
        key = key_bytes(self._workload, spec.key)
        op: Op | None = None
        try:
            if spec.f in ("read", "get"):
                if self._workload == "set":
                    return "ok", decode_members(await kv.smembers(key))
                return "ok", decode_read(self._workload, await kv.get(key))
            if spec.f == "add" and self._workload == "counter":
                op = Incr(key, spec.value)
                await kv.incr(key, spec.value)
                output: Any = spec.value
            elif spec.f == "add" and self._workload == "set":
                op = SAdd(key, (str(spec.value).encode(),))
                await kv.sadd(key, *op.members)
                output = spec.value
            elif spec.f == "enqueue":
                op = RPush(key, (str(spec.value).encode(),))
                await kv.rpush(key, *op.values)
                output = spec.value
            elif spec.f == "dequeue":
                op = LPop(key)
                output = decode_read(self._workload, await kv.lpop(key))
            elif spec.f in ("write", "put"):
                op = Set(key, str(spec.value).encode())
                await kv.set(op.key, op.value)
                output = spec.value
            elif spec.f == "cas":
                expected, new = spec.value
                if expected is None and ABSENT[self._workload] is None:
                    # A cas from the register's initial nil: from "absent", which only SETNX
                    # can ask for (CAS never matches an absent key).
                    op = Cas(key, None, str(new).encode())
                    output = await kv.setnx(op.key, op.new)
                else:
                    op = Cas(key, str(expected).encode(), str(new).encode())
                    assert op.expected is not None
                    output = await kv.cas(op.key, op.expected, op.new)
            elif spec.f == "append":
                op = Append(key, f"{spec.value},".encode())
                await kv.append(op.key, op.value)
                output = spec.value
            else:
                raise AssertionError(f"the live backend has no operation {spec.f!r}")
        except Unavailable:
            if op is not None and kv.session is not None and kv.seq > 0:
                self.refused.append(Acked(kv.session, kv.seq, op, process, spec.f))
            return "fail", spec.value
        except CommandError:
            return "fail", spec.value
        except (OutcomeUnknown, ClientError, OSError, trio.TooSlowError):
            return "info", spec.value
        if kv.session is None:
            raise AssertionError("an acknowledged write without a session")
        self.acked.append(Acked(kv.session, kv.seq, op, process, spec.f))
        return "ok", output


class Worker(Protocol):
    """What ``run_worker`` drives: raftlib's ``LiveClient`` or a target's ``RecordingClient``."""

    async def execute(self, spec: OpSpec) -> str: ...


async def run_worker(
    client: Worker, workload: Workload, rng: random.Random, think_mean: float,
    clock: Callable[[], float], time_limit: float,
) -> None:
    """Invoke operations at the run's rate until ``time_limit`` (seconds of the run)."""
    while clock() < time_limit:
        await trio.sleep(rng.random() * 2 * think_mean)
        if clock() >= time_limit:
            return
        await client.execute(workload.next_op())
