"""The wire codec: Raft messages <-> length-prefixed binary frames, and the connection hello.

Frame format (all integers big-endian)::

    +----------------------+-----------+----------------------------------------------+
    | length: u32          | version:u8| msgpack array of messages                    |
    | (bytes that follow)  | (= 1)     | [[tag, field, field, ...], [tag, ...], ...]  |
    +----------------------+-----------+----------------------------------------------+

``length`` counts the version byte and the msgpack body, so ``1 < length <= max_frame_bytes``.
Each message is its ``msgspec`` struct from ``raftlib.core.types`` encoded as a msgpack array
whose first element is the struct's int tag (``array_like`` + ``tag``): a heartbeat is about 10
bytes. One frame carries a BATCH of messages (up to ``frame_messages_max``) so a busy leader
pays one length prefix, one write and one decode call per batch instead of per message.

Decoding is defensive: ``FrameDecoder`` is fed whatever bytes arrived and either returns whole
batches or raises ``CodecError`` with a one-line reason. A length prefix above the limit is
refused as soon as its 4 bytes arrive, before any body is buffered. Decoded messages are then
validated for what can be checked cheaply without Raft state (non-negative numbers, node ids
> 0, contiguous entry indexes, terms that cannot exist), so the core never sees a value no
correct peer could send.

Connection hello (TCP; 40 bytes, sent by each side once, before any frame)::

    magic b"RAFT" | version u8 (= 2) | flags u8 | 2 reserved bytes (sent as 0, ignored) |
    src u64 | dst u64 | cluster_id u64 | data_id u64

The connecting side sends its hello first; the accepting side checks it (magic, version,
cluster id, that ``dst`` is itself and ``src`` a known member, and that ``data_id``, the id of
the sender's data directory (``raftlib.identity``; 0: none), is the one it knows for ``src``)
and answers with its own hello, which the connecting side checks in turn (it reached the node
it meant to, on the data directory it knows). An accepting side that refuses the sender's
data directory answers with flag ``HELLO_REFUSED`` and, as ``data_id``, the id it knows for
the sender (0 when it refuses for another reason: its log says which), then closes: the
refused node can say why in its log. The first ``HELLO_HEAD_BYTES`` (magic, version) are
checked before the rest is read, so a peer of another version is named as such. Version 1
(32 bytes, no ``flags`` or ``data_id``) is no longer spoken: a cluster is upgraded all at once.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgspec

from raftlib.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    Message,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
    TimeoutNow,
)

FRAME_VERSION = 1
FRAME_HEADER_BYTES = 4
# Big enough for an AppendEntries of many large commands, small enough that a hostile length
# prefix cannot make a node buffer more than this per connection.
MAX_FRAME_BYTES_DEFAULT = 16 * 1024 * 1024
FRAME_MESSAGES_MAX_DEFAULT = 4096
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

HELLO_MAGIC = b"RAFT"
HELLO_VERSION = 2
HELLO_REFUSED = 0x01  # flags: the sender's data directory is not the one known for its id
_HELLO = struct.Struct(">4sBB2xQQQQ")
HELLO_BYTES = _HELLO.size
# Magic, version, flags and the reserved bytes: read and checked first, so that a peer of
# another version is told apart from a silent one (an older hello is shorter).
HELLO_HEAD_BYTES = 8


class CodecError(ValueError):
    """Bytes from the wire that are not a valid frame or hello. The message is one line."""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Message])
# Everything msgspec (or the C machinery under it) may raise on hostile input. MemoryError is
# deliberately absent: frames are bounded by max_frame_bytes, so it would signal a real problem.
_DECODE_FAILURES = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
    OverflowError,
    ValueError,
    TypeError,
)


def encode_frame(messages: Sequence[Message]) -> bytes:
    """One frame (length prefix included) carrying ``messages``, in order.

    Raises ``CodecError`` for an empty batch or one whose frame would not fit a u32 length;
    callers that enforce a smaller ``max_frame_bytes`` check ``len(frame)`` themselves (the
    TCP transport splits a batch that is too big).
    """
    if not messages:
        raise CodecError("refusing to encode a frame with no messages")
    buf = bytearray(FRAME_HEADER_BYTES + 1)
    _ENCODER.encode_into(list(messages), buf, FRAME_HEADER_BYTES + 1)
    length = len(buf) - FRAME_HEADER_BYTES
    if length > _U32_MAX:
        raise CodecError(f"frame of {length} bytes does not fit a u32 length prefix")
    buf[0:FRAME_HEADER_BYTES] = length.to_bytes(FRAME_HEADER_BYTES, "big")
    buf[FRAME_HEADER_BYTES] = FRAME_VERSION
    return bytes(buf)


class FrameDecoder:
    """Incremental frame parser for one connection.

    ``feed(data)`` appends bytes and returns every batch completed by them (possibly none).
    Any malformed input raises ``CodecError``; after that the decoder refuses further input,
    since the stream position is unknown and the connection must be closed.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
        frame_messages_max: int = FRAME_MESSAGES_MAX_DEFAULT,
    ) -> None:
        if not 2 <= max_frame_bytes <= _U32_MAX:
            raise ValueError(f"max_frame_bytes must be in [2, {_U32_MAX}], got {max_frame_bytes}")
        if frame_messages_max < 1:
            raise ValueError(f"frame_messages_max must be >= 1, got {frame_messages_max}")
        self.max_frame_bytes = max_frame_bytes
        self.frame_messages_max = frame_messages_max
        self._buffer = bytearray()
        self._failed: str | None = None

    def buffered_bytes(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Message]]:
        if self._failed is not None:
            raise CodecError(f"decoder already failed: {self._failed}")
        try:
            return self._feed(data)
        except CodecError as exc:
            self._failed = str(exc)
            self._buffer = bytearray()
            raise

    def _feed(self, data: bytes | bytearray | memoryview) -> list[list[Message]]:
        buf = self._buffer
        buf += data
        batches: list[list[Message]] = []
        pos = 0
        end = len(buf)
        while end - pos >= FRAME_HEADER_BYTES:
            length = int.from_bytes(buf[pos : pos + FRAME_HEADER_BYTES], "big")
            # Checked before waiting for the body: a hostile prefix never makes us buffer more.
            if length > self.max_frame_bytes:
                raise CodecError(
                    f"frame length {length} exceeds max_frame_bytes {self.max_frame_bytes}"
                )
            if length < 2:
                raise CodecError(f"frame length {length} is too short for a version and a body")
            start = pos + FRAME_HEADER_BYTES
            if end - start < length:
                break
            batches.append(self._decode_body(memoryview(buf)[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]
        return batches

    def _decode_body(self, body: memoryview) -> list[Message]:
        try:
            version = body[0]
            if version != FRAME_VERSION:
                raise CodecError(f"unsupported frame version {version} (expected {FRAME_VERSION})")
            try:
                messages = _DECODER.decode(body[1:])
            except _DECODE_FAILURES as exc:
                raise CodecError(f"undecodable frame body: {_one_line(exc)}") from None
            if not messages:
                raise CodecError("frame carries no messages")
            if len(messages) > self.frame_messages_max:
                raise CodecError(
                    f"frame carries {len(messages)} messages, more than frame_messages_max "
                    f"{self.frame_messages_max}"
                )
            for i, message in enumerate(messages):
                reason = validate_message(message)
                if reason is not None:
                    raise CodecError(f"message {i} ({type(message).__name__}): {reason}")
            return messages
        finally:
            # The memoryview pins the bytearray; release it so the caller may resize the buffer.
            body.release()


def validate_message(message: Message) -> str | None:
    """Why ``message`` cannot come from a correct peer, or None when it is plausible.

    Only stateless facts of Raft are checked (any correct sender satisfies them): numbers are
    u64, node ids are > 0 and differ, a log position with index 0 has term 0, no log term
    exceeds the sender's term, and AppendEntries carries contiguous entries that follow
    ``prev_log_index`` with non-decreasing terms.
    """
    term = message.term
    if not 0 <= term <= _U64_MAX:
        return f"term {term} out of range"
    src = message.src
    dst = message.dst
    if not 0 < src <= _U64_MAX or not 0 < dst <= _U64_MAX:
        return f"node ids must be positive u64 (src {src}, dst {dst})"
    if src == dst:
        return f"src and dst are both {src}"
    if isinstance(message, AppendEntries):
        return _validate_append(message)
    if isinstance(message, RequestVote):
        return _validate_position(message.last_log_index, message.last_log_term, term, "last_log")
    if isinstance(message, AppendEntriesResponse):
        return _validate_counters(
            match_index=message.match_index,
            conflict_index=message.conflict_index,
            conflict_term=message.conflict_term,
            read_ctx=message.read_ctx,
            stream=message.stream,
        )
    if isinstance(message, ReadIndexRequest):
        return _validate_counters(request_id=message.request_id)
    if isinstance(message, ReadIndexResponse):
        return _validate_counters(request_id=message.request_id, index=message.index)
    if isinstance(message, InstallSnapshot):
        return _validate_meta(message.meta, term)
    if isinstance(message, SnapshotChunk):
        reason = _validate_meta(message.meta, term)
        if reason is not None:
            return reason
        reason = _validate_counters(
            stream=message.stream, offset=message.offset, size=message.size, crc=message.crc
        )
        if reason is not None:
            return reason
        if message.offset + len(message.data) > message.size:
            return (
                f"chunk at {message.offset} of {len(message.data)} bytes overruns the "
                f"snapshot's size {message.size}"
            )
        return None
    if isinstance(message, SnapshotChunkAck):
        if not -1 <= message.offset <= _U64_MAX:
            return f"offset {message.offset} out of range"
        return _validate_counters(stream=message.stream)
    if isinstance(message, RequestVoteResponse | TimeoutNow):
        return None
    return f"unknown message type {type(message).__name__}"  # pragma: no cover


def _validate_counters(**values: int) -> str | None:
    for name, value in values.items():
        if not 0 <= value <= _U64_MAX:
            return f"{name} {value} out of range"
    return None


def _validate_meta(meta: SnapshotMeta, term: int) -> str | None:
    if meta.index < 1:
        return f"snapshot index {meta.index} must be >= 1"
    reason = _validate_position(meta.index, meta.term, term, "snapshot")
    if reason is not None:
        return reason
    if meta.term < 1:
        return f"snapshot term {meta.term} must be >= 1"
    conf = meta.conf
    for group in (conf.voters, conf.learners, conf.voters_outgoing):
        for node in group:
            if not 0 < node <= _U64_MAX:
                return f"snapshot configuration names node {node}"
    if not conf.voters:
        return "snapshot configuration has no voters"
    return None


def _validate_position(index: int, log_term: int, term: int, name: str) -> str | None:
    if not 0 <= index <= _U64_MAX:
        return f"{name}_index {index} out of range"
    if not 0 <= log_term <= term:
        return f"{name}_term {log_term} outside [0, term {term}]"
    if index == 0 and log_term != 0:
        return f"{name}_index 0 with {name}_term {log_term} (must be 0)"
    return None


def _validate_append(message: AppendEntries) -> str | None:
    term = message.term
    reason = _validate_position(message.prev_log_index, message.prev_log_term, term, "prev_log")
    if reason is not None:
        return reason
    reason = _validate_counters(commit=message.commit, read_ctx=message.read_ctx,
                                stream=message.stream)
    if reason is not None:
        return reason
    expected_index = message.prev_log_index + 1
    previous_term = message.prev_log_term
    for entry in message.entries:
        if entry.index != expected_index:
            return f"entry index {entry.index} where {expected_index} was expected"
        # Entries are only ever created by a leader of term >= 1, and a log's terms never
        # decrease; no entry can be newer than the leader sending it.
        if not max(previous_term, 1) <= entry.term <= term:
            return (
                f"entry {entry.index} has term {entry.term} outside "
                f"[{max(previous_term, 1)}, term {term}]"
            )
        expected_index += 1
        previous_term = entry.term
    if expected_index - 1 > _U64_MAX:
        return f"entry index {expected_index - 1} out of range"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]


# --- Connection hello -----------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True):
    """Who is talking to whom, on which cluster (0 = cluster id not checked), from which data
    directory (``data_id``; 0 = none). ``refused``: the answer of a node that refuses the
    connecting node's data directory; ``data_id`` is then the one it knows for it."""

    src: NodeId
    dst: NodeId
    cluster_id: int = 0
    data_id: int = 0
    refused: bool = False


def encode_hello(hello: Hello) -> bytes:
    for name, value in (("src", hello.src), ("dst", hello.dst), ("cluster_id", hello.cluster_id),
                        ("data_id", hello.data_id)):
        if not 0 <= value <= _U64_MAX:
            raise CodecError(f"hello {name} {value} does not fit u64")
    flags = HELLO_REFUSED if hello.refused else 0
    return _HELLO.pack(HELLO_MAGIC, HELLO_VERSION, flags, hello.src, hello.dst,
                       hello.cluster_id, hello.data_id)


def check_hello_head(head: bytes | bytearray | memoryview) -> None:
    """Check a hello's first ``HELLO_HEAD_BYTES`` (magic and version); ``CodecError`` says
    what is wrong, before the rest (whose length depends on the version) is awaited."""
    magic, version = bytes(head[:4]), head[4]
    if magic != HELLO_MAGIC:
        raise CodecError(f"bad hello magic {magic!r} (expected {HELLO_MAGIC!r})")
    if version != HELLO_VERSION:
        raise CodecError(f"unsupported protocol version {version} (expected {HELLO_VERSION}; "
                         f"nodes of different versions do not talk: upgrade them all)")


def decode_hello(data: bytes | bytearray | memoryview) -> Hello:
    """Parse exactly ``HELLO_BYTES`` bytes; ``CodecError`` names what is wrong. Flag bits
    other than ``HELLO_REFUSED`` are ignored (a later version's, as the reserved bytes)."""
    if len(data) != HELLO_BYTES:
        raise CodecError(f"hello must be {HELLO_BYTES} bytes, got {len(data)}")
    magic, version, flags, src, dst, cluster_id, data_id = _HELLO.unpack(data)
    if magic != HELLO_MAGIC:
        raise CodecError(f"bad hello magic {bytes(magic)!r} (expected {HELLO_MAGIC!r})")
    if version != HELLO_VERSION:
        raise CodecError(f"unsupported protocol version {version} (expected {HELLO_VERSION})")
    if src == 0 or dst == 0:
        raise CodecError(f"hello node ids must be positive (src {src}, dst {dst})")
    return Hello(src=src, dst=dst, cluster_id=cluster_id, data_id=data_id,
                 refused=bool(flags & HELLO_REFUSED))
