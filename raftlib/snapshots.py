"""Snapshots beside the driver: when to take one, and how one travels between drivers.

The core knows a snapshot only by its ``SnapshotMeta``; the bytes never pass through it. A
leader's core emits ``InstallSnapshot`` for a follower it can no longer feed from its log; the
leader's driver turns that into a ``SnapshotSender`` that streams the current snapshot file as
``SnapshotChunk``s (each with its own CRC-32C), at most ``chunks_inflight_max`` unacknowledged,
resending from the last acknowledged byte when acknowledgements stop. The follower's
``SnapshotReceiver`` writes the chunks, in order, into a ``SnapshotWriter`` of its storage and,
once the whole payload is there, hands the core the ``InstallSnapshot``; the file is committed
(made durable and current) only with the Ready in which the core accepts it, so a half-received
snapshot is never applied and a restarted transfer starts from a clean file.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs
import crc32c

from raftlib.core.types import (
    NodeId,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
)
from raftlib.errors import ConfigError, CorruptSnapshot
from raftlib.storage.base import SnapshotReader, SnapshotWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


def _at_least(minimum: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(
                f"SnapshotPolicy.{attribute.name} must be an int >= {minimum}, got {value!r}"
            )

    return check


def _ratio(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0 <= value <= STATE_RATIO_MAX):
        raise ConfigError(
            f"SnapshotPolicy.{attribute.name} must be a number in 0..{STATE_RATIO_MAX:g},"
            f" got {value!r}"
        )


# A larger ratio would let the log grow past the state many times over; ``bytes`` bounds it
# anyway, but a ratio this high is a typo more likely than a wish.
STATE_RATIO_MAX = 100.0


@attrs.frozen
class SnapshotPolicy:
    """When a node snapshots its state machine and compacts its log, and how snapshots travel.

    A snapshot is taken once ``bytes`` bytes of commands were applied since the last one, or
    once ``entries`` entries were, provided those commands add up to ``state_ratio`` times the
    last snapshot's size at least (0 turns a trigger off; ``entries`` and ``bytes`` both 0:
    never). After it, the log keeps the ``trailing_entries`` entries before the snapshot's
    index, so a follower slightly behind still gets entries rather than the whole snapshot
    (hashicorp/raft's TrailingLogs).

    Why the ratio: a snapshot rewrites the whole state, so taking one every ``entries``
    commands costs each command a share of the state's size; with a large state that share
    is most of what a write costs (a 100,000-key store snapshotted every 10,000 SETs: a tenth
    of the leader's CPU per SET). Waiting until the log since the last snapshot is as large as
    ``state_ratio`` times the snapshot keeps that cost per byte written constant whatever the
    state's size, as Redis's ``auto-aof-rewrite-percentage`` does; the log then holds at most
    about that much besides the snapshot, and ``bytes`` still bounds it (in memory and on
    disk) whatever the state's size.
    """

    entries: int = attrs.field(default=10_000, validator=_at_least(0))
    bytes: int = attrs.field(default=64 << 20, validator=_at_least(0))
    # Commands since the last snapshot, over its size, before ``entries`` may trigger one.
    state_ratio: float = attrs.field(default=1.0, validator=_ratio)
    trailing_entries: int = attrs.field(default=1024, validator=_at_least(0))
    # One SnapshotChunk's payload; well under the transport's frame limit.
    chunk_bytes: int = attrs.field(default=256 << 10, validator=_at_least(1))
    # Unacknowledged chunks per transfer (flow control): memory and bandwidth it may take.
    chunks_inflight_max: int = attrs.field(default=8, validator=_at_least(1))
    # Ticks without an acknowledgement before the unacknowledged chunks are sent again.
    resend_ticks: int = attrs.field(default=10, validator=_at_least(1))
    # The largest snapshot a follower accepts from a leader.
    receive_bytes_max: int = attrs.field(default=64 << 30, validator=_at_least(1))

    def due(self, entries: int, command_bytes: int, state_bytes: int) -> bool:
        """Whether to snapshot after ``entries`` entries holding ``command_bytes`` bytes of
        commands were applied since the last snapshot, whose payload was ``state_bytes``."""
        if self.bytes > 0 and command_bytes >= self.bytes:
            return True
        return (self.entries > 0 and entries >= self.entries
                and command_bytes >= self.state_ratio * state_bytes)


class SnapshotSource(Protocol):
    """Opens the current durable snapshot (the storage)."""

    def open_snapshot(self) -> SnapshotReader | None: ...


class ReaderFile(io.RawIOBase):
    """A ``SnapshotReader`` as a binary file, for ``StateMachine.restore``."""

    def __init__(self, reader: SnapshotReader) -> None:
        super().__init__()
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._reader.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


class WriterFile(io.RawIOBase):
    """A ``SnapshotWriter`` as a binary file, for ``StateMachine.snapshot``."""

    def __init__(self, writer: SnapshotWriter) -> None:
        super().__init__()
        self._writer = writer
        self.bytes_written = 0  # the payload so far: the snapshot's size once written

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        chunk = bytes(data)
        self._writer.write(chunk)
        self.bytes_written += len(chunk)
        return len(chunk)


class SnapshotSender:
    """Streams the current snapshot to one follower (leader side).

    The reader only goes forward; chunks sent but not yet acknowledged are kept (at most the
    window: ``chunks_inflight_max`` x ``chunk_bytes``), so a resend never reopens the file,
    which a newer snapshot may have replaced meanwhile. A follower that refuses the transfer
    (ack -1) gets a new stream (``restart_needed``)."""

    def __init__(
        self,
        source: SnapshotSource,
        peer: NodeId,
        stream: int,
        policy: SnapshotPolicy,
        *,
        term: int,
    ) -> None:
        self.peer = peer
        self.stream = stream
        # The leader's term the transfer belongs to: its chunks carry it, whatever term the
        # node is in by the time one goes out (a chunk claims leadership in its term).
        self.term = term
        self._policy = policy
        reader = source.open_snapshot()
        if reader is None:
            raise CorruptSnapshot("<storage>", "a follower needs a snapshot and there is none")
        self.meta: SnapshotMeta = reader.meta
        self.size = reader.size
        self._reader: SnapshotReader | None = reader
        self._read_offset = 0  # the reader's position: every byte before it was read
        self._unacked: deque[tuple[int, bytes]] = deque()  # (offset, data) read, not acked
        self.acked = 0  # every byte before it arrived
        self.sent = 0  # the next byte to send
        self._idle_ticks = 0
        # The follower acknowledged the whole payload; an empty payload still takes one chunk.
        self.done = False
        self.restart_needed = False
        self._empty_pending = self.size == 0
        # After a rewind, no other until everything sent before it is acknowledged (TCP's
        # recovery point): the duplicates of one loss each ack a later offset, and a rewind
        # per offset resends the window per chunk (a swarm campaign's message storm).
        self._recover_until = 0

    def chunks(self, term: int, src: NodeId) -> list[SnapshotChunk]:
        """The chunks the window allows now."""
        policy = self._policy
        out: list[SnapshotChunk] = []
        window_end = min(self.size, self.acked + policy.chunks_inflight_max * policy.chunk_bytes)
        while self.sent < window_end or self._empty_pending:
            self._empty_pending = False
            data = self._data_at(self.sent, min(policy.chunk_bytes, self.size - self.sent))
            out.append(SnapshotChunk(term, src, self.peer, self.meta, self.stream, self.sent,
                                     self.size, crc32c.crc32c(data), data))
            self.sent += len(data)
        return out

    def on_ack(self, offset: int) -> None:
        self._idle_ticks = 0
        if offset < 0:
            self.restart_needed = True  # refused (too large, or a bad chunk): a new stream
            return
        if offset >= self.size:
            self.done = True
        if offset > self.acked:
            # Progress: the chunks before ``offset`` arrived, the rest of the window may still
            # be in flight. Rewinding here resent the window on every acknowledgement, and each
            # duplicate brought another acknowledgement: a storm once a snapshot spans many
            # windows (a swarm campaign with 16-byte chunks found it).
            self.acked = min(offset, self.size)
            unacked = self._unacked
            while unacked and unacked[0][0] + len(unacked[0][1]) <= self.acked:
                unacked.popleft()
        elif offset < self.sent and self.acked >= self._recover_until:
            # No progress: a chunk at ``offset`` was lost (the follower acks what it has in
            # order): go back once; the duplicate acknowledgements the rest of the window
            # brings do not rewind again (each would resend the window: a storm), the resend
            # timer does.
            self._recover_until = self.sent
            self.sent = max(self.acked, offset)

    def tick(self) -> bool:
        """Returns True when unacknowledged chunks should be sent again."""
        self._idle_ticks += 1
        if self._idle_ticks >= self._policy.resend_ticks and not self.done:
            self._idle_ticks = 0
            self._recover_until = 0
            self.sent = self.acked
            self._empty_pending = self.size == 0
            return True
        return False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._unacked.clear()

    def _data_at(self, offset: int, length: int) -> bytes:
        if offset < self._read_offset:
            # A resend: the bytes are still held (acked <= offset, within the window).
            for start, data in self._unacked:
                if start == offset:
                    return data
            raise AssertionError(f"chunk at {offset} is neither held nor ahead of the reader")
        reader = self._reader
        if reader is None or offset != self._read_offset:
            raise AssertionError(f"read at {offset}, reader at {self._read_offset}")
        parts: list[bytes] = []
        remaining = length
        while remaining > 0:
            data = reader.read(remaining)
            if not data:
                raise CorruptSnapshot("<storage>", f"snapshot ends before byte {offset + length}")
            parts.append(data)
            remaining -= len(data)
        chunk = b"".join(parts)
        self._read_offset += length
        self._unacked.append((offset, chunk))
        return chunk


@attrs.define
class _Incoming:
    src: NodeId
    term: int
    stream: int
    meta: SnapshotMeta
    size: int
    writer: SnapshotWriter
    offset: int = 0


class SnapshotReceiver:
    """Collects one snapshot transfer at a time into a storage writer (follower side)."""

    def __init__(self, create: Callable[[SnapshotMeta], SnapshotWriter],
                 policy: SnapshotPolicy) -> None:
        self._create = create
        self._policy = policy
        self._incoming: _Incoming | None = None
        self.refused = 0  # chunks refused (bad checksum, too large)

    def on_chunk(self, chunk: SnapshotChunk) -> tuple[SnapshotChunkAck, _Incoming | None]:
        """Take a chunk; returns the acknowledgement to send and, once the payload is whole,
        the transfer (its writer not yet committed: the caller hands it to the core)."""
        incoming = self._incoming
        # A transfer is one stream of one leader in one term (a restarted leader counts its
        # streams from 1 again, but leads in a newer term) of one snapshot.
        key = (chunk.src, chunk.term, chunk.stream, chunk.meta, chunk.size)
        if incoming is None or (
            incoming.src, incoming.term, incoming.stream, incoming.meta, incoming.size
        ) != key:
            if chunk.offset != 0:
                # A transfer we never saw the start of: the sender must start over.
                return self._ack(chunk, -1), None
            if chunk.size > self._policy.receive_bytes_max:
                self.refused += 1
                return self._ack(chunk, -1), None
            self.abort()
            incoming = self._incoming = _Incoming(
                chunk.src, chunk.term, chunk.stream, chunk.meta, chunk.size,
                self._create(chunk.meta),
            )
        if chunk.offset != incoming.offset:
            return self._ack(chunk, incoming.offset), None
        if crc32c.crc32c(chunk.data) != chunk.crc:
            self.refused += 1
            return self._ack(chunk, incoming.offset), None
        if chunk.data:
            incoming.writer.write(chunk.data)
            incoming.offset += len(chunk.data)
        if incoming.offset < incoming.size:
            return self._ack(chunk, incoming.offset), None
        self._incoming = None
        return self._ack(chunk, incoming.size), incoming

    def abort(self) -> None:
        if self._incoming is not None:
            self._incoming.writer.abort()
            self._incoming = None

    @staticmethod
    def _ack(chunk: SnapshotChunk, offset: int) -> SnapshotChunkAck:
        return SnapshotChunkAck(chunk.term, chunk.dst, chunk.src, chunk.stream, offset)
