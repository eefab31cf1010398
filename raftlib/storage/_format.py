"""The on-disk format of the write-ahead log: pure encoding and decoding, no I/O.

Segment file ``wal-<first index, 20 digits>.log``::

    header   magic b"RAFTWAL\\0" | version u32 | first_index u64 | crc32c(previous 20 bytes) u32
    records  crc u32 | length u32 | body[length]      (crc = CRC-32C of length field + body)

All integers are little-endian. A body starts with a one-byte record type:

    ENTRY  (1)  type u8 | term u64 | index u64 | entry kind u8 | data (the rest of the body)
    COMMIT (2)  type u8 | commit index u64
    RESET  (3)  type u8 | index u64 | term u64   (only as a segment's first record: the log
                was discarded for a snapshot at (index, term); this segment's first index is
                index + 1 and every earlier segment is void)

One record per entry (not per batch) so that a suffix truncation can cut a segment exactly at
an entry boundary without rewriting a surviving part of a batch. The CRC covers the length field
too, so a damaged length never validates; and since recovery looks past a bad record for intact
ones (``find_valid_record_after``), a flipped length that makes a record seem to run past the
end of the file cannot pass for a torn tail and hide the records after it.

Hard state file ``hardstate``::

    magic b"RAFTHS\\0\\0" | version u32 | term u64 | vote u64 | commit u64 | crc32c(previous) u32

Snapshot file ``snapshot-<index, 20 digits>.snap``::

    magic b"RAFTSNP\\0" | version u32 | meta length u32 | payload length u64
    | meta (SnapshotMeta, msgpack via msgspec) | crc32c(everything before) u32
    | payload | crc32c(payload) u32
"""

from __future__ import annotations

import re
import struct
from array import array
from collections.abc import Sequence

import attrs
import msgspec
from crc32c import crc32c

from raftlib.core.types import Entry, EntryKind, HardState, SnapshotMeta

FORMAT_VERSION = 1

SEGMENT_MAGIC = b"RAFTWAL\x00"
SEGMENT_HEADER = struct.Struct("<8sIQI")
_SEGMENT_HEADER_SIGNED = struct.Struct("<8sIQ")
SEGMENT_NAME = re.compile(r"wal-(\d{20})\.log")

RECORD_ENTRY = 1
RECORD_COMMIT = 2
RECORD_RESET = 3
_CRC = struct.Struct("<I")
RECORD_HEADER = struct.Struct("<II")  # crc, length
_ENTRY_HEAD = struct.Struct("<IBQQB")  # length, type, term, index, kind: what the crc starts at
_ENTRY_FIELDS = struct.Struct("<QQB")
_COMMIT_RECORD = struct.Struct("<IBQ")  # length, type, commit
ENTRY_BODY_BYTES_MIN = 1 + _ENTRY_FIELDS.size
COMMIT_BODY_BYTES = 1 + 8
_RESET_RECORD = struct.Struct("<IBQQ")  # length, type, index, term
RESET_BODY_BYTES = 1 + 8 + 8
# The length field is a u32; keep a margin so header + body stays addressable as one record.
RECORD_BODY_BYTES_MAX = 0xFFFF_FFFF - 64
_ENTRY_KIND_BY_VALUE = {int(kind): kind for kind in EntryKind}
_U64 = struct.Struct("<Q")

HARD_STATE_MAGIC = b"RAFTHS\x00\x00"
HARD_STATE = struct.Struct("<8sIQQQI")
_HARD_STATE_SIGNED = struct.Struct("<8sIQQQ")

SNAPSHOT_MAGIC = b"RAFTSNP\x00"
SNAPSHOT_FIXED = struct.Struct("<8sIIQ")  # magic, version, meta length, payload length
SNAPSHOT_NAME = re.compile(r"snapshot-(\d{20})\.snap")
SNAPSHOT_TMP_NAME = re.compile(r"snapshot-(\d{20})\.\d+\.tmp")
SNAPSHOT_META_BYTES_MAX = 1024 * 1024  # a configuration of thousands of members fits
CRC_BYTES = _CRC.size

_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_NONZERO = re.compile(rb"[^\x00]")


def segment_name(first_index: int) -> str:
    return f"wal-{first_index:020d}.log"


def encode_segment_header(first_index: int) -> bytes:
    signed = _SEGMENT_HEADER_SIGNED.pack(SEGMENT_MAGIC, FORMAT_VERSION, first_index)
    return signed + _CRC.pack(crc32c(signed))


def encode_entry(entry: Entry) -> bytes:
    """One ENTRY record. Raises ValueError on a value the format cannot hold."""
    return encode_entries([entry])[0]


