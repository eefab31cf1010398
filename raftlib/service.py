"""The replicated KV service: a Raft node running ``KvStateMachine`` behind a RESP2 port.

What ``raftlib serve --client-port P`` runs. ``KvCommandHandler`` turns one RESP command into
log proposals (writes) or ReadIndex reads, and is also what in-process tests call directly.

Commands (arguments are binary-safe; names are case-insensitive)
----------------------------------------------------------------
``PING [msg]``             ``+PONG`` (or ``msg``).  ``ECHO msg``.
``GET key``                bulk value or nil. A linearizable read (ReadIndex, no log entry);
                           served by ANY node: a follower forwards the ReadIndex to the leader.
``SET key value``          ``+OK``. No options (NX, EX ...) yet: they are refused with ``ERR``.
``DEL key [key ...]``      ``:n`` keys removed.
``APPEND key value``       ``:n`` the new length.
``INCR key`` / ``INCRBY key n`` / ``DECR key``  ``:n`` the new value (signed 64-bit).
``CAS key expected new``   ``:1`` if the value was ``expected`` and is now ``new``, else ``:0``
``SETNX key value``         ``:1`` if the key was absent and now holds ``value``, else ``:0``
                           (an absent key never equals ``expected``).
``SADD key member [member ...]``  ``:n`` members that were not in the set yet.
``SMEMBERS key``           the set's members as an array, sorted bytewise (linearizable read).
``RPUSH key value [value ...]``  ``:n`` the list's new length.
``LPOP key``               the list's head, removed; nil when the list is empty or absent.
                           A key holds a string, a set or a list; a command for another type
                           gets ``-WRONGTYPE`` (SET replaces a key of any type).
``DBSIZE``                 ``:n`` keys (linearizable).
``INFO [section]``         text: ``# Raft`` (node_id, role, term, leader_id,
                           leader_client_address, commit_index, applied_index, last_index)
                           and ``# Keyspace`` (keys, sessions) of this node's view, and
                           ``# Metrics`` (what ``--metrics-port`` exports: ``raftlib.metrics``).
``SESSION.OPEN``           ``:id`` registers an exactly-once client session (a log entry).
``SESSION.CALL id seq <write command ...>``  runs the write exactly once for (id, seq): number a
                           session's writes 1, 2, 3 ... one at a time and retry a write, on any
                           node, with the SAME seq until it gets a definite answer; a retry of
                           an applied write returns the original reply. ``-SESSIONEXPIRED``: the
                           session was dropped (idle too long or evicted), the write's outcome
                           is unknown; ``-STALESEQ``: seq is older than the last one applied.
``RAFT.MEMBERS``, ``RAFT.ADD``, ``RAFT.PROMOTE``, ``RAFT.REMOVE``, ``RAFT.TRANSFER``,
``RAFT.STATUS``: the operator's commands (membership, leadership, status; ``raftlib.admin``).
``COMMAND``, ``CONFIG GET``, ``SELECT 0``, ``CLIENT ...``: harmless answers so that redis-cli,
redis-benchmark and redis-py start up. ``QUIT`` closes the connection.

Pipelining: the commands of one read from a connection are answered together with the
effects of running them in order (``KvCommandHandler.handle_batch``): consecutive writes are
one log batch, consecutive reads one ReadIndex round (shared with other connections' reads by
``ReadBatcher``), and their replies one send. ``redis-benchmark -P 16`` is the case it serves.

Writes without ``SESSION.CALL`` are applied each time they are committed: a client that retries
one after a timeout may apply it twice. ``raftlib.client`` always uses a session.

Redirects and errors (the first word is the code)
--------------------------------------------------
``-MOVED 0 HOST:PORT``     a write sent to a follower: the leader's client address. The ``0``
                           is the Redis Cluster hash slot field (there is a single slot), so
                           ``redis-cli -c`` and cluster-aware clients follow it. Nothing was
                           applied. Requests are not forwarded (a redirect keeps the follower
                           out of the data path and makes the client's leader cache work).
``-TRYAGAIN ...``          nothing was applied and retrying may succeed: no leader is known
                           (election), the proposal queue is full, or a leader change dropped
                           the proposal.
``-UNKNOWN ...``           the outcome is unknown: the write was proposed but no commit was
                           seen within ``request_timeout_seconds`` or the node stopped. It may
                           still be applied later. Retry within a session to learn the answer.
``-ERR ...``               bad command: unknown name, wrong arity, key or value too large
                           (``key_bytes_max``, ``value_bytes_max``), not an integer.
"""

