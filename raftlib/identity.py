"""Which data directory a node runs on, and which data directories its peers ran on.

Raft's safety rests on each node keeping its promises across restarts: the vote it cast in a
term, and the entries it acknowledged (a leader counted them toward a commit). A node whose
disk was wiped or replaced has forgotten both. Coming back under its old id, it could vote a
second time in a term, or acknowledge again from an empty log, and a committed write could be
lost with no error anywhere. The README tells operators to replace such a node under a new id;
this module makes the cluster enforce it, as etcd refuses a member whose data directory is not
the one it bootstrapped.

Each data directory holds a random 64-bit id (``identity``), created with it. The transport's
hello carries the sender's id; each node records, durably and before it takes anything from a
peer, the id it first saw for each member (``peer-identities``), and refuses, loudly, a peer
that shows another one: a data directory that is not the one that node had, so a node that
lost its state. A directory copied whole (a backup restored) keeps its id and is not caught:
it is as old as its copy, which Raft cannot tell from a slow node (the README says so).

Ids are never forgotten, so a removed member's id cannot come back on a new disk either, for
the members that knew it. Only peers that exchanged a hello with a directory know it: a member
that was down, cut off or not yet added all that time takes a new directory for the node's
first (recording the ids in the replicated log would close that; they are each node's own).

Files (in the data directory; the storage's own files are ``raftlib.storage.wal``'s)::

    identity          "raftlib-data-id 1 <16 hex digits>\\n"; created once (tmp, fsync, rename)
    peer-identities   "<node id> <16 hex digits>\\n" per peer; replaced atomically when one is
                      added (tmp, fsync, rename, directory fsync)

A file that does not parse is refused with a one-line ``IdentityError`` naming the file and
line: the ids are what lets the cluster tell a node from a stranger, so a damaged record is not
guessed at.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable

from raftlib.core.types import NodeId
from raftlib.errors import StorageError
from raftlib.storage.fs import FileSystem, default_file_system, replace_file

IDENTITY_NAME = "identity"
PEER_IDENTITIES_NAME = "peer-identities"
_IDENTITY_HEADER = "raftlib-data-id 1 "
# Records kept in ``peer-identities``: far above any cluster's members over its life; a file
# claiming more is damaged (and a peer past it is refused rather than the file grown).
PEER_IDENTITIES_MAX = 65_536
# A data directory id is never 0: a hello carrying 0 comes from a node with no identity.
NO_DATA_ID = 0
_HEX16 = re.compile(r"[0-9a-f]{16}")
# Files of a data directory that hold Raft state (``raftlib.storage.wal``'s names).
_STATE_FILE = re.compile(r"(wal-\d+\.log|snapshot-\d+\.snap)")
# Characters of a bad line quoted in an error (the rest is cut).
QUOTED_CHARS_MAX = 60
# An identity file is a line or a few thousand; one larger than this is refused unread.
IDENTITY_FILE_BYTES_MAX = 4 * 1024 * 1024

_LOG = logging.getLogger("raftlib.identity")


class IdentityError(StorageError):
    """A data directory's identity files are unreadable or damaged (one line: file, line)."""


def format_data_id(data_id: int) -> str:
    return f"{data_id:016x}"


