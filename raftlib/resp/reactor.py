"""One event loop for the plain TCP connections of a ``RespServer``, as Redis has one.

A task per connection that waits for its socket, then for its batch's result, pays Trio's
scheduling twice per request (a wake-up, a trap, an ``epoll_ctl`` re-arm, a read that finds
nothing) and that was most of what a request cost the leader under ``redis-benchmark -c 50``.
Here one task (``Reactor.run``) watches every connection's socket in one edge-triggered
``epoll`` set, registered once per connection, reads what arrived, and starts each complete
batch through the handler's ``begin`` (``BeginBatch``): a batch either is answered at once
(PING, errors) or gives a ``PendingBatch`` that calls ``wake`` when it can go on (its writes
applied, its read barrier passed), and the loop then sends its replies. A request costs a read,
a parse, the handler's work and a write; the loop yields to Trio once per round of events.

What the task-per-connection path guarantees holds here too (``raftlib.resp.server``'s
docstring): the commands of a connection are answered in order, one batch in flight per
connection; a connection whose client does not read its replies stops being read until they
are written (``EPOLLOUT``); a connection never reads more than its parser may hold, and the
parsers' total is kept in ``ServerStatistics.parser_bytes_held``; a client that always has
commands ready is served at most ``BATCHES_WITHOUT_YIELD_MAX`` batches or
``COMMANDS_WITHOUT_YIELD_MAX`` commands per round; protocol errors, QUIT and idle timeouts close
only that connection; a handler that raises closes only that connection (``handler_errors``).

Each connection keeps its task from ``trio.serve_listeners``, parked (``Reactor.serve``) until
the loop is done with it: the accept loop, the connection limit and closing the socket stay
where they were, and cancelling the server cancels those tasks as before.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
from collections.abc import Callable
from typing import Protocol

import trio

from raftlib.resp.limits import BatchHandler, ServerLimits, ServerStatistics
from raftlib.resp.protocol import ErrorReply, Reply, RespParser, encode_into

log = logging.getLogger("raftlib.resp")

# Events taken from the epoll set per round (a round ends with a yield to the other tasks).
EVENTS_PER_ROUND_MAX = 1024
# A connection whose client always has commands ready (and commands like PING never wait for
# the log) is served at most this many batches, or this many commands, whichever comes first,
# before the others' turn: a flood of PINGs cannot hold the loop (and the raft loop's ticks)
# for more than about a hundred commands' time, and an unpipelined client pays one extra round
# per few commands at most (its next command is usually there already). The task-per-
# connection path (``raftlib.resp.server``) yields by the same limits.
BATCHES_WITHOUT_YIELD_MAX = 4
COMMANDS_WITHOUT_YIELD_MAX = 128

# What ``take_commands`` gives for an empty parser (never mutated: a batch is a new list).
_NONE_TAKEN: tuple[list[list[bytes]], ErrorReply | None] = ([], None)

_READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class PendingBatch(Protocol):
    """A batch of commands still running (writes waiting for their commit, reads for their
    barrier). Its ``wake`` (given to ``BeginBatch``) is called, from any task, once it may go
    on; the loop then calls ``advance``."""

    def advance(self) -> list[Reply] | None:
        """The replies, in order, once every command is answered; None while it waits (it
        calls ``wake`` again when it may go on). Runs in the loop's task."""
        ...


# Starts a batch: its replies now, or a PendingBatch that calls ``wake`` when it may advance,
# or None: the loop runs the server's async batch handler for it in a task (an operator's
# command, say: rare enough that a task per batch costs nothing that matters).
BeginBatch = Callable[
    [list[list[bytes]], Callable[[], None]], "list[Reply] | PendingBatch | None"]


