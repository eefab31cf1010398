"""Durable storage for raftlib: the ``Storage`` protocol and its two implementations."""

from raftlib.storage.base import Recovered as Recovered
from raftlib.storage.base import SnapshotReader as SnapshotReader
from raftlib.storage.base import SnapshotWriter as SnapshotWriter
from raftlib.storage.base import Storage as Storage
from raftlib.storage.fs import CrashFS as CrashFS
from raftlib.storage.fs import FileSystem as FileSystem
from raftlib.storage.memory import MemoryStatistics as MemoryStatistics
from raftlib.storage.memory import MemoryStorage as MemoryStorage
from raftlib.storage.wal import WalStatistics as WalStatistics
from raftlib.storage.wal import WalStorage as WalStorage

__all__ = [
    "CrashFS",
    "FileSystem",
    "MemoryStatistics",
    "MemoryStorage",
    "Recovered",
    "SnapshotReader",
    "SnapshotWriter",
    "Storage",
    "WalStatistics",
    "WalStorage",
]
