"""A file layer inside a live node process that keeps unsynced writes out of the OS, so that
killing the process loses them as a power loss would (the live ``disk`` fault).

``python -m harness.live.lazyfs [--sync-ms MS] MODULE ARG...`` installs ``LazyFS`` as the
default file system of ``raftlib.storage`` (the seam ``set_default_file_system``; ``raftlib
serve`` gets no flag for it) and runs MODULE as ``__main__``, like ``harness.live.clocked``;
wrappers chain.

Why inside the process: a SIGKILLed process's writes are in the kernel's page cache, which
outlives it, so a plain SIGKILL loses nothing. Here ``write``/``pwrite``/``ftruncate`` of a
file only change what this process reads; they reach the OS when that file is fsynced (or
fdatasynced), in the order they were made. What the OS holds is therefore exactly what was
synced, and a SIGKILL drops the rest with the process's memory.

The persistence model is ``raftlib.storage.fs``'s (``CrashFS``): the same pending operations
(``FileOp``), applied by the same ``apply_file_op``, made durable by a flush of any descriptor
of the file. Of the states that model allows after a power loss, a kill here leaves one:
every unsynced data operation lost; or, with the torn variant, only the most recent unsynced
write kept, and only a prefix of it (a hole of zeros before it if earlier ones were lost).
Directory operations (create, rename, unlink) go straight to the OS, so they always survive:
a state the model allows, not its harshest (CrashFS tests the others).

How the harness ends a node (signals caught by a thread of this layer, ``sigwait``):

- ``PROCESS_CRASH_SIGNAL``: a process crash (the ``kill`` fault): every pending operation is
  written to the OS (not synced: the page cache keeps it, as after a real SIGKILL), then the
  process SIGKILLs itself;
- ``POWER_LOSS_SIGNAL``: a power loss (``disk``): prints what it drops, then SIGKILLs itself;
- ``TORN_LOSS_SIGNAL``: a power loss that tears the last unsynced write (``disk`` with
  ``torn``): writes a random prefix of it, then SIGKILLs itself.

``--sync-ms``: every fsync first waits this long with its data still unsynced, as on a disk
whose syncs are slow; the window in which a power loss finds written but unsynced data, which
is what a bug that acts before its fsync returns needs to be seen.

A plain SIGKILL is a power loss too (nothing printed). Past ``PENDING_BYTES_MAX`` unsynced
bytes a file's pending operations are written back to the OS without a sync, as the kernel's
writeback would: the model allows an unsynced write to survive.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import random
import runpy
import signal
import sys
import threading
import time

import attrs

from raftlib.storage.fs import (
    OS_FS,
    FileOp,
    ForwardingFileSystem,
    OsFileSystem,
    apply_file_op,
    set_default_file_system,
)

# Unsynced bytes this process may hold before writing a file's pending operations back to
# the OS unsynced (the kernel's writeback); bounds the layer's memory.
PENDING_BYTES_MAX = 64 << 20
# The slowest fsync the wrapper's --sync-ms may ask for (seconds).
SYNC_SECONDS_MAX = 1.0
PROCESS_CRASH_SIGNAL = signal.SIGRTMIN
POWER_LOSS_SIGNAL = signal.SIGRTMIN + 1
TORN_LOSS_SIGNAL = signal.SIGRTMIN + 2
USAGE = "usage: python -m harness.live.lazyfs [--sync-ms MS] MODULE [ARG...]"

FileKey = tuple[int, int]  # (st_dev, st_ino): pending data belongs to a file, not a name


@attrs.define(eq=False)
class _Unsynced:
    """A file's operations since its last flush, and a descriptor that pins it (its inode
    cannot be reused while pending data refers to it) and lets them be written back."""

    keeper: int  # a read-write descriptor of the file, without O_APPEND
    disk_size: int  # the file's size in the OS
    size: int  # its size as this process sees it
    ops: list[tuple[int, FileOp]] = attrs.field(factory=list)  # (order, op)
    bytes: int = 0


@attrs.define(eq=False)
class _Open:
    key: FileKey
    flags: int
    position: int = 0


class LazyFS(ForwardingFileSystem):
    """A ``raftlib.storage.fs.FileSystem`` holding unsynced file data in memory (see the
    module docstring). Thread-safe: the node's storage thread and others may call it."""

    blocking = True

    def __init__(self, inner: OsFileSystem = OS_FS,
                 pending_bytes_max: int = PENDING_BYTES_MAX, sync_seconds: float = 0.0) -> None:
        assert pending_bytes_max > 0 and 0.0 <= sync_seconds <= SYNC_SECONDS_MAX
        # Each fsync takes at least this long, its data still unsynced meanwhile (a slow disk).
        self._sync_seconds = sync_seconds
        super().__init__(inner)
        self._inner: OsFileSystem = inner
        self._pending_bytes_max = pending_bytes_max
        self._lock = threading.Lock()
        self._files: dict[FileKey, _Unsynced] = {}
        self._fds: dict[int, _Open] = {}
        self._order = 0  # numbers operations across files (the torn loss needs the newest)
        self._write_through = False
        self._frozen = False
        self.writebacks = 0

    # --- descriptors ----------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        with self._lock:
            # Truncation at open is a file operation like any other: pending until a flush.
            fd = os.open(path, flags & ~os.O_TRUNC, mode)
            stat = os.fstat(fd)
            key = (stat.st_dev, stat.st_ino)
            self._fds[fd] = _Open(key, flags)
            if flags & os.O_TRUNC and (stat.st_size or key in self._files):
                self._add(fd, key, 0)
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            os.close(fd)

    def _handle(self, fd: int) -> _Open:
        handle = self._fds.get(fd)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return handle

    # --- data -----------------------------------------------------------------------------

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self._lock:
            handle = self._handle(fd)
            offset = (self._size(fd, handle.key) if handle.flags & os.O_APPEND
                      else handle.position)
            self._add(fd, handle.key, (offset, bytes(data)))
            handle.position = offset + len(data)
            return len(data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        with self._lock:
            handle = self._handle(fd)
            self._add(fd, handle.key, (offset, bytes(data)))
            return len(data)

    def ftruncate(self, fd: int, size: int) -> None:
        with self._lock:
            self._add(fd, self._handle(fd).key, size)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        with self._lock:
            key = self._key_of(fd)
            if key not in self._files:
                return os.pread(fd, n, offset)
            return bytes(self._content(key)[offset : offset + n])

    def size(self, fd: int) -> int:
        with self._lock:
            return self._size(fd, self._key_of(fd))

    def read_file(self, path: str) -> bytes:
        with self._lock:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                stat = os.fstat(fd)
                key = (stat.st_dev, stat.st_ino)
                if key in self._files:
                    return bytes(self._content(key))
                return self._inner.read_file(path)
            finally:
                os.close(fd)

    def fsync(self, fd: int) -> None:
        self._slow_disk()
        with self._lock:
            self._write_back(self._key_of(fd))
            os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._slow_disk()
        with self._lock:
            self._write_back(self._key_of(fd))
            os.fdatasync(fd)

    def _slow_disk(self) -> None:
        # Before the data reaches the OS, and without the lock: a power loss meanwhile loses
        # it, and other threads go on (a disk busy with one sync).
        if self._sync_seconds:
            time.sleep(self._sync_seconds)

    # --- names: straight to the OS (see the module docstring) ------------------------------

    def replace(self, src: str, dst: str) -> None:
        with self._lock:
            replaced = self._key_at(dst)
            os.replace(src, dst)
            if replaced is not None and replaced != self._key_at(dst):
                self._forget_if_gone(replaced)

    def unlink(self, path: str) -> None:
        with self._lock:
            key = self._key_at(path)
            os.unlink(path)
            if key is not None:
                self._forget_if_gone(key)

    # listdir, exists, isdir, writable, makedirs, lock, pid: ForwardingFileSystem's.

    # --- the model ------------------------------------------------------------------------

    def _key_of(self, fd: int) -> FileKey:
        handle = self._fds.get(fd)
        if handle is not None:
            return handle.key
        stat = os.fstat(fd)  # a directory descriptor, or one opened elsewhere
        return (stat.st_dev, stat.st_ino)

    @staticmethod
    def _key_at(path: str) -> FileKey | None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _size(self, fd: int, key: FileKey) -> int:
        unsynced = self._files.get(key)
        return unsynced.size if unsynced is not None else os.fstat(fd).st_size

    def _add(self, fd: int, key: FileKey, op: FileOp) -> None:
        unsynced = self._files.get(key)
        if unsynced is None:
            keeper = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
            size = os.fstat(keeper).st_size
            unsynced = self._files[key] = _Unsynced(keeper, size, size)
        self._order += 1
        unsynced.ops.append((self._order, op))
        if isinstance(op, int):
            unsynced.size = op
        else:
            unsynced.size = max(unsynced.size, op[0] + len(op[1]))
            unsynced.bytes += len(op[1])
        if self._write_through or unsynced.bytes > self._pending_bytes_max:
            if not self._write_through:
                self.writebacks += 1
            self._write_back(key)

    def _content(self, key: FileKey) -> bytearray:
        """What this process reads: the OS's bytes with the pending operations applied."""
        unsynced = self._files[key]
        content = bytearray(os.pread(unsynced.keeper, unsynced.disk_size, 0))
        for _, op in unsynced.ops:
            apply_file_op(content, op)
        assert len(content) == unsynced.size, "the tracked size is the model's"
        return content

    def _write_back(self, key: FileKey) -> None:
        """Hand a file's pending operations to the OS, in order (a flush, before its sync)."""
        unsynced = self._files.pop(key, None)
        if unsynced is None:
            return
        try:
            for _, op in unsynced.ops:
                _write_op(unsynced.keeper, op)
            assert os.fstat(unsynced.keeper).st_size == unsynced.size
        finally:
            os.close(unsynced.keeper)

    def _forget_if_gone(self, key: FileKey) -> None:
        """A file with no name left and no descriptor of the node's is unreachable: its
        pending data can never be read or synced, so it goes (and its inode with it)."""
        unsynced = self._files.get(key)
        if unsynced is None or any(h.key == key for h in self._fds.values()):
            return
        if os.fstat(unsynced.keeper).st_nlink == 0:
            del self._files[key]
            os.close(unsynced.keeper)

    # --- ends -----------------------------------------------------------------------------

    def freeze(self) -> None:
        """Take the lock for good: every later file operation blocks (the power is off)."""
        self._lock.acquire()
        self._frozen = True

    def pending(self) -> tuple[int, int, int]:
        """(files, operations, bytes) held unsynced right now."""
        with contextlib.nullcontext() if self._frozen else self._lock:
            return (len(self._files), sum(len(u.ops) for u in self._files.values()),
                    sum(u.bytes for u in self._files.values()))

    def crash_process(self) -> None:
        """From now on every operation goes to the OS at once, and what is pending goes now:
        the state a process crash leaves (the caller then kills the process)."""
        with self._lock:
            self._write_through = True
            for key in list(self._files):
                self._write_back(key)

    def keep_torn_last(self, rng: random.Random) -> str:
        """Of everything pending, write only a prefix of the newest write (the rest is lost
        with the process, which the caller kills next); says what it kept."""
        with self._lock:
            newest: tuple[int, _Unsynced, tuple[int, bytes]] | None = None
            for unsynced in self._files.values():
                for order, op in unsynced.ops:
                    if isinstance(op, tuple) and op[1] and (newest is None or order > newest[0]):
                        newest = (order, unsynced, op)
            if newest is None:
                return "no unsynced write to tear"
            _, unsynced, (offset, data) = newest
            cut = rng.randint(0, len(data) - 1)
            _write_op(unsynced.keeper, (offset, data[:cut]))
            self._write_through = True  # nothing else reaches the OS before the kill
            return f"kept {cut} of {len(data)} bytes of the newest unsynced write"


def _write_op(fd: int, op: FileOp) -> None:
    if isinstance(op, int):
        os.ftruncate(fd, op)
        return
    offset, data = op
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# --- the wrapper ----------------------------------------------------------------------------

_SIGNALS = {PROCESS_CRASH_SIGNAL, POWER_LOSS_SIGNAL, TORN_LOSS_SIGNAL}


def _say(text: str) -> None:
    # The node's output is its log in the run directory: what the fault did is visible there.
    os.write(2, f"lazyfs: {text}\n".encode())


def _watch(fs: LazyFS) -> None:
    signum = signal.sigwait(_SIGNALS)
    if signum == POWER_LOSS_SIGNAL:
        # Held until the process is gone: no pending write reaches the OS after this moment.
        fs.freeze()
    files, ops, size = fs.pending()
    if signum == PROCESS_CRASH_SIGNAL:
        fs.crash_process()
        _say(f"process crash: {ops} unsynced operations ({size} bytes, {files} files) handed "
             "to the OS first")
    elif signum == TORN_LOSS_SIGNAL:
        kept = fs.keep_torn_last(random.Random())
        _say(f"power loss (torn): {ops} unsynced operations ({size} bytes, {files} files) "
             f"lost; {kept}")
    else:  # nothing to hand over: everything pending is dropped with the process
        _say(f"power loss: {ops} unsynced operations ({size} bytes, {files} files) lost")
    os.kill(os.getpid(), signal.SIGKILL)


def install(sync_seconds: float = 0.0) -> LazyFS:
    """Make a ``LazyFS`` this process's default file system and start the signal watcher.
    Call before any thread starts (the signals must be blocked in every thread)."""
    fs = LazyFS(sync_seconds=sync_seconds)
    set_default_file_system(fs)
    # A process that exits by itself leaves its writes in the page cache, synced or not.
    atexit.register(fs.crash_process)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    threading.Thread(target=_watch, args=(fs,), name="lazyfs-signals", daemon=True).start()
    return fs


def main(argv: list[str]) -> int:
    sync_seconds = 0.0
    if argv[:1] == ["--sync-ms"]:
        try:
            sync_seconds = float(argv[1]) / 1000
        except (IndexError, ValueError):
            sync_seconds = -1.0
        if not 0.0 <= sync_seconds <= SYNC_SECONDS_MAX:
            print(f"lazyfs: --sync-ms must be a number in [0, {SYNC_SECONDS_MAX * 1000:g}]",
                  file=sys.stderr)
            return 2
        argv = argv[2:]
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    install(sync_seconds)
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