class _TaskBatch:
    """A batch the async handler answers, in a task of the loop's nursery."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._replies: list[Reply] | None = None
        self._error: Exception | None = None

    async def run(self, batch: BatchHandler, commands: list[list[bytes]]) -> None:
        # Only an Exception is the connection's (handler_errors when advanced); cancellation
        # (the server stopping) ends this task as it is, never inside the loop's task.
        try:
            self._replies = await batch(commands)
        except Exception as exc:
            self._error = exc
        self._wake()

    def advance(self) -> list[Reply] | None:
        if self._error is not None:
            raise self._error
        return self._replies


class Server(Protocol):
    """What the loop uses of its ``RespServer``."""

    limits: ServerLimits
    stats: ServerStatistics

    @property
    def batch_handler(self) -> BatchHandler: ...

    def take_commands(
        self, parser: RespParser, data: bytes | bytearray,
    ) -> tuple[list[list[bytes]], ErrorReply | None]: ...


class _Conn:
    """One connection's state in the loop."""

    __slots__ = (
        "closed", "closing", "done", "fd", "held", "idle_since", "out", "parser", "pending",
        "readable", "round", "tail", "wake", "want_write",
    )

    def __init__(self, fd: int, parser: RespParser, now: float,
                 wake: Callable[[_Conn], None]) -> None:
        self.fd = fd
        # What its pending batches call when they may go on (built once, not per batch).
        self.wake: Callable[[], None] = functools.partial(wake, self)
        self.parser = parser
        self.held = 0  # what its parser holds, as counted in parser_bytes_held
        self.out = bytearray()  # replies not yet written
        self.pending: PendingBatch | None = None
        self.readable = True  # edge-triggered: the socket may hold bytes not read yet
        self.round = 0  # the loop's round that served it last
        self.want_write = False  # EPOLLOUT registered: waiting for room to write ``out``
        self.tail = b""  # sent after the pending batch's replies (QUIT's +OK, an error)
        self.closing = False  # close once ``out`` is written (QUIT, a protocol error)
        self.closed = False
        self.done = trio.Event()  # set when the loop is done with it: its task may close it
        # Trio time it began to wait for its client (None while a batch or replies are in
        # flight): what the idle sweep looks at.
        self.idle_since: float | None = now


