"""WalStorage: the durable log, hard state and snapshot of one node, in a directory of its own.

Files (format in ``raftlib.storage._format``)::

    LOCK                              flock()ed while open: one process per directory
    hardstate                         term, vote, commit; replaced atomically (tmp, fsync, rename)
    wal-00000000000000000001.log      segments named by their first entry index, each holding
    wal-00000000000000004097.log      one CRC-32C-checked record per entry and COMMIT records
    snapshot-00000000000000004000.snap  the current snapshot (header, payload, CRC-32C)

Every file operation goes through a ``FileSystem`` (``raftlib.storage.fs``): the real one by
default, or ``CrashFS``, whose crash model the crash-state explorer
(``raftlib.storage.crash_explorer``) uses to check every durability step below.

Durability protocol
-------------------
- A new data directory gets its ``hardstate`` file (term 0) durably BEFORE its first segment,
  and the directory's own name is made durable (its parent fsynced). Hence a directory with
  log entries or a snapshot but no ``hardstate`` was damaged by someone, never by a crash:
  opening it raises ``MissingHardState`` (a node without its term and vote could vote twice)
  unless the storage is opened with ``allow_missing_hard_state=True``.
- ``append`` encodes the entries into an in-memory buffer (written early past
  ``WRITE_BUFFER_BYTES_MAX``, at a segment rollover, before a truncation, and on close);
  ``sync`` writes the buffer with one ``write()`` and makes it durable with one ``fdatasync``
  of the active segment: a whole batch, however many appends it took, costs one write and one
  flush (group commit).
- A change of term or vote rewrites ``hardstate``: write ``hardstate.tmp``, fsync it, rename it
  over ``hardstate``, fsync the directory. A rename is atomic, so a crash leaves the old or the
  new file, never a mix; a leftover ``hardstate.tmp`` is deleted on open.
- A commit-index-only change (the common case: every batch moves it) is a COMMIT record in the
  active segment, covered by the same flush as the entries. On load the commit index is the
  largest of the file's, the last COMMIT record's and the snapshot's index.
- Order inside ``sync``: segment flush first, hard state file second, so a durable commit index
  never points past the durable log.
- Rollover: before a new segment is created the old one is flushed, and the new one is created
  with its header, flushed, and the directory flushed. Hence every segment but the last is
  complete on disk, and damage anywhere in it is corruption, never a torn write.

Snapshots and compaction
------------------------
- A snapshot is written to ``snapshot-<index>.<n>.tmp``, its header completed, fdatasynced,
  renamed to ``snapshot-<index>.snap`` and the directory fsynced; only then is it current.
  Older snapshot files are then deleted. The newest ``.snap`` file is the current snapshot; it
  is checked (header and payload CRC) on open and a damaged one is refused
  (``CorruptSnapshot``), never skipped for an older one.
- ``compact(index)`` (index <= the current durable snapshot's) deletes every segment but the
  last one whose entries are all at or below ``index`` (the next segment starts at or below
  ``index + 1``), and rolls over to a new segment if the active one holds entries at or below
  ``index``, so the next compaction can delete it: with periodic snapshots a restart reads at
  most the entries since the snapshot before last, whatever the segment size. The deletions
  need no directory fsync: a segment whose deletion a crash undoes is wholly covered by the
  snapshot, and recovery starts reading at the last segment that starts at or below
  ``snapshot.index + 1``, so it never reads it (and deletes it again). Recovery reads only
  that tail, so a restart costs the snapshot plus the entries after it.
- ``reset_log(meta)`` (a received snapshot replaced a log that does not hold its last entry;
  the snapshot must be committed first) deletes the segments that start after ``meta.index``,
  creates segment ``meta.index + 1`` opening with a RESET record, flushes it and the directory,
  and deletes every older segment. A segment that opens with RESET voids all before it.
- A log that a crash left without its RESET (the snapshot is durable, the reset was not) is
  recognised on open: the entry at the snapshot's index is missing or has another term. The
  log after the snapshot is then empty, and recovery writes the RESET segment itself.

Suffix truncation (``append`` starting at or below the last index)
------------------------------------------------------------------
Steps: (0) if the commit index is durable only in a COMMIT record (which the cut may remove),
write it to the hard state file first; (1) delete the segments that start after the new first
index, last one first, fsyncing the directory after each unlink; (2) ``ftruncate`` the segment
holding the new first index at that entry's record and fsync it; (3) only then write the new
entries. A crash at any point leaves a prefix of the old log (1..M with new_first - 1 <= M <=
old last): each deletion removes the current last segment and is durable before the next one,
and the cut is durable before any new byte is written, so new entries can never land next to
stale old ones. Losing part of the truncation is safe for Raft: the new entries were not
acknowledged (no sync returned), and the
old suffix is uncommitted (truncating at or below the commit index is refused).

Recovery (on open)
------------------
Segments from the one the snapshot needs are read in index order; indexes must be contiguous
across them (a RESET segment starts afresh). A bad record (short, checksum mismatch) in the
LAST segment is a torn tail when no intact record follows it anywhere in the file: the file is
cut there with a warning. Otherwise -- an intact record after it, a bad record in an earlier
segment, or an intact record with impossible content -- it is corruption: ``CorruptLog``
names the file and offset and the node refuses to start; nothing is dropped silently.

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
import logging
import os
from array import array
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import ParamSpec, TypeVar

import attrs
from crc32c import crc32c

from raftlib.core.types import Entry, HardState, SnapshotMeta
from raftlib.errors import ConfigError, CorruptLog, CorruptSnapshot, MissingHardState, StorageError
from raftlib.identity import DataIdentity
from raftlib.storage import _format as fmt
from raftlib.storage.base import Recovered
from raftlib.storage.fs import (
    TMP_SUFFIX,
    FileSystem,
    NoSyncFileSystem,
    default_file_system,
    replace_file,
)

_LOG = logging.getLogger("raftlib.storage")
_T = TypeVar("_T")
_P = ParamSpec("_P")

LOCK_NAME = "LOCK"
HARD_STATE_NAME = "hardstate"
HARD_STATE_TMP_NAME = HARD_STATE_NAME + TMP_SUFFIX
SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
SEGMENT_BYTES_MIN = 256
# Appended records wait in memory for sync(); past this much they are written (and flushed:
# see _buffer_record) early.
WRITE_BUFFER_BYTES_MAX = 4 * 1024 * 1024
# Snapshot payload is checked and read in pieces of this size: memory stays bounded.
SNAPSHOT_READ_CHUNK_BYTES = 1024 * 1024


@attrs.frozen
class WalStatistics:
    """Counters since open. ``writes`` counts write() calls of records (normally one per
    sync); ``fsyncs`` flushes of files (segments, hard state, snapshots); ``directory_fsyncs``
    those of the directory (segment creation/deletion, hard state, snapshots)."""

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
    segments_deleted: int
    snapshots_committed: int
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


@attrs.frozen
class _Scan:
    """What recovery found in the files."""

    hard_state: HardState | None  # None: no hardstate file
    snapshot: SnapshotMeta | None
    snapshot_path: str | None
    segments: list[_Segment]
    dead_segments: list[str]  # wholly covered by the snapshot or voided by a RESET: deletable
    entries: list[Entry]  # after the snapshot
    commit: int | None  # of the last COMMIT record read
    reset_needed: bool  # the snapshot's RESET is missing from the log (see the docstring)


class WalStorage:
    """A ``Storage`` backed by files in ``directory`` (created if missing).

    Opening locks the directory and recovers it (see the module docstring); ``load()`` then
    returns what was recovered. Not thread-safe: one call at a time, as the driver does
    (except ``SnapshotWriter.write``, which touches only its own file).
    """

    # Disk I/O: the node driver runs these calls in a worker thread (not over CrashFS).
    blocking = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        fsync: bool = True,
        fs: FileSystem | None = None,
        allow_missing_hard_state: bool = False,
        write_buffer_bytes_max: int = WRITE_BUFFER_BYTES_MAX,
    ) -> None:
        if isinstance(segment_bytes_max, bool) or not isinstance(segment_bytes_max, int):
            raise ConfigError(f"segment_bytes_max must be an int, got {segment_bytes_max!r}")
        if segment_bytes_max < SEGMENT_BYTES_MIN:
            raise ConfigError(
                f"segment_bytes_max must be >= {SEGMENT_BYTES_MIN}, got {segment_bytes_max}"
            )
        if not isinstance(fsync, bool):
            raise ConfigError(f"fsync must be a bool, got {fsync!r}")
        if not isinstance(write_buffer_bytes_max, int) or write_buffer_bytes_max < 1:
            raise ConfigError(
                f"write_buffer_bytes_max must be a positive int, got {write_buffer_bytes_max!r}"
            )
        self._directory = os.path.abspath(os.fspath(directory))
        self._fs: FileSystem = fs if fs is not None else default_file_system()
        # An in-memory file system never blocks: the driver may then call inline (simulator).
        self.blocking = bool(getattr(self._fs, "blocking", True))
        if not fsync:
            self._fs = NoSyncFileSystem(self._fs)
        self._segment_bytes_max = segment_bytes_max
        self._write_buffer_bytes_max = write_buffer_bytes_max
        self._fsync = fsync
        self._allow_missing_hard_state = allow_missing_hard_state
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
        # The current durable snapshot and its file.
        self._snapshot: SnapshotMeta | None = None
        self._snapshot_path: str | None = None
        self._snapshot_sequence = 0
        # Largest commit index written to the log as a COMMIT record (or to the file).
        self._commit_logged = 0
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
        self._segments_deleted = 0
        self._snapshots_committed = 0
        self._dir_fd, self._lock_fd = -1, -1
        self._identity: DataIdentity | None = None  # data_identity()'s, once asked for
        try:
            self._dir_fd, self._lock_fd = self._open_directory()
            self._recovered: Recovered | None = self._recover()
        except BaseException:
            self._release()
            raise

    # --- the Storage protocol ---------------------------------------------------------------

    def load(self) -> Recovered:
        self._check_usable()
        recovered, self._recovered = self._recovered, None
        if recovered is not None:
            return recovered
        # A later load() reads the files again; nothing is repaired while they are open.
        try:
            self._write_buffer()
        except OSError as e:
            raise self._fail("load", e) from e
        scan = self._scan(repair=False)
        return self._recovered_from(scan)

    def append(self, entries: Sequence[Entry]) -> None:
        self._check_usable()
        if not entries:
            return
        first = entries[0].index
        start = self._snapshot.index + 1 if self._snapshot is not None else 1
        if not start <= first <= self._last_index + 1:
            raise ValueError(
                f"append: first index {first} is outside {start}..{self._last_index + 1}"
                " (a gap after the last index, or at or below the snapshot)"
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

    def create_snapshot(self, meta: SnapshotMeta) -> _SnapshotWriter:
        self._check_usable()
        if meta.index < 1 or meta.term < 1:
            raise ValueError(f"create_snapshot: index and term must be >= 1, got {meta}")
        self._snapshot_sequence += 1
        name = fmt.snapshot_tmp_name(meta.index, self._snapshot_sequence)
        path = os.path.join(self._directory, name)
        try:
            header = fmt.encode_snapshot_header(meta, 0)
            fd = self._fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StorageError(f"{path}: cannot create snapshot file: {e.strerror or e}") from e
        return _SnapshotWriter(self, meta, path, fd, len(header))

    def open_snapshot(self) -> _SnapshotReader | None:
        self._check_usable()
        if self._snapshot_path is None:
            return None
        return _SnapshotReader.open(self._fs, self._snapshot_path)

    def compact(self, index: int) -> None:
        self._check_usable()
        current = self._snapshot.index if self._snapshot is not None else 0
        if index > current:
            raise ValueError(
                f"compact: index {index} is beyond the durable snapshot's index {current}"
            )
        # No directory fsync: a deletion a crash undoes leaves a segment recovery never reads
        # (see "Snapshots and compaction" in the module docstring).
        while len(self._segments) > 1 and self._segments[1].first_index <= index + 1:
            doomed = self._segments.pop(0)
            self._delete(doomed.path)
        active = self._segments[-1]
        if active.first_index <= index and active.offsets:
            # The active segment holds covered entries: start a new one now, so that the next
            # compaction can delete this one and a restart never scans much covered history.
            try:
                self._roll_over(self._last_index + 1)
            except OSError as e:
                raise self._fail("compact", e) from e

    def reset_log(self, meta: SnapshotMeta) -> None:
        self._check_usable()
        if self._snapshot is None or self._snapshot.index < meta.index:
            raise ValueError(
                f"reset_log: no durable snapshot at or beyond index {meta.index}: commit the"
                " snapshot first (a RESET must never be durable before its snapshot)"
            )
        try:
            self._reset_to(meta)
        except OSError as e:
            raise self._fail("reset_log", e) from e

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

    def data_identity(self) -> DataIdentity:
        """This data directory's identity and the ones its node saw for its peers
        (``raftlib.identity``); created on the first call (the transport's hellos carry it)."""
        self._check_usable()
        if self._identity is None:
            self._identity = DataIdentity(self._directory, fs=self._fs)
        return self._identity

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
            segments_deleted=self._segments_deleted,
            snapshots_committed=self._snapshots_committed,
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

    def _recover(self) -> Recovered:
        self._remove_leftovers()
        scan = self._scan(repair=True)
        if scan.hard_state is None:
            holds_data = (
                bool(scan.entries)
                or scan.snapshot is not None
                or any(s.offsets for s in scan.segments)
            )
            if holds_data and not self._allow_missing_hard_state:
                raise MissingHardState(
                    f"{os.path.join(self._directory, HARD_STATE_NAME)}: hard state file is"
                    " missing but the log holds entries: starting could vote twice in one"
                    " term; restore the file, or open with allow_missing_hard_state=True if"
                    " the loss is understood"
                )
            # A new directory (or one the operator allowed): the hard state file comes first,
            # so that no crash can leave entries without it.
            self._os(self._write_hard_state_file, HardState())
        else:
            self._file_hard_state = scan.hard_state
        for path in scan.dead_segments:
            self._os(self._delete, path)
        self._segments = scan.segments
        self._snapshot, self._snapshot_path = scan.snapshot, scan.snapshot_path
        if scan.reset_needed:
            assert scan.snapshot is not None
            _LOG.warning(
                "%s: the log does not hold snapshot %d's last entry: restarting it after the"
                " snapshot (a reset_log that a crash cut short)",
                self._directory,
                scan.snapshot.index,
            )
            self._os(self._reset_to, scan.snapshot)
        elif not self._segments:
            self._os(self._create_segment, 1, None)
        else:
            active = self._segments[-1]
            self._active_fd = self._os(
                self._fs.open, active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            )
            self._active_disk_size = active.size
            # What recovery read is what the node will act on: make it durable now (a process
            # crash can leave written but unflushed records and names).
            self._os(self._flush, self._active_fd)
        self._os(self._flush_directory)
        self._last_index = self._segments[-1].last_index
        recovered = self._recovered_from(scan)
        if recovered.hard_state.commit > self._last_index:
            raise StorageError(
                f"{self._directory}: commit index {recovered.hard_state.commit} is beyond the"
                f" last log index {self._last_index}: committed entries are missing"
            )
        self._hard_state = recovered.hard_state
        self._commit_logged = recovered.hard_state.commit
        return recovered

    def _recovered_from(self, scan: _Scan) -> Recovered:
        hard_state = scan.hard_state or HardState()
        commit = max(
            hard_state.commit,
            scan.commit or 0,
            scan.snapshot.index if scan.snapshot is not None else 0,
        )
        if commit != hard_state.commit:
            hard_state = HardState(term=hard_state.term, vote=hard_state.vote, commit=commit)
        return Recovered(hard_state, scan.snapshot, scan.entries)

    def _remove_leftovers(self) -> None:
        for name in self._listdir():
            if name == HARD_STATE_TMP_NAME or fmt.SNAPSHOT_TMP_NAME.fullmatch(name):
                # A crash came before the rename: the old file is the durable one. A lost
                # unlink only leaves the file for the next open to delete.
                path = os.path.join(self._directory, name)
                _LOG.info("%s: removing an unfinished write", path)
                self._os(self._fs.unlink, path)

    def _scan(self, *, repair: bool) -> _Scan:
        names = self._listdir()
        hard_state = self._read_hard_state()
        snapshot, snapshot_path, stale = self._find_snapshot(names)
        dead = stale
        segment_names = _segment_names(names)
        floor = snapshot.index if snapshot is not None else 0
        # Start at the last segment that starts at or below floor + 1: every one before it
        # holds only entries the snapshot covers, and is not read at all.
        start = 0
        for position, (first_index, _name) in enumerate(segment_names):
            if first_index <= floor + 1:
                start = position
        dead = dead + [os.path.join(self._directory, n) for _i, n in segment_names[:start]]
        segments, entries, commit, voided = self._scan_segments(
            segment_names[start:], repair=repair
        )
        dead += voided
        log_start = segments[0].first_index if segments else floor + 1
        if log_start > floor + 1:
            wanted = os.path.join(self._directory, fmt.snapshot_name(log_start - 1))
            raise CorruptSnapshot(
                wanted,
                f"missing: the log starts at index {log_start}"
                f" ({segments[0].path}) and needs a snapshot at index >= {log_start - 1}"
                + (f", the newest is at {snapshot.index}" if snapshot is not None else ""),
            )
        reset_needed = False
        if snapshot is not None:
            last = segments[-1].last_index if segments else 0
            at = snapshot.index - log_start  # position of the snapshot's entry in `entries`
            if last < snapshot.index or (at >= 0 and entries[at].term != snapshot.term):
                reset_needed = True
                entries = []
            elif at >= 0:
                entries = entries[at + 1 :]
            reset_needed = reset_needed or not segments
        return _Scan(
            hard_state,
            snapshot,
            snapshot_path,
            segments,
            dead,
            entries,
            commit,
            reset_needed,
        )

    def _find_snapshot(self, names: list[str]) -> tuple[SnapshotMeta | None, str | None, list[str]]:
        """The newest snapshot (checked in full), and the older snapshot files."""
        found = sorted(
            (int(m.group(1)), name)
            for name in names
            if (m := fmt.SNAPSHOT_NAME.fullmatch(name)) is not None
        )
        if not found:
            return None, None, []
        index, name = found[-1]
        path = os.path.join(self._directory, name)
        reader = _SnapshotReader.open(self._fs, path)
        try:
            if reader.meta.index != index:
                raise CorruptSnapshot(path, f"holds index {reader.meta.index}, name says {index}")
            while reader.read(SNAPSHOT_READ_CHUNK_BYTES):
                pass
        finally:
            reader.close()
        older = [os.path.join(self._directory, n) for _i, n in found[:-1]]
        return reader.meta, path, older

    def _read_hard_state(self) -> HardState | None:
        path = os.path.join(self._directory, HARD_STATE_NAME)
        try:
            data = self._fs.read_file(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"{path}: cannot read hard state: {e.strerror}") from e
        try:
            return fmt.decode_hard_state(data)
        except ValueError as e:
            raise CorruptLog(path, 0, f"hard state file: {e}") from None

    def _scan_segments(
        self, names: list[tuple[int, str]], *, repair: bool
    ) -> tuple[list[_Segment], list[Entry], int | None, list[str]]:
        segments: list[_Segment] = []
        voided: list[str] = []
        entries: list[Entry] = []
        commit: int | None = None
        for position, (first_index, name) in enumerate(names):
            path = os.path.join(self._directory, name)
            is_last = position == len(names) - 1
            buf = self._read_file(path)
            if len(buf) < fmt.SEGMENT_HEADER.size:
                if is_last and repair:
                    # Created but its header never became durable: it never held a record.
                    # No directory fsync here: open ends with one, and a crash before it finds
                    # the same short file and removes it again.
                    _LOG.warning("%s: removing a segment whose creation was cut short", path)
                    self._os(self._fs.unlink, path)
                    continue
                raise CorruptLog(path, 0, f"segment is {len(buf)} bytes, shorter than a header")
            reason = fmt.check_segment_header(buf, first_index)
            if reason is not None:
                raise CorruptLog(path, 0, reason)
            scan = fmt.scan_records(buf, first_index)
            if scan.reset is not None:
                # The log was discarded for a snapshot: every earlier segment is void.
                voided += [s.path for s in segments]
                segments, entries, commit = [], [], None
            expected = segments[-1].last_index + 1 if segments else first_index
            if first_index != expected:
                raise CorruptLog(
                    path,
                    0,
                    f"segment starts at index {first_index}, expected {expected}"
                    " (a segment is missing)",
                )
            size = len(buf)
            if scan.bad is not None:
                self._judge_bad_record(path, buf, scan.bad, is_last=is_last, repair=repair)
                self._os(self._cut_file, path, scan.bad.offset)
                size = scan.bad.offset
            segments.append(_Segment(path, first_index, scan.offsets, size))
            entries.extend(scan.entries)
            if scan.commit is not None:
                commit = scan.commit
        return segments, entries, commit, voided

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

    def _listdir(self) -> list[str]:
        try:
            return self._fs.listdir(self._directory)
        except OSError as e:
            raise StorageError(f"{self._directory}: cannot list directory: {e.strerror}") from e

    def _read_file(self, path: str) -> bytes:
        try:
            return self._fs.read_file(path)
        except OSError as e:
            raise StorageError(f"{path}: cannot read segment: {e.strerror}") from e

    def _cut_file(self, path: str, size: int) -> None:
        """Cut a torn tail. No flush of its own: only the last segment is ever cut, and open
        then either flushes it (``_recover``: fdatasync persists the new size) or voids it
        with a RESET segment; a crash before that finds the same torn tail and cuts again."""
        fd = self._fs.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._fs.ftruncate(fd, size)
        finally:
            self._fs.close(fd)

    # --- writing ------------------------------------------------------------------------------

    def _write_records(self, first: int, records: list[bytes]) -> None:
        segment = self._segments[-1]
        position = segment.size
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
        if self._buffer_bytes >= self._write_buffer_bytes_max:
            self._write_buffer()
            # Flushed at once, so that a segment never has two unflushed writes: a power loss
            # could keep the later and lose the earlier, and the hole would read as damage.
            self._flush(self._active_fd)
            self._active_dirty = False
        return segment.size

    def _write_buffer(self) -> None:
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        written = self._fs.write(self._active_fd, data)
        while written < len(data):  # rare: a regular file write returns short only near ENOSPC
            written += self._fs.write(self._active_fd, memoryview(data)[written:])
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
        self._fs.close(self._active_fd)
        self._active_fd = -1
        return self._create_segment(first_index, None)

    def _create_segment(self, first_index: int, reset: SnapshotMeta | None) -> _Segment:
        path = os.path.join(self._directory, fmt.segment_name(first_index))
        data = fmt.encode_segment_header(first_index)
        if reset is not None:
            data += fmt.encode_reset(reset.index, reset.term)
        fd = self._fs.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        try:
            if self._fs.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write of a segment header")
            self._flush(fd)
            self._flush_directory()
        except BaseException:
            self._fs.close(fd)
            raise
        self._active_fd = fd
        self._active_dirty = False
        self._active_disk_size = len(data)
        segment = _Segment(path, first_index, array("Q"), len(data))
        self._segments.append(segment)
        self._segments_created += 1
        self._bytes_written += len(data)
        return segment

    def _reset_to(self, meta: SnapshotMeta) -> None:
        """Discard the whole log; it goes on at meta.index + 1 (see the module docstring)."""
        # Buffered records belong to the discarded log: they never reach the disk.
        self._buffer.clear()
        self._buffer_bytes = 0
        if self._active_fd >= 0:
            self._fs.close(self._active_fd)
            self._active_fd = -1
        first = meta.index + 1
        # Free the new segment's name. No fsync of its own: the creation below is made
        # durable with the directory, and a prefix of directory operations survives.
        while self._segments and self._segments[-1].first_index >= first:
            self._delete(self._segments.pop().path)
        old = self._segments
        self._segments = []
        self._create_segment(first, meta)
        for segment in old:
            self._delete(segment.path)  # void now that the RESET segment is durable
        self._last_index = meta.index

    def _truncate_from(self, first: int) -> None:
        hard_state = self._pending_hard_state or self._hard_state
        known_commit = max(self._commit_logged, hard_state.commit)
        if first <= known_commit:
            raise ValueError(
                f"append: would truncate entry {first}, at or below commit index {known_commit}"
            )
        self._truncations += 1
        if self._commit_logged > self._file_hard_state.commit:
            # The cut may remove the COMMIT record that holds the durable commit index, and a
            # power loss may keep the cut without anything written after it: move the commit
            # index into the hard state file first. (Found by the crash-state explorer.)
            durable = self._file_hard_state
            self._write_hard_state_file(HardState(durable.term, durable.vote, self._commit_logged))
        self._write_buffer()  # simplest: everything on disk, then cut
        # (1) Whole segments after the cut, last first, each deletion durable before the next.
        while self._segments[-1].first_index > first:
            doomed = self._segments.pop()
            if self._active_fd >= 0:
                self._fs.close(self._active_fd)
                self._active_fd = -1
            self._fs.unlink(doomed.path)
            self._segments_deleted += 1
            self._flush_directory()
        # (2) Cut the segment holding `first`, durably, before any new byte is written.
        segment = self._segments[-1]
        if self._active_fd < 0:
            self._active_fd = self._fs.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        keep = first - segment.first_index
        cut = segment.offsets[keep] if keep < len(segment.offsets) else segment.size
        del segment.offsets[keep:]
        self._fs.ftruncate(self._active_fd, cut)
        self._fs.fsync(self._active_fd)  # not fdatasync: the size shrank
        self._fsyncs += self._fsync
        self._active_dirty = False
        segment.size = self._active_disk_size = cut
        self._last_index = first - 1

    def _write_hard_state_file(self, hard_state: HardState) -> None:
        data = fmt.encode_hard_state(hard_state)
        replace_file(self._fs, os.path.join(self._directory, HARD_STATE_NAME), data,
                     flush=self._flush, flush_directory=self._flush_directory)
        self._file_hard_state = hard_state
        self._commit_logged = max(self._commit_logged, hard_state.commit)
        self._hard_state_writes += 1
        self._bytes_written += len(data)

    def _commit_snapshot(self, writer: _SnapshotWriter) -> None:
        """The rename-and-publish half of ``SnapshotWriter.commit`` (its file is flushed)."""
        self._check_usable()
        meta = writer.meta
        path = os.path.join(self._directory, fmt.snapshot_name(meta.index))
        self._fs.replace(writer.path, path)
        self._flush_directory()
        self._snapshots_committed += 1
        if self._snapshot is None or meta.index >= self._snapshot.index:
            old = self._snapshot_path
            self._snapshot, self._snapshot_path = meta, path
            if old is not None and old != path:
                self._delete(old)
        else:
            self._delete(path)  # an older snapshot committed late: never current

    def _delete(self, path: str) -> None:
        """Unlink a file nothing needs any more (no directory fsync: see the callers)."""
        try:
            self._fs.unlink(path)
        except FileNotFoundError:
            return
        self._segments_deleted += fmt.SEGMENT_NAME.fullmatch(os.path.basename(path)) is not None

    def _flush(self, fd: int) -> None:
        self._fs.fdatasync(fd)
        self._fsyncs += self._fsync  # counts real flushes only

    def _flush_directory(self) -> None:
        self._fs.fsync(self._dir_fd)
        self._directory_fsyncs += self._fsync

    # --- the directory ------------------------------------------------------------------------

    def _open_directory(self) -> tuple[int, int]:
        """Create if needed, check and lock the data directory; return (dir fd, lock fd)."""
        fs, path = self._fs, self._directory
        if fs.exists(path) and not fs.isdir(path):
            raise StorageError(f"{path}: data directory path exists and is not a directory")
        try:
            created = fs.makedirs(path)
            for directory in created:
                # A new directory's name lives in its parent: flush that too, or a power loss
                # can take the whole data directory with it.
                parent_fd = fs.open(os.path.dirname(directory), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    fs.fsync(parent_fd)
                finally:
                    fs.close(parent_fd)
        except OSError as e:
            raise StorageError(f"{path}: cannot create data directory: {e.strerror or e}") from e
        if not fs.writable(path):
            raise StorageError(f"{path}: data directory is not writable")
        lock_path = os.path.join(path, LOCK_NAME)
        try:
            dir_fd = fs.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StorageError(f"{path}: cannot open data directory: {e.strerror or e}") from e
        try:
            lock_fd = fs.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            fs.close(dir_fd)
            raise StorageError(f"{lock_path}: cannot create lock file: {e.strerror or e}") from e
        try:
            fs.lock(lock_fd)
        except OSError as e:
            holder = _read_lock_holder(fs, lock_fd)
            fs.close(lock_fd)
            fs.close(dir_fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise StorageError(
                    f"{path}: data directory is already in use{holder}; two nodes cannot share one"
                ) from None
            raise StorageError(f"{lock_path}: cannot lock: {e.strerror or e}") from e
        # The pid is for the error message of a second opener; the lock itself is the flock.
        with contextlib.suppress(OSError):
            fs.ftruncate(lock_fd, 0)
            fs.pwrite(lock_fd, f"{fs.pid()}\n".encode(), 0)
        return dir_fd, lock_fd

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
                    self._fs.close(fd)
        self._active_fd = self._dir_fd = self._lock_fd = -1


class _SnapshotWriter:
    """``SnapshotWriter`` of a WalStorage: a temporary file, renamed into place on commit."""

    def __init__(
        self, storage: WalStorage, meta: SnapshotMeta, path: str, fd: int, header_bytes: int
    ) -> None:
        self.meta = meta
        self.path = path
        self._storage = storage
        self._fs = storage._fs
        self._fd = fd
        self._header_bytes = header_bytes
        self._length = 0
        self._crc = 0
        self._done = False
        # Room for the header, completed (with the payload length) on commit.
        self._write_all(bytes(header_bytes))

    def write(self, data: bytes) -> None:
        self._check_open()
        self._write_all(data)
        self._crc = crc32c(data, self._crc)
        self._length += len(data)

    def commit(self) -> None:
        self._check_open()
        self._done = True
        try:
            header = fmt.encode_snapshot_header(self.meta, self._length)
            assert len(header) == self._header_bytes, "the header size depends only on meta"
            self._fs.pwrite(self._fd, header, 0)
            self._write_all(fmt.encode_crc(self._crc))
            # Data before the name: a rename that survives a power loss must find the bytes.
            self._storage._flush(self._fd)
            self._fs.close(self._fd)
            self._fd = -1
            self._storage._commit_snapshot(self)
        except OSError as e:
            self._discard()
            raise StorageError(f"{self.path}: cannot commit snapshot: {e.strerror or e}") from e

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self._fs.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            self._fs.unlink(self.path)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += self._fs.write(self._fd, view[written:])
        except OSError as e:
            self.abort()
            raise StorageError(f"{self.path}: cannot write snapshot: {e.strerror or e}") from e

    def _check_open(self) -> None:
        if self._done:
            raise StorageError(f"{self.path}: snapshot writer already committed or aborted")


class _SnapshotReader:
    """``SnapshotReader`` of a WalStorage: reads through its own descriptor, so a newer
    snapshot replacing the file does not disturb it."""

    def __init__(self, fs: FileSystem, path: str, fd: int, header: fmt.SnapshotHeader) -> None:
        self.meta = header.meta
        self.size = header.payload_length
        self.path = path
        self._fs = fs
        self._fd = fd
        self._start = header.header_bytes
        self._position = 0
        self._crc = 0

    @classmethod
    def open(cls, fs: FileSystem, path: str) -> _SnapshotReader:
        try:
            fd = fs.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise CorruptSnapshot(path, f"cannot open: {e.strerror or e}") from e
        try:
            file_size = fs.size(fd)
            fixed = fs.pread(fd, fmt.SNAPSHOT_FIXED.size, 0)
            meta_length, _payload = fmt.decode_snapshot_fixed(fixed)
            head = fs.pread(fd, fmt.SNAPSHOT_FIXED.size + meta_length + fmt.CRC_BYTES, 0)
            header = fmt.decode_snapshot_header(head)
            expected = header.header_bytes + header.payload_length + fmt.CRC_BYTES
            if file_size != expected:
                raise ValueError(f"file is {file_size} bytes, its header says {expected}")
        except (OSError, ValueError) as e:
            with contextlib.suppress(OSError):
                fs.close(fd)
            reason = e.strerror if isinstance(e, OSError) else str(e)
            raise CorruptSnapshot(path, str(reason)) from None
        return cls(fs, path, fd, header)

    def read(self, n: int) -> bytes:
        if self._fd < 0:
            raise StorageError(f"{self.path}: snapshot reader is closed")
        n = min(n, self.size - self._position)
        if n <= 0:
            return b""
        try:
            data = self._fs.pread(self._fd, n, self._start + self._position)
        except OSError as e:
            raise CorruptSnapshot(self.path, f"cannot read: {e.strerror or e}") from e
        if len(data) != n:
            raise CorruptSnapshot(self.path, "payload cut short")
        self._crc = crc32c(data, self._crc)
        self._position += n
        if self._position == self.size:
            trailer = self._fs.pread(self._fd, fmt.CRC_BYTES, self._start + self.size)
            if len(trailer) != fmt.CRC_BYTES or fmt.decode_crc(trailer) != self._crc:
                raise CorruptSnapshot(self.path, "payload checksum mismatch")
        return data

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self._fs.close(self._fd)
            self._fd = -1


def _segment_names(names: list[str]) -> list[tuple[int, str]]:
    found = []
    for name in names:
        match = fmt.SEGMENT_NAME.fullmatch(name)
        if match is not None:
            found.append((int(match.group(1)), name))
    found.sort()
    return found


def _read_lock_holder(fs: FileSystem, lock_fd: int) -> str:
    try:
        pid = fs.pread(lock_fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (locked by pid {pid})" if pid.isdigit() else ""
