"""One ReadIndex round for the reads of many connections that arrive together.

    batcher = ReadBatcher(node.read_barrier, timeout_seconds=2.0)
    nursery.start_soon(batcher.run)
    index = await batcher.wait_barrier()   # instead of node.read_barrier()

Reads that arrive while a barrier is in flight wait for the *next* one, never the current: a
barrier started before a read arrived may predate a write acknowledged before the read, and
serving the read from it would not be linearizable (thesis §6.4 needs the leader's heartbeat
round to begin after the read arrives). So at most one barrier is in flight, and each barrier
answers every read that arrived while the previous one ran: under load, one heartbeat round
per batch of reads, not per read; idle, a read costs one round as before.

One task (``run``) calls the barrier, so a reader that gives up (its own deadline) never cancels
the round the others wait on. Waiting readers are bounded by the callers (each is a request
the RESP server already admitted); a group holds no more than an event and a result.

Deadline: with ``timeout_seconds``, a group's round must end within that time of its first
reader's arrival, or every reader of the group gets ``trio.TooSlowError``: one deadline per
round (kept by ``run``), so a reader needs no cancel scope of its own. A reader never waits
longer than ``timeout_seconds``: the round before its own ends by that round's earlier deadline.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import attrs
import trio


@attrs.define
class ReadGroup:
    """The readers that will share one barrier: it starts after the last of them arrived."""

    done: trio.Event = attrs.field(factory=trio.Event)
    index: int = -1
    error: Exception | None = None
    readers: int = 0
    deadline: float = math.inf  # when the round must have ended (trio time)
    # Readers that do not wait in a task (``join``): called once the result is in.
    callbacks: list[Callable[[], None]] = attrs.field(factory=list)

    def result(self) -> int:
        """The read index, or the round's error raised (only once ``done``)."""
        assert self.done.is_set(), "result() of a round still running"
        if self.error is not None:
            # Every reader of the group raises the same error; a fresh traceback each time,
            # so raises do not pile up on one object.
            raise self.error.with_traceback(None)
        assert self.index >= 0, "a group is done only once it has a result"
        return self.index


@attrs.define
class ReadBatcherStatistics:
    barriers: int = 0  # rounds run
    reads: int = 0  # readers served (reads / barriers: how many shared a round)


class ReadBatcher:
    """Shares one call of ``barrier`` among the readers that arrived before it started."""

    def __init__(
        self, barrier: Callable[[], Awaitable[int]], *, timeout_seconds: float | None = None,
    ) -> None:
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ValueError(f"ReadBatcher timeout_seconds must be > 0, got {timeout_seconds!r}")
        self._barrier = barrier
        self.timeout_seconds = timeout_seconds
        self._next = ReadGroup()  # open: readers join it until the runner takes it
        self._wake = trio.Event()  # set when the open group gets its first reader
        self.stats = ReadBatcherStatistics()

    async def wait_barrier(self) -> int:
        """Wait for a barrier that started after this call; its read index, or its error."""
        group = self._enter()
        await group.done.wait()
        return group.result()

    def join(self, on_done: Callable[[], None]) -> ReadGroup:
        """``wait_barrier`` for a caller that cannot wait (an event loop serving many
        connections): the group whose ``result()`` answers once ``on_done`` was called (from
        ``run``'s task: it must only note that, never raise)."""
        group = self._enter()
        group.callbacks.append(on_done)
        return group

    def _enter(self) -> ReadGroup:
        group = self._next
        group.readers += 1
        if group.readers == 1:
            if self.timeout_seconds is not None:
                group.deadline = trio.current_time() + self.timeout_seconds
            self._wake.set()
        return group

    async def run(self) -> None:
        """Run barriers for as long as readers come; cancel to stop (waiting readers are then
        left to their own deadlines)."""
        while True:
            await self._wake.wait()
            # One more pass of the scheduler before the round starts: the readers whose
            # requests arrived with the first one's (the same poll of the sockets) join it
            # rather than wait for the next round.
            await trio.lowlevel.checkpoint()
            self._wake = trio.Event()
            group, self._next = self._next, ReadGroup()
            assert group.readers > 0, "woken only by a group's first reader"
            try:
                with trio.move_on_at(group.deadline):
                    group.index = await self._barrier()
                if group.index < 0:
                    group.error = trio.TooSlowError(
                        f"read not confirmed within {self.timeout_seconds:g} s")
            except Exception as exc:  # for the readers to handle (NotLeader, Stopped ...)
                group.error = exc
            self.stats.barriers += 1
            self.stats.reads += group.readers
            group.done.set()
            for on_done in group.callbacks:
                on_done()

    def statistics(self) -> ReadBatcherStatistics:
        return attrs.evolve(self.stats)
