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
    # Every message a node receives passes here: the range tests of ``plain`` are written out
    # (``type(v) is int and 0 <= v <= top``) and the common types are matched by ``type() is``
    # first, which saves about a call per field (``plain`` stays the rule's one statement;
    # tests/raftlib/core/test_core_validation.py holds this to it).
    src = msg.src
    term = msg.term
    top = VALUE_MAX
    if (msg.dst != node_id or type(src) is not int or src < 1 or src == node_id
            or type(term) is not int or not 0 <= term <= top):
        return False
    kind = type(msg)
    if kind is AppendEntries:
        return _plausible_append(msg)  # type: ignore[arg-type]
    if kind is AppendEntriesResponse:
        return _plausible_append_response(msg)  # type: ignore[arg-type]
    if isinstance(msg, AppendEntries):
        return _plausible_append(msg)
    if isinstance(msg, AppendEntriesResponse):
        return _plausible_append_response(msg)
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


def _plausible_append_response(msg: AppendEntriesResponse) -> bool:
    top = VALUE_MAX
    match = msg.match_index
    conflict = msg.conflict_index
    conflict_term = msg.conflict_term
    read_ctx = msg.read_ctx
    stream = msg.stream
    return (
        type(msg.success) is bool
        and type(match) is int and 0 <= match <= top
        and type(conflict) is int and 0 <= conflict <= top
        and type(conflict_term) is int and 0 <= conflict_term <= msg.term
        and type(read_ctx) is int and 0 <= read_ctx <= top
        and type(stream) is int and 0 <= stream <= top
    )


def _plausible_append(msg: AppendEntries) -> bool:
    top = VALUE_MAX
    prev = msg.prev_log_index
    prev_term = msg.prev_log_term
    commit = msg.commit
    read_ctx = msg.read_ctx
    stream = msg.stream
    if not (
        type(prev) is int and 0 <= prev <= top
        and type(prev_term) is int and 0 <= prev_term <= msg.term
        and (prev == 0) == (prev_term == 0)
        and type(commit) is int and 0 <= commit <= top
        and type(read_ctx) is int and 0 <= read_ctx <= top
        and type(stream) is int and 0 <= stream <= top
        and type(msg.entries) is tuple
    ):
        return False
    if not msg.entries:
        return True  # a heartbeat (or a commit index): nothing more to check
    if prev + len(msg.entries) > top:
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
    return last_term >= 1