def encode_entries(entries: Sequence[Entry]) -> list[bytes]:
    """ENTRY records for a batch whose indexes must be contiguous. Raises ValueError (naming
    the entry) on a gap or a value the format cannot hold; nothing is half-encoded then."""
    # The commit path: inlined struct packing, no per-entry function call.
    pack_head = _ENTRY_HEAD.pack
    pack_crc = _CRC.pack
    records = []
    expected = entries[0].index
    try:
        for entry in entries:
            if entry.index != expected:
                raise ValueError(f"entry index {entry.index} where {expected} was expected")
            data = entry.data
            length = ENTRY_BODY_BYTES_MIN + len(data)
            if length > RECORD_BODY_BYTES_MAX:
                raise ValueError(
                    f"entry {entry.index}: {len(data)} data bytes exceed the WAL record limit"
                    f" of {RECORD_BODY_BYTES_MAX} bytes"
                )
            body = pack_head(length, RECORD_ENTRY, entry.term, expected, entry.kind) + data
            records.append(pack_crc(crc32c(body)) + body)
            expected += 1
    except struct.error as e:
        raise ValueError(f"entry {expected}: term or kind out of range: {e}") from None
    return records


def encode_commit(commit: int) -> bytes:
    body = _COMMIT_RECORD.pack(COMMIT_BODY_BYTES, RECORD_COMMIT, commit)
    return _CRC.pack(crc32c(body)) + body


def encode_reset(index: int, term: int) -> bytes:
    body = _RESET_RECORD.pack(RESET_BODY_BYTES, RECORD_RESET, index, term)
    return _CRC.pack(crc32c(body)) + body


def encode_crc(value: int) -> bytes:
    return _CRC.pack(value)


def decode_crc(data: bytes) -> int:
    (value,) = _CRC.unpack(data)
    return int(value)


def snapshot_name(index: int) -> str:
    return f"snapshot-{index:020d}.snap"


def snapshot_tmp_name(index: int, sequence: int) -> str:
    return f"snapshot-{index:020d}.{sequence}.tmp"


def encode_snapshot_header(meta: SnapshotMeta, payload_length: int) -> bytes:
    encoded = msgspec.msgpack.encode(meta)
    signed = SNAPSHOT_FIXED.pack(SNAPSHOT_MAGIC, FORMAT_VERSION, len(encoded), payload_length)
    signed += encoded
    return signed + _CRC.pack(crc32c(signed))


@attrs.frozen
class SnapshotHeader:
    meta: SnapshotMeta
    header_bytes: int  # where the payload starts
    payload_length: int


def decode_snapshot_fixed(data: bytes) -> tuple[int, int]:
    """(meta length, payload length) from the first ``SNAPSHOT_FIXED.size`` bytes. Raises
    ValueError naming what is wrong."""
    if len(data) < SNAPSHOT_FIXED.size:
        raise ValueError(f"file is {len(data)} bytes, shorter than a snapshot header")
    magic, version, meta_length, payload_length = SNAPSHOT_FIXED.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC:
        raise ValueError("bad magic (not a raftlib snapshot file)")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported snapshot format version {version}")
    if meta_length > SNAPSHOT_META_BYTES_MAX:
        raise ValueError(f"meta length {meta_length} exceeds {SNAPSHOT_META_BYTES_MAX} bytes")
    return int(meta_length), int(payload_length)


def decode_snapshot_header(data: bytes) -> SnapshotHeader:
    """Decode a header whose bytes (fixed part, meta and header CRC) are all in ``data``."""
    meta_length, payload_length = decode_snapshot_fixed(data)
    end = SNAPSHOT_FIXED.size + meta_length
    if len(data) < end + _CRC.size:
        raise ValueError("header cut short")
    (crc,) = _CRC.unpack_from(data, end)
    if crc != crc32c(data[:end]):
        raise ValueError("header checksum mismatch")
    try:
        meta = msgspec.msgpack.decode(data[SNAPSHOT_FIXED.size : end], type=SnapshotMeta)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"meta does not decode: {e}") from None
    return SnapshotHeader(meta, end + _CRC.size, payload_length)


def encode_hard_state(hard_state: HardState) -> bytes:
    for name in ("term", "vote", "commit"):
        value = getattr(hard_state, name)
        if not 0 <= value <= _U64_MAX:
            raise ValueError(f"hard state {name}={value} is outside 0..2**64-1")
    signed = _HARD_STATE_SIGNED.pack(
        HARD_STATE_MAGIC, FORMAT_VERSION, hard_state.term, hard_state.vote, hard_state.commit
    )
    return signed + _CRC.pack(crc32c(signed))


def decode_hard_state(data: bytes) -> HardState:
    """Raises ValueError naming what is wrong."""
    if len(data) != HARD_STATE.size:
        raise ValueError(f"size is {len(data)} bytes, expected {HARD_STATE.size}")
    magic, version, term, vote, commit, crc = HARD_STATE.unpack(data)
    if magic != HARD_STATE_MAGIC:
        raise ValueError("bad magic (not a raftlib hard state file)")
    if crc != crc32c(data[: _HARD_STATE_SIGNED.size]):
        raise ValueError("checksum mismatch")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported format version {version} (expected {FORMAT_VERSION})")
    return HardState(term=term, vote=vote, commit=commit)


@attrs.frozen
class BadRecord:
    """Where scanning stopped and why. ``torn`` is True when the bytes could be a record whose
    write never completed (short, or checksum mismatch); False when the record is intact
    (checksum matches) yet its content is impossible, which only corruption or a foreign
    writer explains."""

    offset: int
    reason: str
    torn: bool