class DataIdentity:
    """The id of one data directory (``own``) and the ids its node saw for its peers.

    ``check`` is cheap and pure; ``record`` writes and fsyncs (call it off the event loop).
    Both may be called from any thread."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fs: FileSystem | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._directory = os.path.abspath(os.fspath(directory))
        self._fs = fs if fs is not None else default_file_system()
        self._lock = threading.Lock()
        self._peers: dict[NodeId, int] = {}
        if not self._fs.isdir(self._directory):
            raise IdentityError(f"{self._directory}: data directory does not exist")
        self.own = self._load_own(random_bytes)
        self._peers = self._load_peers()

    @property
    def directory(self) -> str:
        return self._directory

    def known(self, node: NodeId) -> int | None:
        """The data directory id first seen for ``node``; None if never seen."""
        return self._peers.get(node)

    def check(self, node: NodeId, data_id: int) -> str | None:
        """Why ``node`` showing ``data_id`` must be refused, or None (known, or new)."""
        known = self._peers.get(node)
        if known is None or known == data_id:
            return None  # (an unknown peer showing no id: an embedder's choice, not checked)
        shown = "no data directory id" if data_id == NO_DATA_ID else (
            f"data directory {format_data_id(data_id)}")
        return (f"node {node} shows {shown}, but it ran on data directory "
                f"{format_data_id(known)}: it has lost the votes and entries it promised; "
                f"replace it under a new node id (README: Replacing a node)")

    def record(self, node: NodeId, data_id: int) -> str | None:
        """Record ``data_id`` as ``node``'s, durably, unless another one is recorded: then the
        refusal, as ``check`` gives it. An id already recorded costs nothing."""
        if data_id == NO_DATA_ID:
            return self.check(node, data_id)
        with self._lock:
            refusal = self.check(node, data_id)
            if refusal is not None or node in self._peers:
                return refusal
            if len(self._peers) >= PEER_IDENTITIES_MAX:
                return (f"node {node}: {PEER_IDENTITIES_MAX} peer identities are recorded "
                        f"already (PEER_IDENTITIES_MAX); not recording another")
            peers = {**self._peers, node: data_id}
            text = "".join(f"{n} {format_data_id(i)}\n" for n, i in sorted(peers.items()))
            self._write_atomically(PEER_IDENTITIES_NAME, text.encode())
            self._peers = peers
            return None

    # --- files --------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self._directory, name)

    def _read(self, name: str) -> str | None:
        path = self._path(name)
        if not self._fs.exists(path):
            return None
        try:
            fd = self._fs.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = self._fs.size(fd)
            finally:
                self._fs.close(fd)
            if size > IDENTITY_FILE_BYTES_MAX:
                raise IdentityError(f"{path}: {size} bytes, more than an identity file holds "
                                    f"(IDENTITY_FILE_BYTES_MAX is {IDENTITY_FILE_BYTES_MAX})")
            data = self._fs.read_file(path)
        except OSError as exc:
            raise IdentityError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise IdentityError(f"{path}: not an ASCII text file") from None

    def _load_own(self, random_bytes: Callable[[int], bytes]) -> int:
        path = self._path(IDENTITY_NAME)
        text = self._read(IDENTITY_NAME)
        if text is None:
            if any(_STATE_FILE.fullmatch(name) for name in self._fs.listdir(self._directory)):
                # A directory from before ids (an upgrade), or one whose identity file was
                # deleted: peers that knew it under another id will refuse it.
                _LOG.warning(
                    "%s holds Raft state but no %s file: giving it a new data directory id; "
                    "peers that knew it under another id will refuse this node (restore the "
                    "file if it was deleted)", self._directory, IDENTITY_NAME)
            data_id = NO_DATA_ID
            while data_id == NO_DATA_ID:
                data_id = int.from_bytes(random_bytes(8), "big")
            self._write_atomically(IDENTITY_NAME,
                                   f"{_IDENTITY_HEADER}{format_data_id(data_id)}\n".encode())
            return data_id
        digits = text[len(_IDENTITY_HEADER):].rstrip("\n")
        if (not text.startswith(_IDENTITY_HEADER) or not text.endswith("\n")
                or not _HEX16.fullmatch(digits) or int(digits, 16) == NO_DATA_ID):
            raise IdentityError(
                f"{path}: line 1: expected '{_IDENTITY_HEADER}<16 hex digits>', "
                f"got {text.splitlines()[0][:QUOTED_CHARS_MAX] if text else ''!r}")
        return int(digits, 16)

    def _load_peers(self) -> dict[NodeId, int]:
        path = self._path(PEER_IDENTITIES_NAME)
        text = self._read(PEER_IDENTITIES_NAME)
        peers: dict[NodeId, int] = {}
        if text is None:
            return peers
        if text and not text.endswith("\n"):
            raise IdentityError(f"{path}: last line is cut short (no newline)")
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split(" ")
            if (len(fields) != 2 or not fields[0].isdigit() or not fields[0].isascii()
                    or int(fields[0]) < 1 or not _HEX16.fullmatch(fields[1])
                    or int(fields[1], 16) == NO_DATA_ID):
                raise IdentityError(
                    f"{path}: line {number}: expected '<node id> <16 hex digits>', "
                    f"got {line[:QUOTED_CHARS_MAX]!r}")
            node = int(fields[0])
            if node in peers:
                raise IdentityError(f"{path}: line {number}: node {node} is listed twice")
            if len(peers) >= PEER_IDENTITIES_MAX:
                raise IdentityError(
                    f"{path}: line {number}: more than {PEER_IDENTITIES_MAX} records")
            peers[node] = int(fields[1], 16)
        return peers

    def _write_atomically(self, name: str, data: bytes) -> None:
        """A crash leaves the old file or the new one (``raftlib.storage.fs.replace_file``)."""
        fs = self._fs

        def flush_directory() -> None:
            dir_fd = fs.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fs.fsync(dir_fd)
            finally:
                fs.close(dir_fd)

        replace_file(fs, self._path(name), data, flush=fs.fsync, flush_directory=flush_directory)
