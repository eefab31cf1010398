"""The replicated key-value state machine: commands, exactly-once sessions, snapshots."""

from raftlib.kv.commands import Append as Append
from raftlib.kv.commands import Cas as Cas
from raftlib.kv.commands import Delete as Delete
from raftlib.kv.commands import Incr as Incr
from raftlib.kv.commands import KvError as KvError
from raftlib.kv.commands import OpenSession as OpenSession
from raftlib.kv.commands import Request as Request
from raftlib.kv.commands import Result as Result
from raftlib.kv.commands import Set as Set
from raftlib.kv.commands import decode_command as decode_command
from raftlib.kv.commands import encode_command as encode_command
from raftlib.kv.machine import KvStateMachine as KvStateMachine
from raftlib.kv.sessions import SessionTable as SessionTable

__all__ = [
    "Append",
    "Cas",
    "Delete",
    "Incr",
    "KvError",
    "KvStateMachine",
    "OpenSession",
    "Request",
    "Result",
    "SessionTable",
    "Set",
    "decode_command",
    "encode_command",
]
