"""WalStorage: the durable log and hard state of one node, in a directory of its own.

Files (format in ``raftlib.storage._format``)::

    LOCK                              flock()ed while open: one process per directory
    hardstate                         term, vote, commit; replaced atomically (tmp, fsync, rename)
    wal-00000000000000000001.log      segments named by their first entry index, each holding
    wal-00000000000000004097.log      one CRC-32C-checked record per entry and COMMIT records

Durability protocol
-------------------
- ``append`` encodes the entries into an in-memory buffer (written early past
  ``WRITE_BUFFER_BYTES_MAX``, at a segment rollover, before a truncation, and on close);
  ``sync`` writes the buffer with one ``write()`` and makes it durable with one ``fdatasync``
  of the active segment: a whole batch, however many appends it took, costs one write and one
  flush (group commit).
- A change of term or vote rewrites ``hardstate``: write ``hardstate.tmp``, fsync it, rename it
  over ``hardstate``, fsync the directory. A rename is atomic, so a crash leaves the old or the
  new file, never a mix; a leftover ``hardstate.tmp`` is deleted on open.
- A commit-index-only change (the common case: every batch moves it) is a COMMIT record in the
  active segment, covered by the same flush as the entries. Rewriting ``hardstate`` for it would
  triple the flushes on the commit path. On load the commit index is the larger of the file's
  and the last COMMIT record's (commit never decreases; ``set_hard_state`` enforces that).
- Order inside ``sync``: segment flush first, hard state file second, so a durable commit index
  never points past the durable log. (A crash between the two may leave entries of a newer term
  than the durable term: harmless, since nothing that depended on the batch was sent.)
- Rollover: before a new segment is created the old one is flushed, and the new one is created
  with its header, flushed, and the directory flushed. Hence every segment but the last is
  complete on disk, and damage anywhere in it is corruption, never a torn write.

Suffix truncation (``append`` starting at or below the last index)
------------------------------------------------------------------
Steps: (1) delete the segments that start after the new first index, last one first, fsyncing
the directory after each unlink; (2) ``ftruncate`` the segment holding the new first index at
that entry's record and fsync it; (3) only then write the new entries. A crash at any point
leaves a prefix of the old log (1..M with new_first - 1 <= M <= old last): each deletion removes
the current last segment and is durable before the next one, and the cut is durable before any
new byte is written, so new entries can never land next to stale old ones. Losing part of the
truncation is safe for Raft: the new entries were not acknowledged (no sync returned), and the
old suffix is uncommitted (truncating at or below the commit index is refused).

Recovery (on open)
------------------
Segments are read in index order; indexes must be contiguous from 1 across all of them. A bad
record (short, checksum mismatch) in the LAST segment is a torn tail when no intact record
follows it anywhere in the file: the file is cut there with a warning. Otherwise -- an intact
record after it, a bad record in an earlier segment, or an intact record with impossible
content -- it is corruption: ``CorruptLog`` names the file and offset and the node refuses to
start; nothing is dropped silently.

Known limits: a damaged FINAL record (nothing after it) cannot be told from a torn write and
is cut like one, as in etcd's WAL. And if a file system writes back unsynced pages out of order
and power fails, an unsynced tail can contain a hole followed by intact records; recovery then
refuses to start (``CorruptLog``) rather than guess. That errs on the side of never dropping
data; an operator can cut the file at the reported offset if the entries after it are known to
be unacknowledged.

``fsync=False`` skips every flush: for measuring the no-durability baseline only. It is UNSAFE:
a power loss can lose acknowledged entries and leave complete-looking but damaged segments.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from array import array
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import ParamSpec, TypeVar

import attrs

from raftlib.core.types import Entry, HardState
from raftlib.errors import ConfigError, CorruptLog, StorageError
from raftlib.storage import _format as fmt

_LOG = logging.getLogger("raftlib.storage")
_T = TypeVar("_T")
_P = ParamSpec("_P")

LOCK_NAME = "LOCK"
HARD_STATE_NAME = "hardstate"
HARD_STATE_TMP_NAME = "hardstate.tmp"
SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
SEGMENT_BYTES_MIN = 256
# Appended records wait in memory for sync(); past this much they are written early.
WRITE_BUFFER_BYTES_MAX = 4 * 1024 * 1024

# fdatasync skips the inode timestamps but still flushes the size an append changed, which is
# all a log needs; it is cheaper than fsync where the platform has it.
_flush_data = getattr(os, "fdatasync", os.fsync)


@attrs.frozen
class WalStatistics:
    """Counters since open. ``writes`` counts write() calls of records (normally one per
    sync); ``fsyncs`` flushes of files (segments, hard state); ``directory_fsyncs`` those of
    the directory (segment creation/deletion, hard state)."""

    bytes_written: int
    writes: int
    entries_written: int
    appends: int
    syncs: int
    fsyncs: int
    directory_fsyncs: int
    hard_state_writes: int
    truncations: int
    segments: int
    segments_created: int
    first_index: int
    last_index: int


@attrs.define
class _Segment:
    path: str
    first_index: int
    offsets: array[int]  # record offset of each entry, in index order
    size: int

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


class WalStorage:
    """A ``Storage`` backed by segment files in ``directory`` (created if missing).

    Opening locks the directory and recovers it (see the module docstring); ``load()`` then
    returns what was recovered. Not thread-safe: one call at a time, as the driver does.
    """

    # Disk I/O: the node driver runs these calls in a worker thread.
    blocking = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        fsync: bool = True,
    ) -> None:
        if isinstance(segment_bytes_max, bool) or not isinstance(segment_bytes_max, int):
            raise ConfigError(f"segment_bytes_max must be an int, got {segment_bytes_max!r}")
        if segment_bytes_max < SEGMENT_BYTES_MIN:
            raise ConfigError(
                f"segment_bytes_max must be >= {SEGMENT_BYTES_MIN}, got {segment_bytes_max}"
            )
        if not isinstance(fsync, bool):
            raise ConfigError(f"fsync must be a bool, got {fsync!r}")
        self._directory = os.path.abspath(os.fspath(directory))
        self._segment_bytes_max = segment_bytes_max
        self._fsync = fsync
        self._closed = False
        self._failed: str | None = None
        self._segments: list[_Segment] = []
        self._active_fd = -1
        self._active_dirty = False
        self._active_disk_size = 0
        # Records appended since the last write(): one write() per sync covers a whole batch.
        self._buffer: list[bytes] = []
        self._buffer_bytes = 0
        self._last_index = 0
        # The durable hard state, the one in the file, and the pending (unsynced) one.
        self._hard_state = HardState()
        self._file_hard_state = HardState()
        self._pending_hard_state: HardState | None = None
        # Largest commit index written to the log as a COMMIT record (or to the file).
        self._commit_logged = 0
        self._commit_rewrite = False
        self._bytes_written = 0
        self._writes = 0
        self._entries_written = 0
        self._appends = 0
        self._syncs = 0
        self._fsyncs = 0
        self._directory_fsyncs = 0
        self._hard_state_writes = 0
        self._truncations = 0
        self._segments_created = 0
        self._dir_fd, self._lock_fd = _open_directory(self._directory)
        try:
            self._recovered: tuple[HardState, list[Entry]] | None = self._recover()
        except BaseException:
            self._release()
            raise

    # --- the Storage protocol ---------------------------------------------------------------

    def load(self) -> tuple[HardState, list[Entry]]:
        self._check_usable()
        recovered, self._recovered = self._recovered, None
        if recovered is not None:
            return recovered
        # A later load() reads the files again; nothing is repaired while they are open.
        try:
            self._write_buffer()
        except OSError as e:
            raise self._fail("load", e) from e
        hard_state = self._read_hard_state()
        _segments, entries, commit = self._scan_segments(repair=False)
        return _with_commit(hard_state, commit), entries

    def append(self, entries: Sequence[Entry]) -> None:
        self._check_usable()
        if not entries:
            return
        first = entries[0].index
        if not 1 <= first <= self._last_index + 1:
            raise ValueError(
                f"append: first index {first} leaves a gap after last index {self._last_index}"
            )
        try:
            records = fmt.encode_entries(entries)
        except ValueError as e:
            raise ValueError(f"append: {e}") from None
        try:
            if first <= self._last_index:
                self._truncate_from(first)
            self._write_records(first, records)
        except OSError as e:
            raise self._fail("append", e) from e
        self._appends += 1
        self._entries_written += len(records)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._check_usable()
        current = self._pending_hard_state or self._hard_state
        if hard_state.term < current.term or hard_state.commit < current.commit:
            raise ValueError(
                f"set_hard_state: term and commit never decrease: {current} -> {hard_state}"
            )
        fmt.encode_hard_state(hard_state)  # range check now, not at sync time
        self._pending_hard_state = hard_state

    def sync(self) -> None:
        self._check_usable()
        pending = self._pending_hard_state
        file_changed = pending is not None and (
            (pending.term, pending.vote) != (self._file_hard_state.term, self._file_hard_state.vote)
        )
        if pending is not None and pending.commit > self._last_index:
            raise ValueError(
                f"sync: commit index {pending.commit} is beyond the last index {self._last_index}"
            )
        try:
            if pending is not None and not file_changed and pending.commit > self._commit_logged:
                self._buffer_record(fmt.encode_commit(pending.commit))
                self._commit_logged = pending.commit
            self._write_buffer()
            if self._active_dirty:
                self._flush(self._active_fd)
                self._active_dirty = False
            if pending is not None and file_changed:
                self._write_hard_state_file(pending)
        except OSError as e:
            raise self._fail("sync", e) from e
        if pending is not None:
            self._hard_state = pending
            self._pending_hard_state = None
        self._syncs += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._recovered = None
        if self._failed is None and self._buffer:
            # Hand appended entries to the OS, as a process exit after write() would; no flush.
            try:
                self._write_buffer()
            except OSError as e:
                _LOG.warning("%s: unsynced appended entries lost: %s", self._directory, e)
        self._release()

    # --- extras -------------------------------------------------------------------------------

    def abandon(self) -> None:
        """Release the files WITHOUT writing what is still buffered: what a process killed
        right now leaves on disk. For crash tests; ``close()`` is the normal way out."""
        self._buffer.clear()
        self._buffer_bytes = 0
        self._closed = True
        self._recovered = None
        self._release()

    @property
    def directory(self) -> str:
        return self._directory

    def statistics(self) -> WalStatistics:
        return WalStatistics(
            bytes_written=self._bytes_written,
            writes=self._writes,
            entries_written=self._entries_written,
            appends=self._appends,
            syncs=self._syncs,
            fsyncs=self._fsyncs,
            directory_fsyncs=self._directory_fsyncs,
            hard_state_writes=self._hard_state_writes,
            truncations=self._truncations,
            segments=len(self._segments),
            segments_created=self._segments_created,
            first_index=self._segments[0].first_index if self._segments else 1,
            last_index=self._last_index,
        )

    def __enter__(self) -> WalStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- recovery -----------------------------------------------------------------------------

    def _recover(self) -> tuple[HardState, list[Entry]]:
        tmp = os.path.join(self._directory, HARD_STATE_TMP_NAME)
        if os.path.exists(tmp):
            # A crash came between writing the new hard state and renaming it: the old file
            # is the durable one.
            _LOG.info("%s: removing an unfinished hard state update", tmp)
            self._os(os.unlink, tmp)
        hard_state = self._read_hard_state()
        self._segments, entries, commit = self._scan_segments(repair=True)
        if not self._segments:
            self._os(self._create_segment, 1)
        self._last_index = self._segments[-1].last_index
        active = self._segments[-1]
        if self._active_fd < 0:
            self._active_fd = self._os(
                os.open, active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            )
        self._active_disk_size = active.size
        self._file_hard_state = hard_state
        recovered = _with_commit(hard_state, commit)
        if recovered.commit > self._last_index:
            raise StorageError(
                f"{self._directory}: commit index {recovered.commit} is beyond the last log"
                f" index {self._last_index}: committed entries are missing"
            )
        self._hard_state = recovered
        self._commit_logged = recovered.commit
        return recovered, entries

    def _read_hard_state(self) -> HardState:
        path = os.path.join(self._directory, HARD_STATE_NAME)
        try:
            with open(path, "rb") as f:
                data = f.read(fmt.HARD_STATE.size + 1)
        except FileNotFoundError:
            return HardState()
        except OSError as e:
            raise StorageError(f"{path}: cannot read hard state: {e.strerror}") from e
        try:
            return fmt.decode_hard_state(data)
        except ValueError as e:
            raise CorruptLog(path, 0, f"hard state file: {e}") from None

    def _scan_segments(self, *, repair: bool) -> tuple[list[_Segment], list[Entry], int | None]:
        names = self._segment_names()
        segments: list[_Segment] = []
        entries: list[Entry] = []
        commit: int | None = None
        for position, (first_index, name) in enumerate(names):
            path = os.path.join(self._directory, name)
            is_last = position == len(names) - 1
            buf = self._read_file(path)
            if len(buf) < fmt.SEGMENT_HEADER.size:
                if is_last and repair:
                    # Created but its header never became durable: it never held a record.
                    _LOG.warning("%s: removing a segment whose creation was cut short", path)
                    self._os(os.unlink, path)
                    self._os(self._flush_directory)
                    continue
                raise CorruptLog(path, 0, f"segment is {len(buf)} bytes, shorter than a header")
            reason = fmt.check_segment_header(buf, first_index)
            if reason is not None:
                raise CorruptLog(path, 0, reason)
            expected = segments[-1].last_index + 1 if segments else 1
            if first_index != expected:
                raise CorruptLog(
                    path,
                    0,
                    f"segment starts at index {first_index}, expected {expected}"
                    " (a segment is missing or the log does not start at 1)",
                )
            scan = fmt.scan_records(buf, first_index)
            size = len(buf)
            if scan.bad is not None:
                self._judge_bad_record(path, buf, scan.bad, is_last=is_last, repair=repair)
                self._os(_cut_file, path, scan.bad.offset, self._fsync)
                size = scan.bad.offset
            segments.append(_Segment(path, first_index, scan.offsets, size))
            entries.extend(scan.entries)
            if scan.commit is not None:
                commit = scan.commit
        return segments, entries, commit

    def _judge_bad_record(
        self, path: str, buf: bytes, bad: fmt.BadRecord, *, is_last: bool, repair: bool
    ) -> None:
        """Return if the bad record is a torn tail that may be cut; raise CorruptLog if not."""
        if not bad.torn:
            raise CorruptLog(path, bad.offset, bad.reason)
        if not is_last:
            raise CorruptLog(
                path,
                bad.offset,
                f"{bad.reason} in a segment that is not the last one"
                " (it was complete on disk before the next segment was created)",
            )
        intact = fmt.find_valid_record_after(buf, bad.offset)
        if intact is not None:
            raise CorruptLog(
                path,
                bad.offset,
                f"{bad.reason}, yet an intact record follows at offset"
                f" {intact}: the log is damaged in the middle, not torn at the tail",
            )
        if not repair:
            raise CorruptLog(path, bad.offset, f"{bad.reason} (torn tail in an open log)")
        _LOG.warning(
            "%s: truncating a torn record at offset %d (%s); %d bytes discarded",
            path,
            bad.offset,
            bad.reason,
            len(buf) - bad.offset,
        )

    def _segment_names(self) -> list[tuple[int, str]]:
        try:
            names = os.listdir(self._directory)
        except OSError as e:
            raise StorageError(f"{self._directory}: cannot list directory: {e.strerror}") from e
        found = []
        for name in names:
            match = fmt.SEGMENT_NAME.fullmatch(name)
            if match is not None:
                found.append((int(match.group(1)), name))
        found.sort()
        return found

    @staticmethod
    def _read_file(path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise StorageError(f"{path}: cannot read segment: {e.strerror}") from e

    # --- writing ------------------------------------------------------------------------------

    def _write_records(self, first: int, records: list[bytes]) -> None:
        segment = self._segments[-1]
        position = segment.size
        if self._commit_rewrite:
            # The cut may have removed the latest COMMIT record: restate it before new entries.
            position = self._buffer_record(fmt.encode_commit(self._commit_logged))
            self._commit_rewrite = False
        index = first
        for record in records:
            if position + len(record) > self._segment_bytes_max and segment.offsets:
                segment = self._roll_over(index)
                position = segment.size
            segment.offsets.append(position)
            position = self._buffer_record(record)
            index += 1
        self._last_index = index - 1

    def _buffer_record(self, record: bytes) -> int:
        """Queue a record at the end of the active segment; return the segment's new end.
        The queue goes out in one write() at sync (or rollover, truncation, close)."""
        self._buffer.append(record)
        self._buffer_bytes += len(record)
        segment = self._segments[-1]
        segment.size += len(record)
        if self._buffer_bytes >= WRITE_BUFFER_BYTES_MAX:
            self._write_buffer()
        return segment.size

    def _write_buffer(self) -> None:
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        written = os.write(self._active_fd, data)
        while written < len(data):  # rare: a regular file write returns short only near ENOSPC
            written += os.write(self._active_fd, memoryview(data)[written:])
        self._writes += 1
        self._buffer.clear()
        self._buffer_bytes = 0
        self._active_dirty = True
        self._bytes_written += len(data)
        self._active_disk_size += len(data)
        if self._active_disk_size != self._segments[-1].size:
            raise AssertionError(
                f"segment size bookkeeping: {self._active_disk_size} on disk,"
                f" {self._segments[-1].size} expected"
            )

    def _roll_over(self, first_index: int) -> _Segment:
        self._write_buffer()
        if self._active_dirty:
            # Every segment but the last must be complete on disk (see recovery).
            self._flush(self._active_fd)
            self._active_dirty = False
        os.close(self._active_fd)
        self._active_fd = -1
        return self._create_segment(first_index)

    def _create_segment(self, first_index: int) -> _Segment:
        path = os.path.join(self._directory, fmt.segment_name(first_index))
        header = fmt.encode_segment_header(first_index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            if os.write(fd, header) != len(header):
                raise OSError(errno.EIO, "short write of a segment header")
            self._flush(fd)
            self._flush_directory()
        except BaseException:
            os.close(fd)
            raise
        self._active_fd = fd
        self._active_dirty = False
        self._active_disk_size = len(header)
        segment = _Segment(path, first_index, array("Q"), len(header))
        self._segments.append(segment)
        self._segments_created += 1
        self._bytes_written += len(header)
        return segment

    def _truncate_from(self, first: int) -> None:
        hard_state = self._pending_hard_state or self._hard_state
        known_commit = max(self._commit_logged, hard_state.commit)
        if first <= known_commit:
            raise ValueError(
                f"append: would truncate entry {first}, at or below commit index {known_commit}"
            )
        self._truncations += 1
        self._write_buffer()  # simplest: everything on disk, then cut
        # (1) Whole segments after the cut, last first, each deletion durable before the next.
        while self._segments[-1].first_index > first:
            doomed = self._segments.pop()
            if self._active_fd >= 0:
                os.close(self._active_fd)
                self._active_fd = -1
            os.unlink(doomed.path)
            self._flush_directory()
        # (2) Cut the segment holding `first`, durably, before any new byte is written.
        segment = self._segments[-1]
        if self._active_fd < 0:
            self._active_fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        keep = first - segment.first_index
        cut = segment.offsets[keep] if keep < len(segment.offsets) else segment.size
        del segment.offsets[keep:]
        os.ftruncate(self._active_fd, cut)
        if self._fsync:
            os.fsync(self._active_fd)  # not fdatasync: the size shrank
            self._fsyncs += 1
        self._active_dirty = False
        segment.size = self._active_disk_size = cut
        self._last_index = first - 1
        self._commit_rewrite = self._commit_logged > self._file_hard_state.commit

    def _write_hard_state_file(self, hard_state: HardState) -> None:
        data = fmt.encode_hard_state(hard_state)
        tmp = os.path.join(self._directory, HARD_STATE_TMP_NAME)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write of the hard state")
            self._flush(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(self._directory, HARD_STATE_NAME))
        self._flush_directory()
        self._file_hard_state = hard_state
        self._commit_logged = max(self._commit_logged, hard_state.commit)
        self._hard_state_writes += 1
        self._bytes_written += len(data)

    def _flush(self, fd: int) -> None:
        if self._fsync:
            _flush_data(fd)
            self._fsyncs += 1

    def _flush_directory(self) -> None:
        if self._fsync:
            os.fsync(self._dir_fd)
            self._directory_fsyncs += 1

    # --- state and errors ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError(f"{self._directory}: storage is closed")
        if self._failed is not None:
            raise StorageError(
                f"{self._directory}: storage failed earlier ({self._failed}); reopen to recover"
            )

    def _fail(self, operation: str, error: OSError) -> StorageError:
        # After a failed write or flush the state on disk is unknown (a failed fsync may have
        # dropped the dirty pages): refuse further use; reopening runs recovery.
        self._failed = f"{operation}: {error.strerror or error}"
        return StorageError(f"{self._directory}: {self._failed}")

    def _os(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a file operation during open; an OSError becomes a one-line StorageError."""
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            where = e.filename or self._directory
            raise StorageError(f"{where}: {e.strerror or e}") from e

    def _release(self) -> None:
        for fd in (self._active_fd, self._dir_fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._active_fd = self._dir_fd = self._lock_fd = -1


def _with_commit(hard_state: HardState, logged_commit: int | None) -> HardState:
    if logged_commit is None or logged_commit <= hard_state.commit:
        return hard_state
    return HardState(term=hard_state.term, vote=hard_state.vote, commit=logged_commit)


def _cut_file(path: str, size: int, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _open_directory(path: str) -> tuple[int, int]:
    """Create if needed, check and lock the data directory; return (directory fd, lock fd)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{path}: data directory path exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{path}: cannot create data directory: {e.strerror or e}") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: data directory is not writable")
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StorageError(f"{path}: cannot open data directory: {e.strerror or e}") from e
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        os.close(dir_fd)
        raise StorageError(f"{lock_path}: cannot create lock file: {e.strerror or e}") from e
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_lock_holder(lock_fd)
        os.close(lock_fd)
        os.close(dir_fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise StorageError(
                f"{path}: data directory is already in use{holder}; two nodes cannot share one"
            ) from None
        raise StorageError(f"{lock_path}: cannot lock: {e.strerror or e}") from e
    # The pid is for the error message of a second opener; the lock itself is the flock.
    with contextlib.suppress(OSError):
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    return dir_fd, lock_fd


def _read_lock_holder(lock_fd: int) -> str:
    try:
        pid = os.pread(lock_fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (locked by pid {pid})" if pid.isdigit() else ""
