"""The file system WalStorage does all its I/O through: the real one, and a crash model.

``OS_FS`` (``OsFileSystem``) forwards to ``os``: the default, no change in behaviour.

``CrashFS`` is an in-memory file system that records every operation and, at a simulated
crash, keeps only what its persistence model guarantees. It is deterministic (randomness only
from the ``rng`` given to ``crash``) and cheap enough for a simulator to run WalStorage on it.

Persistence model (what survives a power loss)
----------------------------------------------
Each file and each directory has a *durable* state and the operations made since (pending).

- File data: ``write``/``pwrite``/``ftruncate`` change what the process reads at once but are
  pending until ``fsync`` or ``fdatasync`` of that file (any descriptor of it), which makes
  its data and size durable -- NOT its name. At a power loss any subsequence of a file's
  pending operations survives, applied in the order they were made (so a later write can
  survive while an earlier one is lost: the gap reads as zero bytes), and a surviving write may
  be torn: only a prefix of its bytes reaches the disk.
- Directory entries: creating, renaming (atomic) and unlinking a name are pending until the
  directory itself is fsynced (``fsync`` of a descriptor opened on the directory). At a power
  loss a prefix of a directory's pending operations survives, in order, as a journaling file
  system commits its metadata in order; a file whose name is lost is gone, whatever its data.
- A process crash (``crash(rng, "process")``) loses nothing: the kernel still holds every
  write, as after SIGKILL.

Enumeration (``crash_states``, for the crash-state explorer) is exhaustive over directory
prefixes, and bounded for file data: with at most ``SUBSET_OPS_MAX`` pending operations in a
file every subsequence is tried, beyond that every prefix, and every prefix followed by the
last operation alone (a hole before the newest write). The last write of each choice is also
tried torn at ``TORN_CUTS`` points (1 byte, half, all but 1 byte). ``crash(rng, "power")``
draws one state of the same model at random.

Not modelled: ``O_DIRECT``, hard links, cross-directory renames (refused), mmap, file
metadata other than size, and corruption of data that was durable (that is bit rot, tested
separately). Directories created by ``makedirs`` are entries of their parent like files.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Literal, Protocol

import attrs

SUBSET_OPS_MAX = 5  # pending operations per file up to which every subsequence is enumerated
TORN_CUT_POINTS = 3  # torn variants per surviving last write: 1 byte, half, all but one byte
CrashMode = Literal["process", "power"]
# A pending file operation of the persistence model: (offset, bytes) written, or a new size.
FileOp = tuple[int, bytes] | int


class RandomLike(Protocol):
    def randint(self, a: int, b: int) -> int: ...


class FileSystem(Protocol):
    """What WalStorage needs from a file system. Paths are absolute strings; descriptors are
    ints; errors are ``OSError`` with an errno, as from ``os``."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...
    def close(self, fd: int) -> None: ...
    def write(self, fd: int, data: bytes | memoryview) -> int: ...
    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...
    def pread(self, fd: int, n: int, offset: int) -> bytes: ...
    def size(self, fd: int) -> int: ...
    def ftruncate(self, fd: int, size: int) -> None: ...
    def fsync(self, fd: int) -> None: ...
    def fdatasync(self, fd: int) -> None: ...
    def replace(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def writable(self, path: str) -> bool: ...
    def makedirs(self, path: str) -> list[str]:
        """Create ``path`` and missing parents; return the directories created, outermost
        first (their parents must be fsynced to make them durable)."""
        ...

    def lock(self, fd: int) -> None:
        """Exclusive, non-blocking lock; ``BlockingIOError`` if another holder has it."""
        ...

    def pid(self) -> int:
        """The id of the process using the files (a data directory's lock file names it)."""
        ...

    def read_file(self, path: str) -> bytes: ...


class OsFileSystem:
    """The real file system."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        # fdatasync skips inode timestamps but still flushes a changed size, which is all a
        # log needs; where the platform lacks it, fsync.
        getattr(os, "fdatasync", os.fsync)(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def writable(self, path: str) -> bool:
        return os.access(path, os.W_OK | os.X_OK)

    def makedirs(self, path: str) -> list[str]:
        missing = []
        current = path
        while not os.path.exists(current):
            missing.append(current)
            current = os.path.dirname(current)
        os.makedirs(path, exist_ok=True)
        return list(reversed(missing))

    def lock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def pid(self) -> int:
        return os.getpid()

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()


OS_FS = OsFileSystem()
# What ``replace_file`` writes first, beside the file it replaces.
TMP_SUFFIX = ".tmp"
_default_fs: FileSystem = OS_FS


def default_file_system() -> FileSystem:
    """The file system a ``WalStorage`` uses when given none: ``OS_FS`` unless replaced."""
    return _default_fs


def set_default_file_system(fs: FileSystem) -> None:
    """Replace the default for this process. A seam for a wrapper that runs an unmodified
    ``raftlib serve`` over another file layer (the harness's ``harness.live.lazyfs``, which
    holds unsynced writes in memory); the server itself never calls it."""
    global _default_fs
    _default_fs = fs


def replace_file(
    fs: FileSystem, path: str, data: bytes, *,
    flush: Callable[[int], None], flush_directory: Callable[[], None],
) -> None:
    """Give ``path`` the content ``data`` so that a crash at any moment leaves either the old
    file or the new one, never a mix (the persistence model above): write ``path.tmp``, flush
    it (``flush(fd)``), rename it over ``path``, flush the directory (``flush_directory``). The
    caller's own flushes, so that each store keeps counting what it flushed. A crash before
    the rename can leave ``path.tmp`` behind: the next call truncates it, and ``WalStorage``
    deletes its own at open."""
    tmp = path + TMP_SUFFIX
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        if fs.write(fd, data) != len(data):
            raise OSError(errno.EIO, f"short write of {tmp}")
        flush(fd)
    finally:
        fs.close(fd)
    fs.replace(tmp, path)
    flush_directory()


class ForwardingFileSystem:
    """Passes every call to an inner file system: the base of file systems that change a few
    calls (``NoSyncFileSystem``, the live harness's ``LazyFS``). Spelled out, not
    ``__getattr__``, so that the type checker sees a complete ``FileSystem``."""

    def __init__(self, inner: FileSystem) -> None:
        self._inner = inner

    def fsync(self, fd: int) -> None:
        self._inner.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._inner.fdatasync(fd)

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return self._inner.open(path, flags, mode)

    def close(self, fd: int) -> None:
        self._inner.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return self._inner.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return self._inner.pwrite(fd, data, offset)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return self._inner.pread(fd, n, offset)

    def size(self, fd: int) -> int:
        return self._inner.size(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._inner.ftruncate(fd, size)

    def replace(self, src: str, dst: str) -> None:
        self._inner.replace(src, dst)

    def unlink(self, path: str) -> None:
        self._inner.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return self._inner.listdir(path)

    def exists(self, path: str) -> bool:
        return self._inner.exists(path)

    def isdir(self, path: str) -> bool:
        return self._inner.isdir(path)

    def writable(self, path: str) -> bool:
        return self._inner.writable(path)

    def makedirs(self, path: str) -> list[str]:
        return self._inner.makedirs(path)

    def lock(self, fd: int) -> None:
        self._inner.lock(fd)

    def pid(self) -> int:
        return self._inner.pid()

    def read_file(self, path: str) -> bytes:
        return self._inner.read_file(path)


class NoSyncFileSystem(ForwardingFileSystem):
    """Wraps a file system and skips every flush: ``WalStorage(fsync=False)``, the UNSAFE
    no-durability baseline for measurements."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass


# --- the crash model ---------------------------------------------------------------------------


@attrs.define(eq=False)
class _File:
    data: bytearray  # what a reader sees now
    durable: bytearray  # what a power loss keeps for sure
    pending: list[tuple[int, bytes] | int]  # since the last flush: (offset, bytes) or new size


@attrs.define(eq=False)
class _Dir:
    entries: dict[str, _File | _Dir]
    durable: dict[str, _File | _Dir]
    # ("link", name, node) | ("unlink", name) | ("rename", src, dst)
    pending: list[tuple[str, ...] | tuple[str, str, _File | _Dir]]


@attrs.define(eq=False)
class _Handle:
    node: _File | _Dir
    path: str
    flags: int
    position: int = 0


def apply_file_op(content: bytearray, op: FileOp) -> None:
    """The persistence model's one file operation, applied to ``content``: a write at an
    offset (a gap before it reads as zero bytes) or a new size (cut, or extended with zeros).
    Shared by ``CrashFS`` and by live layers that hold unsynced writes
    (``harness.live.lazyfs``), so both apply pending operations the same way."""
    if isinstance(op, int):
        del content[op:]
        if len(content) < op:
            content.extend(bytes(op - len(content)))
        return
    offset, data = op
    if len(content) < offset:
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data


def _apply_dir_op(entries: dict[str, _File | _Dir], op: tuple[object, ...]) -> None:
    kind = op[0]
    if kind == "link":
        name, node = op[1], op[2]
        assert isinstance(name, str) and isinstance(node, _File | _Dir)
        entries[name] = node
    elif kind == "unlink":
        assert isinstance(op[1], str)
        entries.pop(op[1], None)
    else:
        src, dst = op[1], op[2]
        assert isinstance(src, str) and isinstance(dst, str)
        moved = entries.pop(src, None)
        if moved is not None:
            entries[dst] = moved


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _split(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"CrashFS needs absolute paths, got {path!r}")
    return [part for part in path.split("/") if part]


class CrashFS:
    """An in-memory file system with a crash model (see the module docstring)."""

    # Never blocks: a WalStorage over it may be called inline (deterministic simulation).
    blocking = False
    # The simulated process's id: fixed, because what the files hold must not depend on the
    # real process (the lock file's length decides the crash model's draws, so a simulation
    # would differ between processes whose ids have different numbers of digits).
    PID = 10_000

    def __init__(self) -> None:
        self._root = _Dir({}, {}, [])
        self._handles: dict[int, _Handle] = {}
        self._next_fd = 3
        self._locked: set[int] = set()  # id() of locked files
        self.operations = 0  # mutating operations so far (crash points)
        # Called with the op name after each mutating op (the crash explorer's crash points).
        self.observer: Callable[[str], object] | None = None
        self._fail_next: dict[str, int] = {}

    # --- fault injection ------------------------------------------------------------------

    def fail_next(self, operation: str, count: int = 1) -> None:
        """The next ``count`` calls of ``operation`` ("write", "fsync", "fdatasync", ...)
        raise ``OSError(EIO)`` without effect, as a failing disk would."""
        self._fail_next[operation] = count

    def _check_fault(self, operation: str, path: str) -> None:
        left = self._fail_next.get(operation, 0)
        if left:
            self._fail_next[operation] = left - 1
            raise _error(errno.EIO, path)

    def _done(self, operation: str) -> None:
        self.operations += 1
        if self.observer is not None:
            self.observer(operation)

    # --- lookups --------------------------------------------------------------------------

    def _lookup(self, path: str) -> _File | _Dir | None:
        node: _File | _Dir = self._root
        for part in _split(path):
            if not isinstance(node, _Dir):
                raise _error(errno.ENOTDIR, path)
            found = node.entries.get(part)
            if found is None:
                return None
            node = found
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parts = _split(path)
        if not parts:
            raise _error(errno.EINVAL, path)
        parent = self._lookup("/" + "/".join(parts[:-1]))
        if parent is None:
            raise _error(errno.ENOENT, path)
        if not isinstance(parent, _Dir):
            raise _error(errno.ENOTDIR, path)
        return parent, parts[-1]

    def _handle(self, fd: int) -> _Handle:
        handle = self._handles.get(fd)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return handle

    def _file(self, fd: int) -> tuple[_Handle, _File]:
        handle = self._handle(fd)
        if not isinstance(handle.node, _File):
            raise _error(errno.EISDIR, handle.path)
        return handle, handle.node

    # --- the FileSystem protocol ----------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        node = self._lookup(path)
        created = False
        if node is None:
            if not flags & os.O_CREAT:
                raise _error(errno.ENOENT, path)
            parent, name = self._parent(path)
            node = _File(bytearray(), bytearray(), [])
            parent.entries[name] = node
            parent.pending.append(("link", name, node))
            created = True
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise _error(errno.EEXIST, path)
        if isinstance(node, _Dir) and flags & (os.O_WRONLY | os.O_RDWR):
            raise _error(errno.EISDIR, path)
        if flags & os.O_DIRECTORY and not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        truncated = False
        if isinstance(node, _File) and flags & os.O_TRUNC and node.data:
            node.data.clear()
            node.pending.append(0)
            truncated = True
        fd = self._next_fd
        self._next_fd += 1
        self._handles[fd] = _Handle(node, path, flags)
        if created or truncated:
            self._done("open")
        return fd

    def close(self, fd: int) -> None:
        handle = self._handles.pop(fd, None)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._locked.discard(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        handle, file = self._file(fd)
        self._check_fault("write", handle.path)
        offset = len(file.data) if handle.flags & os.O_APPEND else handle.position
        written = self._write_at(file, bytes(data), offset)
        handle.position = offset + written
        return written

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        handle, file = self._file(fd)
        self._check_fault("write", handle.path)
        return self._write_at(file, bytes(data), offset)

    def _write_at(self, file: _File, data: bytes, offset: int) -> int:
        if data:
            apply_file_op(file.data, (offset, data))
            file.pending.append((offset, data))
            self._done("write")
        return len(data)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        _handle, file = self._file(fd)
        return bytes(file.data[offset : offset + n])

    def size(self, fd: int) -> int:
        _handle, file = self._file(fd)
        return len(file.data)

    def ftruncate(self, fd: int, size: int) -> None:
        handle, file = self._file(fd)
        self._check_fault("ftruncate", handle.path)
        apply_file_op(file.data, size)
        file.pending.append(size)
        self._done("ftruncate")

    def fsync(self, fd: int) -> None:
        handle = self._handle(fd)
        self._check_fault("fsync", handle.path)
        self._flush(handle.node)
        self._done("fsync")

    def fdatasync(self, fd: int) -> None:
        handle = self._handle(fd)
        self._check_fault("fdatasync", handle.path)
        self._flush(handle.node)
        self._done("fdatasync")

    @staticmethod
    def _flush(node: _File | _Dir) -> None:
        if isinstance(node, _File):
            for op in node.pending:
                apply_file_op(node.durable, op)
            node.pending.clear()
            assert node.durable == node.data, "after a flush the disk holds what was written"
        else:
            node.durable = dict(node.entries)
            node.pending.clear()

    def replace(self, src: str, dst: str) -> None:
        src_parent, src_name = self._parent(src)
        dst_parent, dst_name = self._parent(dst)
        if src_parent is not dst_parent:
            raise _error(errno.EXDEV, f"{src} -> {dst} (CrashFS renames within a directory)")
        node = src_parent.entries.pop(src_name, None)
        if node is None:
            raise _error(errno.ENOENT, src)
        src_parent.entries[dst_name] = node
        src_parent.pending.append(("rename", src_name, dst_name))
        self._done("rename")

    def unlink(self, path: str) -> None:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise _error(errno.ENOENT, path)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        del parent.entries[name]
        parent.pending.append(("unlink", name))
        self._done("unlink")

    def listdir(self, path: str) -> list[str]:
        node = self._lookup(path)
        if node is None:
            raise _error(errno.ENOENT, path)
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        return list(node.entries)

    def exists(self, path: str) -> bool:
        try:
            return self._lookup(path) is not None
        except OSError:
            return False

    def isdir(self, path: str) -> bool:
        try:
            return isinstance(self._lookup(path), _Dir)
        except OSError:
            return False

    def writable(self, path: str) -> bool:
        return self.isdir(path)

    def makedirs(self, path: str) -> list[str]:
        created = []
        node: _File | _Dir = self._root
        current = ""
        for part in _split(path):
            current += "/" + part
            assert isinstance(node, _Dir)
            child = node.entries.get(part)
            if child is None:
                child = _Dir({}, {}, [])
                node.entries[part] = child
                node.pending.append(("link", part, child))
                created.append(current)
                self._done("mkdir")
            elif not isinstance(child, _Dir):
                raise _error(errno.ENOTDIR, current)
            node = child
        return created

    def lock(self, fd: int) -> None:
        handle = self._handle(fd)
        for other, other_handle in self._handles.items():
            if other in self._locked and other_handle.node is handle.node and other != fd:
                raise BlockingIOError(errno.EAGAIN, "locked", handle.path)
        self._locked.add(fd)

    def pid(self) -> int:
        return self.PID

    def read_file(self, path: str) -> bytes:
        node = self._lookup(path)
        if node is None:
            raise _error(errno.ENOENT, path)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        return bytes(node.data)

    # --- crashes --------------------------------------------------------------------------

    def crash(self, rng: RandomLike, mode: CrashMode) -> None:
        """Simulate a crash in place: every descriptor and lock is gone (the process died);
        with ``mode="power"`` only what the persistence model keeps survives, drawn with
        ``rng``. Storage objects that used this file system must be abandoned."""
        self._handles.clear()
        self._locked.clear()
        if mode == "process":
            return
        if mode != "power":
            raise ValueError(f"crash mode must be 'process' or 'power', got {mode!r}")
        dir_prefix: dict[int, int] = {}
        file_content: dict[int, bytearray] = {}
        self._draw(self._root, rng, dir_prefix, file_content)
        self._root = _rebuild(self._root, dir_prefix, file_content)

    def _draw(
        self,
        directory: _Dir,
        rng: RandomLike,
        dir_prefix: dict[int, int],
        file_content: dict[int, bytearray],
    ) -> None:
        prefix = rng.randint(0, len(directory.pending))
        dir_prefix[id(directory)] = prefix
        for node in _surviving_entries(directory, prefix).values():
            if isinstance(node, _Dir):
                if id(node) not in dir_prefix:
                    self._draw(node, rng, dir_prefix, file_content)
            elif id(node) not in file_content:
                kept = [op for op in node.pending if rng.randint(0, 1)]
                last = kept[-1] if kept else None
                if isinstance(last, tuple) and rng.randint(0, 1) == 1:  # the last write torn
                    offset, data = last
                    kept[-1] = (offset, data[: rng.randint(0, len(data) - 1)])
                file_content[id(node)] = _content(node, kept)

    def crash_states(self) -> Iterator[CrashFS]:
        """Every state a power loss right now may leave, within the enumeration bounds of the
        module docstring (duplicates included: the caller dedupes by ``image()``). This file
        system is left untouched."""
        dirs = _reachable_dirs(self._root)
        for prefixes in itertools.product(*(range(len(d.pending) + 1) for d in dirs)):
            dir_prefix = {id(d): p for d, p in zip(dirs, prefixes, strict=True)}
            files = _surviving_files(self._root, dir_prefix)
            choices = [_file_choices(f) for f in files]
            for contents in itertools.product(*choices):
                file_content = {id(f): c for f, c in zip(files, contents, strict=True)}
                crashed = CrashFS()
                crashed._root = _rebuild(self._root, dir_prefix, file_content)
                yield crashed

    def image(self) -> tuple[tuple[str, bytes | None], ...]:
        """The whole tree as sorted (path, content or None for a directory): to compare and
        dedupe states."""
        out: list[tuple[str, bytes | None]] = []

        def walk(directory: _Dir, prefix: str) -> None:
            for name in sorted(directory.entries):
                node = directory.entries[name]
                path = f"{prefix}/{name}"
                if isinstance(node, _Dir):
                    out.append((path, None))
                    walk(node, path)
                else:
                    out.append((path, bytes(node.data)))

        walk(self._root, "")
        return tuple(out)

    def pending_operations(self) -> int:
        """Operations a power loss right now could lose (files and directories)."""
        total = 0
        stack: list[_File | _Dir] = [self._root]
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            total += len(node.pending)
            if isinstance(node, _Dir):
                stack.extend(node.entries.values())
        return total


def _surviving_entries(directory: _Dir, prefix: int) -> dict[str, _File | _Dir]:
    entries = dict(directory.durable)
    for op in directory.pending[:prefix]:
        _apply_dir_op(entries, op)
    return entries


def _reachable_dirs(root: _Dir) -> list[_Dir]:
    """Directories reachable through the current or the durable entries (a pending unlink or
    rename may be lost), in a fixed order."""
    out: list[_Dir] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        out.append(d)
        children = list(d.entries.values()) + list(d.durable.values())
        stack.extend(reversed([c for c in children if isinstance(c, _Dir)]))
    return out


def _surviving_files(root: _Dir, dir_prefix: dict[int, int]) -> list[_File]:
    out: list[_File] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        entries = _surviving_entries(d, dir_prefix.get(id(d), 0))
        for name in sorted(entries):
            node = entries[name]
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, _Dir):
                stack.append(node)
            else:
                out.append(node)
    return out


def _content(file: _File, kept: list[tuple[int, bytes] | int]) -> bytearray:
    content = bytearray(file.durable)
    for op in kept:
        apply_file_op(content, op)
    return content


def _file_choices(file: _File) -> list[bytearray]:
    """The contents a power loss may leave in ``file`` (bounded: see the module docstring)."""
    ops = file.pending
    if not ops:
        return [bytearray(file.durable)]
    if len(ops) <= SUBSET_OPS_MAX:
        subsets = [
            [op for op, keep in zip(ops, mask, strict=True) if keep]
            for mask in itertools.product((False, True), repeat=len(ops))
        ]
    else:
        subsets = [ops[:i] for i in range(len(ops) + 1)]
        subsets += [[*ops[:i], ops[-1]] for i in range(len(ops) - 1)]
    out: list[bytearray] = []
    seen: set[bytes] = set()
    for kept in subsets:
        variants = [kept]
        if kept and isinstance(kept[-1], tuple):
            offset, data = kept[-1]
            cuts = sorted({1, len(data) // 2, len(data) - 1} - {0, len(data)})
            variants += [[*kept[:-1], (offset, data[:cut])] for cut in cuts]
        for variant in variants:
            content = _content(file, variant)
            key = bytes(content)
            if key not in seen:
                seen.add(key)
                out.append(content)
    return out


def _rebuild(root: _Dir, dir_prefix: dict[int, int], file_content: dict[int, bytearray]) -> _Dir:
    """A fresh tree holding what survived: every node durable, nothing pending."""
    copies: dict[int, _File | _Dir] = {}

    def copy(node: _File | _Dir) -> _File | _Dir:
        done = copies.get(id(node))
        if done is not None:
            return done
        if isinstance(node, _File):
            content = file_content.get(id(node))
            if content is None:
                content = bytearray(node.durable)
            new_file = _File(bytearray(content), bytearray(content), [])
            copies[id(node)] = new_file
            return new_file
        new_dir = _Dir({}, {}, [])
        copies[id(node)] = new_dir
        entries = _surviving_entries(node, dir_prefix.get(id(node), 0))
        for name, child in entries.items():
            new_dir.entries[name] = copy(child)
        new_dir.durable = dict(new_dir.entries)
        return new_dir

    result = copy(root)
    assert isinstance(result, _Dir)
    return result