class Reactor:
    """The loop; ``run`` must be running (``RespServer.serve`` starts it) while connections
    are served through ``serve``."""

    def __init__(self, server: Server, begin: BeginBatch) -> None:
        self._server = server
        self._begin = begin
        self._epoll = select.epoll()
        # Written by ``wake`` (from any task) to end the loop's wait: pending batches may go on.
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakeup, select.EPOLLIN)
        self._signalled = False
        self._conns: dict[int, _Conn] = {}
        self._ready: list[_Conn] = []  # connections whose batch may advance, or that yielded
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._round = 0
        # Trio time the current round began: when a connection served in it began to wait for
        # its client (the idle sweep needs no finer clock than a round).
        self._now = trio.current_time()

    # --- connections --------------------------------------------------------------------------

    async def serve(self, stream: trio.SocketStream) -> None:
        """Serve ``stream`` from the loop; returns when the loop closed it (the caller closes
        the socket)."""
        fd = stream.socket.fileno()
        conn = _Conn(fd, RespParser(self._server.limits.protocol), trio.current_time(),
                     self._mark_ready)
        self._conns[fd] = conn
        self._epoll.register(fd, _READ_EVENTS | select.EPOLLET)
        self._mark_ready(conn)  # bytes may have arrived before the registration
        try:
            await conn.done.wait()
        finally:
            self._drop(conn)

    def close_idle(self, now: float, idle_seconds: float) -> None:
        """Close the connections that waited for their client ``idle_seconds`` or longer."""
        for conn in list(self._conns.values()):
            since = conn.idle_since
            if since is not None and now - since >= idle_seconds and not conn.closed:
                self._server.stats.idle_closed += 1
                self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._server.stats.parser_bytes_held -= conn.held
        conn.held = 0
        if self._conns.get(conn.fd) is conn:
            del self._conns[conn.fd]
            if not self._closed:
                # (Already gone if its socket was closed first.)
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(conn.fd)
        conn.done.set()

    # --- the loop -----------------------------------------------------------------------------

    def _mark_ready(self, conn: _Conn) -> None:
        self._ready.append(conn)
        if not self._signalled and not self._closed:
            self._signalled = True
            os.eventfd_write(self._wakeup, 1)

    async def run(self) -> None:
        epoll = self._epoll
        wakeup = self._wakeup
        conns = self._conns
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._loop()
        finally:
            self._closed = True
            for conn in list(conns.values()):
                self._drop(conn)
            trio.lowlevel.notify_closing(epoll.fileno())
            epoll.close()
            os.close(wakeup)

    async def _loop(self) -> None:
        epoll = self._epoll
        wakeup = self._wakeup
        conns = self._conns
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            # One round: each connection is served once at most (what was marked ready during
            # the round waits for the next, after the other tasks had their turn). The wake-up
            # is consumed before anything is served: a connection marked ready during the
            # round (it yielded, or was served already) must signal again, or it would wait
            # for an unrelated event (had the eventfd been read later in the round, its mark
            # would have found the signal still set and been lost).
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(wakeup)
            self._signalled = False
            self._round += 1
            self._now = trio.current_time()
            ready, self._ready = self._ready, []
            for fd, events in epoll.poll(0, EVENTS_PER_ROUND_MAX):
                if fd == wakeup:
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                if events & _READ_EVENTS:
                    conn.readable = True
                self._service(conn)
            for conn in ready:
                self._service(conn)

    def _service(self, conn: _Conn) -> None:
        """Move ``conn`` on as far as it goes without waiting."""
        if conn.closed:
            return
        if conn.round == self._round:
            self._mark_ready(conn)  # served this round already: the next one
            return
        conn.round = self._round
        try:
            self._step(conn)
        except (OSError, trio.ClosedResourceError):
            self._drop(conn)  # the peer went away; nothing to answer
        except Exception:
            # As in the task path: a command's handling raised, a bug; this client's connection
            # ends, whose framing is unknown now, and the server goes on.
            self._server.stats.handler_errors += 1
            log.exception("closing a RESP connection: handling a command raised")
            self._drop(conn)

    def _step(self, conn: _Conn) -> None:
        server = self._server
        stats = server.stats
        limits = server.limits
        batches = commands_run = 0
        while True:
            if conn.out and not self._flush(conn):
                return  # the client reads slowly: EPOLLOUT brings it back
            if conn.pending is not None:
                replies = conn.pending.advance()
                if replies is None:
                    return  # its wake brings it back
                conn.pending = None
                self._encode(conn, replies)
                continue
            if conn.closing:
                self._drop(conn)
                return
            if batches >= BATCHES_WITHOUT_YIELD_MAX or commands_run >= COMMANDS_WITHOUT_YIELD_MAX:
                self._mark_ready(conn)  # others' turn: this one goes on next round
                return
            # Complete commands still in the parser first (a full batch left some), then read.
            # (An empty parser has none: the usual case, one command per read, skips the call.)
            if conn.parser.buffered_bytes:
                commands, error = server.take_commands(conn.parser, b"")
            else:
                commands, error = _NONE_TAKEN
            if not commands and error is None:
                if not conn.readable:
                    conn.idle_since = self._now
                    return
                room = min(limits.receive_bytes_max, conn.parser.room_bytes())
                assert room >= 1, "the parser was drained, so one item never fills it"
                try:
                    data = os.read(conn.fd, room)
                except BlockingIOError:
                    conn.readable = False
                    conn.idle_since = self._now
                    return
                if not data:
                    self._drop(conn)  # the client closed
                    return
                if len(data) < room:
                    conn.readable = False  # drained: the next bytes bring a new edge
                commands, error = server.take_commands(conn.parser, data)
            conn.idle_since = None
            now_held = conn.parser.held_bytes
            stats.parser_bytes_held += now_held - conn.held
            conn.held = now_held
            if error is None and now_held and (
                    stats.parser_bytes_held > limits.parser_bytes_total_max):
                stats.budget_closed += 1
                error = ErrorReply(
                    f"ERR unfinished commands hold {stats.parser_bytes_held} bytes on this "
                    f"server (parser_bytes_total_max is {limits.parser_bytes_total_max})"
                    "; closing this connection")
            if commands and commands[-1][0].upper() == b"QUIT":
                commands.pop()
                stats.commands += 1
                conn.tail = b"+OK\r\n"
                conn.closing = True
            elif error is not None:
                tail = bytearray()
                encode_into(tail, error)
                conn.tail = bytes(tail)
                conn.closing = True
            if commands:
                stats.commands += len(commands)
                stats.batches += 1
                batches += 1
                commands_run += len(commands)
                wake = conn.wake
                started = self._begin(commands, wake)
                if started is None:
                    task = _TaskBatch(wake)
                    assert self._nursery is not None, "run() starts the nursery first"
                    self._nursery.start_soon(task.run, self._server.batch_handler, commands)
                    conn.pending = task
                    return  # its wake brings it back
                if isinstance(started, list):
                    self._encode(conn, started)
                else:
                    conn.pending = started
                    return  # (begin answered what it could) its wake brings it back
            elif conn.tail:
                self._encode(conn, [])
            # On: write what is owed, then a full batch's leftovers or the next read.

    def _encode(self, conn: _Conn, replies: list[Reply]) -> None:
        """Queue a batch's replies, then the tail that follows them (QUIT's +OK, an error)."""
        out = conn.out
        for reply in replies:
            encode_into(out, reply)
        if conn.tail:
            out += conn.tail
            conn.tail = b""

    def _flush(self, conn: _Conn) -> bool:
        """Write what ``conn`` owes; False while some is left (then EPOLLOUT is on)."""
        out = conn.out
        try:
            written = os.write(conn.fd, out)
        except BlockingIOError:
            written = 0
        del out[:written]
        if not out:
            if conn.want_write:
                conn.want_write = False
                self._epoll.modify(conn.fd, _READ_EVENTS | select.EPOLLET)
            return True
        if not conn.want_write:
            conn.want_write = True
            self._epoll.modify(conn.fd, _READ_EVENTS | select.EPOLLOUT | select.EPOLLET)
        return False