from __future__ import annotations

import collections
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import attrs
import outcome
import trio

from raftlib.admin import ADMIN_ARITY, Admin
from raftlib.core.types import NodeId, Role
from raftlib.errors import (
    NotLeader,
    ProposalDropped,
    ProposalOutcomeUnknown,
    ProposalQueueFull,
    Stopped,
)
from raftlib.kv.commands import (
    NO_SESSION,
    Append,
    Cas,
    Delete,
    Incr,
    KvError,
    LPop,
    Op,
    OpenSession,
    Request,
    Result,
    RPush,
    SAdd,
    Set,
    encode_command,
)
from raftlib.kv.leader_clock import LeaderClock, LeaderClockNotReady
from raftlib.kv.machine import KvStateMachine
from raftlib.metrics import NodeMetrics, info_lines, samples, serve_metrics
from raftlib.node import Node, NodeConfig, NodeHooks, ProposalGroup, open_node
from raftlib.read_batcher import ReadBatcher, ReadGroup
from raftlib.resp.protocol import OK, ErrorReply, Reply, SimpleString
from raftlib.resp.server import RespServer, ServerLimits, open_tcp_listeners
from raftlib.storage.base import Storage
from raftlib.transport.base import Transport

log = logging.getLogger("raftlib.service")

VERSION: Final = "0.1.0"

_UNKNOWN_TIMEOUT: Final = ErrorReply(
    "UNKNOWN no commit within request_timeout_seconds; the write may still be applied")


@attrs.frozen
class KvServiceConfig:
    key_bytes_max: int = 64 * 1024
    value_bytes_max: int = 1024 * 1024
    # How long a write waits to be committed and applied before answering UNKNOWN (one deadline
    # per batch, kept by the node's ticker: it fires up to one tick late).
    request_timeout_seconds: float = 5.0
    # How long a read waits for its ReadIndex before answering (the node also bounds it); with
    # a ReadBatcher, the batcher's timeout_seconds (serve_kv sets it to this) keeps it.
    read_timeout_seconds: float = 2.0


class _CommandError(Exception):
    """A request this handler refuses before proposing anything (ERR)."""


