"""What no correct peer can send: the core's first look at every message.

A message that fails here is counted (``CoreStatus.invalid_messages``) and dropped, never
raised: a node survives any input. The checks are stateless facts of Raft, on top of the wire
codec's (``raftlib.transport.codec.validate_message``), for messages that reach the core by
other paths (the in-memory network, tests, the simulator): numbers within a signed 64-bit
range, the receiver is us and the sender a peer, and a log position or entry run that a leader
of the message's term could hold.
"""

from __future__ import annotations

from raftlib.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
)

# Terms and indexes stay within a signed 64-bit range so storage and the wire codec can hold
# them; a message claiming more is not from a correct peer.
VALUE_MAX = (1 << 63) - 1
_ENTRY_KINDS = (EntryKind.NORMAL, EntryKind.NOOP, EntryKind.CONF)


def plain(value: object) -> bool:
    """An int in [0, VALUE_MAX] (and not a bool)."""
    return type(value) is int and 0 <= value <= VALUE_MAX


def is_plausible(msg: Message, node_id: NodeId) -> bool:
    """Whether a correct peer of ``node_id`` could have sent ``msg``. Any other node may be
    one: membership changes, and a node learns of a new member only when the change takes
    effect on it (a new voter may ask for our vote before that)."""
    src = msg.src
    if (msg.dst != node_id or type(src) is not int or src < 1 or src == node_id
            or not plain(msg.term)):
        return False
    if isinstance(msg, AppendEntries):
        return _plausible_append(msg)
    if isinstance(msg, AppendEntriesResponse):
        return (
            type(msg.success) is bool
            and plain(msg.match_index)
            and plain(msg.conflict_index)
            and plain(msg.conflict_term)
            and msg.conflict_term <= msg.term
            and plain(msg.read_ctx)
            and plain(msg.stream)
        )
    if isinstance(msg, RequestVote):
        return (
            plain(msg.last_log_index)
            and plain(msg.last_log_term)
            and msg.last_log_term <= msg.term
            and (msg.last_log_index == 0) == (msg.last_log_term == 0)
            and type(msg.pre_vote) is bool
            and type(msg.transfer) is bool
        )
    if isinstance(msg, RequestVoteResponse):
        return type(msg.granted) is bool and type(msg.pre_vote) is bool
    if isinstance(msg, ReadIndexRequest):
        return type(msg.request_id) is int
    if isinstance(msg, ReadIndexResponse):
        return type(msg.request_id) is int and plain(msg.index)
    if isinstance(msg, InstallSnapshot):
        meta = msg.meta
        return (
            type(meta) is SnapshotMeta
            and plain(meta.index)
            and plain(meta.term)
            and meta.index >= 1
            and 1 <= meta.term <= msg.term
        )
    return True


def _plausible_append(msg: AppendEntries) -> bool:
    prev = msg.prev_log_index
    prev_term = msg.prev_log_term
    if not (
        plain(prev)
        and plain(prev_term)
        and prev_term <= msg.term
        and (prev == 0) == (prev_term == 0)
        and plain(msg.commit)
        and plain(msg.read_ctx)
        and plain(msg.stream)
        and type(msg.entries) is tuple
        and prev + len(msg.entries) <= VALUE_MAX
    ):
        return False
    # Entries must follow prev contiguously with non-decreasing terms no newer than the
    # sender's: anything else cannot come from a correct leader (Log Matching).
    expected = prev + 1
    last_term = prev_term
    top = msg.term
    for entry in msg.entries:
        if (
            type(entry) is not Entry
            or entry.index != expected
            or type(entry.term) is not int
            or not last_term <= entry.term <= top
            or type(entry.data) is not bytes
            or entry.kind not in _ENTRY_KINDS
        ):
            return False
        expected += 1
        last_term = entry.term
    return last_term >= 1 or not msg.entries