@attrs.define
class SegmentScan:
    """What a scan of one segment file found: the valid records up to ``end``."""

    first_index: int
    entries: list[Entry]
    offsets: array[int]  # byte offset of each entry's record
    commit: int | None  # the last COMMIT record's value
    reset: tuple[int, int] | None  # (index, term) of a RESET record opening the segment
    end: int  # offset just past the last valid record
    bad: BadRecord | None


def check_segment_header(buf: bytes, first_index_from_name: int) -> str | None:
    """Return why the header is unacceptable, or None. ``buf`` holds at least a header."""
    magic, version, first_index, crc = SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        return "bad segment magic (not a raftlib WAL segment)"
    if crc != crc32c(buf[: _SEGMENT_HEADER_SIGNED.size]):
        return "segment header checksum mismatch"
    if version != FORMAT_VERSION:
        return f"unsupported WAL format version {version} (this raftlib reads {FORMAT_VERSION})"
    if first_index != first_index_from_name:
        return f"header says first index {first_index}, file name says {first_index_from_name}"
    return None


def scan_records(buf: bytes, first_index: int) -> SegmentScan:
    """Decode records after the segment header until the end or the first bad record.
    Entry indexes must run contiguously from ``first_index``."""
    # Hot at startup (every entry of the log passes here): locals, positional construction
    # and bytes slices (cheaper than memoryview slices for records this small).
    size = len(buf)
    entries: list[Entry] = []
    offsets: array[int] = array("Q")
    commit: int | None = None
    reset: tuple[int, int] | None = None
    expected = first_index
    offset = SEGMENT_HEADER.size
    bad: BadRecord | None = None
    unpack_header = RECORD_HEADER.unpack_from
    unpack_fields = _ENTRY_FIELDS.unpack_from
    kinds = _ENTRY_KIND_BY_VALUE
    header_size = RECORD_HEADER.size
    fields_size = _ENTRY_FIELDS.size
    while offset < size:
        if offset + header_size > size:
            bad = BadRecord(offset, "record header cut short", torn=True)
            break
        crc, length = unpack_header(buf, offset)
        end = offset + header_size + length
        if length == 0 or end > size:
            bad = BadRecord(offset, f"record length {length} runs past the end", torn=True)
            break
        if crc32c(buf[offset + 4 : end]) != crc:
            bad = BadRecord(offset, "record checksum mismatch", torn=True)
            break
        record_type = buf[offset + header_size]
        body = offset + header_size + 1
        if record_type == RECORD_ENTRY and length >= ENTRY_BODY_BYTES_MIN:
            term, index, kind = unpack_fields(buf, body)
            if index != expected:
                bad = BadRecord(offset, f"entry index {index} where {expected} was expected", False)
                break
            entry_kind = kinds.get(kind)
            if entry_kind is None:
                bad = BadRecord(offset, f"entry {index} has unknown kind {kind}", torn=False)
                break
            entries.append(Entry(term, index, buf[body + fields_size : end], entry_kind))
            offsets.append(offset)
            expected += 1
        elif record_type == RECORD_COMMIT and length == COMMIT_BODY_BYTES:
            (commit,) = _U64.unpack_from(buf, body)
        elif record_type == RECORD_RESET and length == RESET_BODY_BYTES:
            index, term = _U64.unpack_from(buf, body)[0], _U64.unpack_from(buf, body + 8)[0]
            if offset != SEGMENT_HEADER.size or index != first_index - 1:
                reason = f"RESET record to index {index} that does not open segment {first_index}"
                bad = BadRecord(offset, reason, torn=False)
                break
            reset = (index, term)
        else:
            reason = f"unknown record type {record_type} with length {length}"
            bad = BadRecord(offset, reason, torn=False)
            break
        offset = end
    return SegmentScan(first_index, entries, offsets, commit, reset, offset, bad)


def find_valid_record_after(buf: bytes, start: int) -> int | None:
    """The first offset > start where a record with a matching checksum begins, or None.

    Used only after a bad record, to tell a torn tail (nothing valid follows: the write was cut
    short) from corruption in the middle (intact records follow, so something damaged data that
    had been written completely). Runs of zero bytes are skipped quickly: file systems may
    expose never-written blocks as zeros after a crash."""
    size = len(buf)
    view = memoryview(buf)
    try:
        offset = start + 1
        while offset + RECORD_HEADER.size <= size:
            crc, length = RECORD_HEADER.unpack_from(buf, offset)
            if crc == 0 and length == 0:
                found = _NONZERO.search(buf, offset)
                if found is None:
                    return None
                # Every header starting before found - 7 would be all zeros: skip them.
                offset = max(offset + 1, found.start() - RECORD_HEADER.size + 1)
                continue
            end = offset + RECORD_HEADER.size + length
            plausible = length >= COMMIT_BODY_BYTES and end <= size
            if plausible and crc32c(view[offset + 4 : end]) == crc:
                return offset
            offset += 1
        return None
    finally:
        view.release()


def last_index_of(first_index: int, entries: Sequence[Entry]) -> int:
    return first_index - 1 + len(entries)
