"""raftlib: Raft consensus on Trio, with durable storage and pluggable transports.

The public surface is re-exported here; everything else is internal.
"""

# ruff: noqa: E402 - the native build is activated before anything else is imported.
# First, before any compiled module could be imported: the optional native build
# (raftlib.native; only when RAFTLIB_NATIVE is set).
from raftlib import native as _native

_native.activate_from_environment()


from raftlib.core.types import Entry as Entry
from raftlib.core.types import HardState as HardState
from raftlib.core.types import Role as Role
from raftlib.errors import ConfigError as ConfigError
from raftlib.errors import CorruptLog as CorruptLog
from raftlib.errors import NotLeader as NotLeader
from raftlib.errors import ProposalDropped as ProposalDropped
from raftlib.errors import ProposalQueueFull as ProposalQueueFull
from raftlib.errors import RaftError as RaftError
from raftlib.errors import Stopped as Stopped
from raftlib.errors import StorageError as StorageError
from raftlib.node import Node as Node
from raftlib.node import NodeConfig as NodeConfig
from raftlib.node import NodeStatus as NodeStatus
from raftlib.node import open_node as open_node
from raftlib.statemachine import StateMachine as StateMachine

__all__ = [
    "ConfigError",
    "CorruptLog",
    "Entry",
    "HardState",
    "Node",
    "NodeConfig",
    "NodeStatus",
    "NotLeader",
    "ProposalDropped",
    "ProposalQueueFull",
    "RaftError",
    "Role",
    "StateMachine",
    "Stopped",
    "StorageError",
    "open_node",
]
