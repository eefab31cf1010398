"""Durable storage for raftlib: the ``Storage`` protocol and its two implementations."""

from raftlib.storage.base import Storage as Storage
from raftlib.storage.memory import MemoryStatistics as MemoryStatistics
from raftlib.storage.memory import MemoryStorage as MemoryStorage
from raftlib.storage.wal import WalStatistics as WalStatistics
from raftlib.storage.wal import WalStorage as WalStorage

__all__ = ["MemoryStatistics", "MemoryStorage", "Storage", "WalStatistics", "WalStorage"]