def _int_arg(raw: bytes, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _CommandError(f"{what} is not an integer") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise _CommandError(f"{what} is out of range")
    return value


WriteBuilder = Callable[[list[bytes]], Op]


def _build_set(a: list[bytes]) -> Op:
    if len(a) != 2:
        raise _CommandError("syntax error (SET options are not supported)")
    return Set(a[0], a[1])


_WRITES: dict[bytes, tuple[int, int | None, WriteBuilder]] = {
    # name: (arguments min, max or None, builder)
    b"SET": (2, None, _build_set),
    b"DEL": (1, None, lambda a: Delete(tuple(a))),
    b"APPEND": (2, 2, lambda a: Append(a[0], a[1])),
    b"INCR": (1, 1, lambda a: Incr(a[0], 1)),
    b"DECR": (1, 1, lambda a: Incr(a[0], -1)),
    b"INCRBY": (2, 2, lambda a: Incr(a[0], _int_arg(a[1], "increment"))),
    b"CAS": (3, 3, lambda a: Cas(a[0], a[1], a[2])),
    # Redis's SETNX: set only if the key is absent (a CAS from "absent", which CAS cannot say).
    b"SETNX": (2, 2, lambda a: Cas(a[0], None, a[1])),
    b"SADD": (2, None, lambda a: SAdd(a[0], tuple(a[1:]))),
    b"RPUSH": (2, None, lambda a: RPush(a[0], tuple(a[1:]))),
    b"LPOP": (1, 1, lambda a: LPop(a[0])),
}


def _reply_of(result: Result) -> Reply:
    if isinstance(result, KvError):
        return ErrorReply(result.text())
    if result is True:
        return OK
    if result is False:
        return 0
    return result


# What one command needs, decided before anything runs; ``handle_batch`` groups them. (Named
# tuples, not frozen attrs classes: one is built per command, and a frozen attrs __init__
# costs about a microsecond, a few percent of a SET's whole cost on the leader.)
class _Write(NamedTuple):
    """A log entry to propose; ``cas``: the reply is ``:1`` / ``:0`` rather than ``+OK``."""

    entry: bytes
    cas: bool = False


class _Read(NamedTuple):
    """A read of the state machine at a linearizable point (after a ReadIndex barrier)."""

    fn: Callable[[], Reply]


class _Local(NamedTuple):
    """An answer that depends on no replicated state (PING, ECHO, CONFIG ...)."""

    reply: Reply


class _InOrder(NamedTuple):
    """Local, but shows this node's state (INFO): runs after every command before it."""

    fn: Callable[[], Reply]


class _Admin(NamedTuple):
    """An operator's command (``raftlib.admin``): awaited in order, like INFO."""

    run: Callable[[], Awaitable[Reply]]


_Step = _Write | _Read | _Local | _InOrder | _Admin
_Planner = Callable[[list[bytes]], _Step]
# Runs of consecutive steps of one kind, each step with its command's position in the batch.
_Runs = collections.deque[tuple[type[_Step], list[tuple[int, Any]]]]


_READ_ERRORS = (trio.TooSlowError, NotLeader, ProposalQueueFull, Stopped)


def _fill(replies: list[Reply], steps: Sequence[tuple[int, object]], reply: Reply) -> None:
    for position, _ in steps:
        replies[position] = reply


class _WritesInFlight:
    """A run of writes proposed for the event loop: done once each has its outcome."""

    def __init__(self, group: ProposalGroup, writes: list[tuple[int, _Write]],
                 started: float | None) -> None:
        self.group = group
        self.writes = writes
        self.started = started

    @property
    def done(self) -> bool:
        return self.group.done

    def finish(self, handler: KvCommandHandler, replies: list[Reply]) -> None:
        handler._writes_done(self.writes, self.group.results(), self.started, replies)


class _ReadsInFlight:
    """A run of reads waiting for the shared ReadIndex round they joined."""

    def __init__(self, group: ReadGroup, reads: list[tuple[int, _Read]]) -> None:
        self.group = group
        self.reads = reads

    @property
    def done(self) -> bool:
        return self.group.done.is_set()

    def finish(self, handler: KvCommandHandler, replies: list[Reply]) -> None:
        try:
            self.group.result()
        except _READ_ERRORS as exc:
            handler._reads_done(self.reads, replies, exc)
            return
        handler._reads_done(self.reads, replies, None)


class _PendingBatch:
    """One connection's batch run for the RESP event loop (``raftlib.resp.reactor``): its runs
    of writes and reads one after another, as ``handle_batch`` awaits them, each started once
    the one before it is done (a read sees the writes before it)."""

    def __init__(
        self, handler: KvCommandHandler, replies: list[Reply],
        runs: _Runs, wake: Callable[[], None],
    ) -> None:
        self._handler = handler
        self._replies = replies
        self._runs = runs
        self._wake = wake
        self._waiting: _WritesInFlight | _ReadsInFlight | None = None

    def advance(self) -> list[Reply] | None:
        handler = self._handler
        replies = self._replies
        while True:
            waiting = self._waiting
            if waiting is not None:
                if not waiting.done:
                    return None
                self._waiting = None
                waiting.finish(handler, replies)
            if not self._runs:
                return replies
            kind, steps = self._runs.popleft()
            if kind is _Write:
                self._waiting = handler._begin_writes(steps, replies, self._wake)
            elif kind is _Read:
                self._waiting = _ReadsInFlight(handler._join_read_round(self._wake), steps)
            else:
                for position, step in steps:
                    replies[position] = step.fn()


class _PendingOne:
    """``_PendingBatch`` for a batch of one write or one read."""

    __slots__ = ("_handler", "_replies", "_waiting")

    def __init__(self, handler: KvCommandHandler, replies: list[Reply],
                 waiting: _WritesInFlight | _ReadsInFlight) -> None:
        self._handler = handler
        self._replies = replies
        self._waiting: _WritesInFlight | _ReadsInFlight | None = waiting

    def advance(self) -> list[Reply] | None:
        waiting = self._waiting
        if waiting is not None:
            if not waiting.done:
                return None
            self._waiting = None
            waiting.finish(self._handler, self._replies)
        return self._replies


class KvCommandHandler:
    """Answers RESP commands for one node. Writes carry the leader time of a ``LeaderClock``
    (session expiry's clock): ``clock`` (the wall clock, seconds) only seeds a new cluster's
    time; ``monotonic`` (seconds; Trio's clock, which times everything else the node does)
    advances it. Simulations pass ``trio.current_time`` as ``clock`` too.

    ``handle_batch`` answers a connection's pipelined commands together, with the effects of
    running them one after another: each run of consecutive writes is one ``propose_batch``
    (one log append, one fsync, one replication round), awaited before anything after it;
    each run of consecutive reads shares one ``read_barrier`` (one ReadIndex heartbeat round),
    issued only after every earlier write was applied, so a read sees the writes before it.
    With a ``read_batcher`` (``serve_kv`` runs one) that round is also shared with the reads of
    other connections that arrived while the previous round ran.
    Commands that touch no replicated state (PING, errors ...) are answered in place.
    """

    def __init__(
        self,
        node: Node,
        machine: KvStateMachine,
        *,
        client_addresses: Mapping[NodeId, str],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = trio.current_time,
        config: KvServiceConfig | None = None,
        read_batcher: ReadBatcher | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.node = node
        self.machine = machine
        self.client_addresses = dict(client_addresses)
        # Finds members' client addresses (those added later too) for redirects.
        self.admin = Admin(node, client_addresses)
        self.metrics = metrics if metrics is not None else NodeMetrics()
        self._leader_clock = LeaderClock(
            lambda: node.term, lambda: machine.sessions.clock_ms,
            lambda: node.applied_every_command, wall=clock, monotonic=monotonic)
        self.config = config or KvServiceConfig()
        # Shares ReadIndex rounds among connections (its ``run`` task must be running) and
        # keeps their deadline (its ``timeout_seconds``, which serve_kv sets to this config's
        # read_timeout_seconds); without one, each batch of reads runs its own round under a
        # cancel scope of read_timeout_seconds.
        self._batcher = read_batcher
        self._read_barrier: Callable[[], Awaitable[int]] = (
            read_batcher.wait_barrier if read_batcher is not None else node.read_barrier)
        self._commands: dict[bytes, tuple[int, int | None, _Planner]] = {
            b"PING": (0, 1, lambda a: _Local(a[0] if a else SimpleString("PONG"))),
            b"ECHO": (1, 1, lambda a: _Local(a[0])),
            b"GET": (1, 1, self._get),
            b"SMEMBERS": (1, 1, self._smembers),
            b"DBSIZE": (0, 0, lambda a: _Read(self.machine.key_count)),
            b"INFO": (0, 1, lambda a: _InOrder(lambda: self.info_text().encode())),
            b"SESSION.OPEN": (0, 0, self._session_open),
            b"SESSION.CALL": (3, None, self._session_call),
            b"COMMAND": (0, None, lambda a: _Local([])),
            b"CONFIG": (1, None, self._config),
            b"SELECT": (1, 1, self._select),
            b"CLIENT": (1, None, lambda a: _Local(OK)),
        }
        for name, (low, high) in ADMIN_ARITY.items():
            self._commands[name] = (low, high, self._admin_step(name))

    def _admin_step(self, name: bytes) -> _Planner:
        return lambda args: _Admin(lambda: self.admin.run(name, args))

    async def handle(self, args: list[bytes]) -> Reply:
        """Answer one command."""
        return (await self.handle_batch([args]))[0]

    async def handle_batch(self, commands: Sequence[list[bytes]]) -> list[Reply]:
        """Answer pipelined commands, one reply each, in order; see the class docstring."""
        replies, runs = self._plan_runs(commands)
        for kind, steps in runs:
            if kind is _Write:
                await self._run_writes(steps, replies)
            elif kind is _Read:
                await self._run_reads(steps, replies)
            elif kind is _Admin:
                for position, step in steps:
                    replies[position] = await step.run()
            else:
                for position, step in steps:
                    replies[position] = step.fn()
        return replies

    def _plan_runs(self, commands: Sequence[list[bytes]]) -> tuple[list[Reply], _Runs]:
        """Plan every command: the replies known at once (local commands, errors), and the
        rest as runs of consecutive steps of one kind, in command order (a write after reads,
        or a read after writes, ends the run before it: effects keep the commands' order)."""
        replies: list[Reply] = [None] * len(commands)
        runs: _Runs = collections.deque()
        for position, args in enumerate(commands):
            step = self._plan_or_refuse(args)
            if isinstance(step, _Local):
                replies[position] = step.reply
                continue
            kind = type(step)
            if runs and runs[-1][0] is kind:
                runs[-1][1].append((position, step))
            else:
                runs.append((kind, [(position, step)]))
        return replies, runs

    def _plan_or_refuse(self, args: list[bytes]) -> _Step:
        """``_plan`` of a command outside a session; a command that cannot run gets its error
        reply as a local step."""
        try:
            return self._plan(args, NO_SESSION, 0)
        except _CommandError as exc:
            return _Local(ErrorReply(f"ERR {exc}"))
        except LeaderClockNotReady:
            return _Local(self._clock_not_ready())

    def _plan(self, args: list[bytes], session: int, seq: int) -> _Step:
        name = args[0].upper()
        rest = args[1:]
        write = _WRITES.get(name)
        if write is not None:
            self._check_arity(name, rest, write[0], write[1])
            self._check_sizes(rest)
            op = write[2](rest)
            entry = encode_command(Request(session, seq, self._now_ms(), op))
            return _Write(entry, cas=isinstance(op, Cas))
        entry_of = self._commands.get(name)
        if entry_of is None:
            shown = args[0][:64].decode("utf-8", "replace")
            raise _CommandError(f"unknown command '{shown}'")
        self._check_arity(name, rest, entry_of[0], entry_of[1])
        if session != NO_SESSION and name not in (b"GET", b"PING", b"ECHO"):
            raise _CommandError(f"SESSION.CALL cannot wrap {name.decode('ascii', 'replace')}")
        return entry_of[2](rest)

    @staticmethod
    def _check_arity(name: bytes, rest: list[bytes], low: int, high: int | None) -> None:
        if len(rest) < low or (high is not None and len(rest) > high):
            raise _CommandError(
                f"wrong number of arguments for '{name.decode('ascii', 'replace').lower()}'"
            )

    def _check_sizes(self, args: list[bytes]) -> None:
        cfg = self.config
        key, values = args[0], args[1:]
        if len(key) > cfg.key_bytes_max:
            raise _CommandError(
                f"key of {len(key)} bytes exceeds key_bytes_max ({cfg.key_bytes_max})"
            )
        for value in values:
            if len(value) > cfg.value_bytes_max:
                raise _CommandError(
                    f"value of {len(value)} bytes exceeds value_bytes_max ({cfg.value_bytes_max})"
                )

    # --- the log path ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self._leader_clock.now_ms()

    def _redirect(self, exc: NotLeader) -> ErrorReply:
        return self.admin.redirect(exc)

    def _clock_not_ready(self) -> ErrorReply:
        """A write this node cannot stamp yet (``LeaderClockNotReady``): a follower's goes to
        the leader, a new leader's waits until it applied the entries before its term."""
        if self.node.role is not Role.LEADER:
            return self._redirect(self.node.not_leader())
        return ErrorReply("TRYAGAIN a new leader is applying its log; nothing was applied")

    def _write_failed(self, exc: BaseException) -> ErrorReply:
        if isinstance(exc, NotLeader):
            return self._redirect(exc)
        if isinstance(exc, ProposalQueueFull):
            return ErrorReply("TRYAGAIN proposal queue full; nothing was applied")
        if isinstance(exc, ProposalDropped):
            return ErrorReply("TRYAGAIN a leader change dropped the proposal; not applied")
        if isinstance(exc, Stopped):
            return ErrorReply("UNKNOWN the node stopped; the write may or may not be applied")
        if isinstance(exc, ProposalOutcomeUnknown):
            return _UNKNOWN_TIMEOUT
        if not isinstance(exc, Exception):
            raise exc  # cancellation (a deadline, the node stopping) is not an answer
        # Anything else (the state machine raised while applying the command, say) is this
        # client's answer, never a reason to stop the node: an error this function did not
        # know once took the whole node down ("entry N was covered by the leader's snapshot").
        log.error("write failed with %r", exc)
        return ErrorReply(f"ERR {type(exc).__name__}: {exc}")

    async def _run_writes(self, writes: list[tuple[int, _Write]], replies: list[Reply]) -> None:
        """Propose a run of writes as one batch under one shared deadline (kept by the node:
        no cancel scope per batch)."""
        started = self.metrics.commit_timer()
        try:
            outcomes = await self.node.propose_batch(
                [w.entry for _, w in writes],
                timeout_seconds=self.config.request_timeout_seconds)
        except (NotLeader, Stopped) as exc:  # nothing entered the log
            _fill(replies, writes, self._write_failed(exc))
            return
        results = [(None, o.error) if isinstance(o, outcome.Error) else (o.unwrap(), None)
                   for o in outcomes]
        self._writes_done(writes, results, started, replies)

    def _writes_done(
        self, writes: list[tuple[int, _Write]], results: Sequence[tuple[Any, BaseException | None]],
        started: float | None, replies: list[Reply],
    ) -> None:
        """Each write's reply from its (value, None) or (None, error) result."""
        assert len(results) == len(writes), "one result per proposed command"
        applied = 0
        for (position, write), (value, error) in zip(writes, results, strict=True):
            if error is not None:
                replies[position] = self._write_failed(error)
                continue
            applied += 1
            reply = _reply_of(value)
            replies[position] = 1 if write.cas and reply == OK else reply
        self.metrics.proposed(len(results), applied, started)

    async def _run_reads(self, reads: list[tuple[int, _Read]], replies: list[Reply]) -> None:
        """One ReadIndex barrier for a run of reads, then serve each at that point."""
        try:
            if self._batcher is not None:
                # The batcher keeps the deadline for all its readers (read_timeout_seconds).
                await self._read_barrier()
            else:
                with trio.fail_after(self.config.read_timeout_seconds):
                    await self._read_barrier()
        except _READ_ERRORS as exc:
            self._reads_done(reads, replies, exc)
            return
        self._reads_done(reads, replies, None)

    def _reads_done(self, reads: list[tuple[int, _Read]], replies: list[Reply],
                    error: Exception | None) -> None:
        """Answer a run of reads once its round is over: each read at that point, or every
        one the round's error."""
        if error is not None:
            _fill(replies, reads, self._read_failed(error))
            return
        for position, read in reads:
            replies[position] = read.fn()

    def _begin_writes(
        self, writes: list[tuple[int, _Write]], replies: list[Reply], wake: Callable[[], None],
    ) -> _WritesInFlight | None:
        started = self.metrics.commit_timer()
        try:
            group = self.node.propose_batch_nowait(
                [w.entry for _, w in writes],
                timeout_seconds=self.config.request_timeout_seconds, on_done=wake)
        except (NotLeader, Stopped, ProposalQueueFull) as exc:  # nothing entered the log
            _fill(replies, writes, self._write_failed(exc))
            return None
        return _WritesInFlight(group, writes, started)

    def _join_read_round(self, wake: Callable[[], None]) -> ReadGroup:
        assert self._batcher is not None, "begin_batch runs only with a read batcher"
        return self._batcher.join(wake)

    def _read_failed(self, exc: Exception) -> ErrorReply:
        if isinstance(exc, trio.TooSlowError):
            return ErrorReply("TRYAGAIN read not confirmed by a leader in time")
        if isinstance(exc, NotLeader):
            return self._redirect(exc)
        if isinstance(exc, ProposalQueueFull):
            return ErrorReply("TRYAGAIN too many reads pending")
        assert isinstance(exc, Stopped), exc
        return ErrorReply("TRYAGAIN the node stopped")

    # --- the event loop's path (raftlib.resp.reactor): the same, without a task -------------

    def begin_batch(
        self, commands: list[list[bytes]], wake: Callable[[], None],
    ) -> list[Reply] | _PendingBatch | _PendingOne | None:
        """What ``handle_batch`` answers, for the RESP server's event loop: the replies now
        when no command needs the log, else a pending batch that runs the same runs of writes
        and reads in the same order and calls ``wake`` whenever it may go on; None (the loop
        then awaits ``handle_batch`` in a task) for an operator's command, or without a read
        batcher."""
        if self._batcher is None:
            return None
        if len(commands) == 1:
            return self._begin_one(commands[0], wake)
        replies, runs = self._plan_runs(commands)
        if not runs:
            return replies
        for kind, _ in runs:
            if kind is _Admin:
                return None
        pending = _PendingBatch(self, replies, runs, wake)
        done = pending.advance()
        return pending if done is None else done

    def _begin_one(
        self, args: list[bytes], wake: Callable[[], None],
    ) -> list[Reply] | _PendingOne | None:
        """``begin_batch`` of a batch of one command (each request of a client that does not
        pipeline): the same steps as ``_plan_runs`` and ``_PendingBatch`` take for it, without
        building runs to order."""
        step = self._plan_or_refuse(args)
        replies: list[Reply] = [None]
        waiting: _WritesInFlight | _ReadsInFlight | None
        if isinstance(step, _Write):
            waiting = self._begin_writes([(0, step)], replies, wake)
            if waiting is None:
                return replies  # refused: nothing entered the log
        elif isinstance(step, _Read):
            waiting = _ReadsInFlight(self._join_read_round(wake), [(0, step)])
        elif isinstance(step, _Local):
            return [step.reply]
        elif isinstance(step, _InOrder):
            return [step.fn()]
        else:
            return None  # an operator's command: the loop awaits handle_batch for it
        return _PendingOne(self, replies, waiting)

    def _session_open(self, args: list[bytes]) -> _Step:
        return _Write(encode_command(OpenSession(self._now_ms())))

    def _session_call(self, args: list[bytes]) -> _Step:
        session = _int_arg(args[0], "session id")
        seq = _int_arg(args[1], "seq")
        if session < 1 or seq < 1:
            raise _CommandError("session id and seq must be >= 1")
        return self._plan(args[2:], session, seq)

    # --- other commands ------------------------------------------------------------------------

    def _get(self, args: list[bytes]) -> _Step:
        key = args[0]

        def get() -> Reply:
            return _reply_of(self.machine.get_string(key))

        return _Read(get)

    def _smembers(self, args: list[bytes]) -> _Step:
        key = args[0]

        def smembers() -> Reply:
            members = self.machine.smembers(key)
            return _reply_of(members) if isinstance(members, KvError) else list(members)

        return _Read(smembers)

    def _config(self, args: list[bytes]) -> _Step:
        # redis-benchmark asks CONFIG GET save / appendonly; there is no such configuration
        # here, so every asked-for parameter is reported with an empty value.
        if args[0].upper() != b"GET":
            raise _CommandError("only CONFIG GET is supported")
        return _Local([item for name in args[1:] for item in (name, b"")])

    def _select(self, args: list[bytes]) -> _Step:
        if args[0] != b"0":
            raise _CommandError("DB index is out of range (only database 0 exists)")
        return _Local(OK)

    def _read_round_lines(self) -> list[str]:
        """How many reads shared each ReadIndex round (rounds are per batch, not per read)."""
        if self._batcher is None:
            return []
        st = self._batcher.statistics()
        return ["# Reads", f"read_rounds:{st.barriers}", f"reads_in_rounds:{st.reads}"]

    def info_text(self) -> str:
        st = self.node.status()
        leader_address = (self.admin.client_address(st.leader) or "") if st.leader else ""
        lines = [
            "# Server",
            f"raftlib_version:{VERSION}",
            "# Raft",
            f"node_id:{st.node_id}",
            f"role:{st.role.name.lower()}",
            f"term:{st.term}",
            f"leader_id:{st.leader}",
            f"leader_client_address:{leader_address}",
            f"commit_index:{st.commit_index}",
            f"applied_index:{st.applied_index}",
            f"last_index:{st.last_index}",
            "# Keyspace",
            f"keys:{self.machine.key_count()}",
            f"sessions:{len(self.machine.sessions)}",
            f"duplicate_requests:{self.machine.sessions.duplicates}",
            *self._read_round_lines(),
            *info_lines([*samples(self.node, self.metrics),
                         *self.metrics.histogram_samples()]),
        ]
        return "\r\n".join(lines) + "\r\n"


async def serve_kv(
    config: NodeConfig,
    *,
    storage: Storage,
    transport: Transport,
    client_port: int,
    client_addresses: Mapping[NodeId, str],
    client_host: str = "127.0.0.1",
    service_config: KvServiceConfig | None = None,
    server_limits: ServerLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
    metrics_port: int | None = None,
    task_status: trio.TaskStatus[KvCommandHandler] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one KV node and its RESP port until cancelled; with ``ssl_context`` (see
    ``raftlib.transport.tls.resp_server_context``) clients must speak TLS. With
    ``metrics_port`` (0: any free port) Prometheus metrics are served on
    ``client_host:metrics_port/metrics`` (``raftlib.metrics``)."""
    machine = KvStateMachine()
    metrics = NodeMetrics(histograms=metrics_port is not None)
    hooks = NodeHooks(on_observation=metrics.observe,
                      on_sync=metrics.sync_took if metrics_port is not None else None)
    async with open_node(config, storage=storage, transport=transport,
                         state_machine=machine, hooks=hooks) as node:
        batcher = ReadBatcher(
            node.read_barrier,
            timeout_seconds=(service_config or KvServiceConfig()).read_timeout_seconds)
        handler = KvCommandHandler(node, machine, client_addresses=client_addresses,
                                   config=service_config, read_batcher=batcher,
                                   metrics=metrics)
        server = RespServer(handler.handle, batch=handler.handle_batch,
                            begin=handler.begin_batch, limits=server_limits)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            if metrics_port is not None:
                # Before the client port: whoever sees the node answer clients (an operator's
                # "ready", a supervisor probing the port) finds its metrics served too.
                port = await nursery.start(serve_metrics, node, metrics, metrics_port,
                                           client_host)
                log.info("node %d: metrics on http://%s:%d/metrics", config.node_id,
                         client_host, port)
            # The client port listens only now, with the node open and its metrics served: a
            # listening socket takes connections into its backlog before anyone accepts them,
            # so listening earlier made a probe of the port (``raftlib cluster``'s "ready")
            # succeed while the node was still opening and the metrics port not yet bound.
            listeners = await open_tcp_listeners(client_port, client_host,
                                                 ssl_context=ssl_context)
            await nursery.start(server.serve, listeners)
            log.info("node %d: RESP%s on %s:%d", config.node_id,
                     " (TLS)" if ssl_context is not None else "", client_host, client_port)
            task_status.started(handler)


async def serve_kv_until_signal(
    config: NodeConfig,
    *,
    storage: Storage,
    transport: Transport,
    client_port: int,
    client_addresses: Mapping[NodeId, str],
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
    service_config: KvServiceConfig | None = None,
    server_limits: ServerLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve_kv(
                config, storage=storage, transport=transport, client_port=client_port,
                client_addresses=client_addresses, service_config=service_config,
                server_limits=server_limits, ssl_context=ssl_context, task_status=task_status))
            async for signum in received:
                log.info("node %d stopping on %s", config.node_id, signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
