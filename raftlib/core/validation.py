"""What no correct peer can send: the core's first look at every message.

A message that fails here is counted (``CoreStatus.invalid_messages``) and dropped, never
raised: a node survives any input. The checks are stateless facts of Raft, on top of the wire
codec's (``raftlib.transport.codec.validate_message``), for messages that reach the core by
other paths (the in-memory network, tests, the simulator): numbers within a signed 64-bit
range, the receiver is us and the sender a peer, and a log position or entry run that a leader
of the message's term could hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    check = _CHECKS.get(type(msg))
    if check is None:
        for kind, kind_check in _CHECKS.items():
            if isinstance(msg, kind):
                return kind_check(msg, node_id)
        return _plausible_header(msg, node_id)
    return check(msg, node_id)


def checker(kind: type) -> Callable[[Any, NodeId], bool]:
    """``is_plausible`` for messages of exactly type ``kind``, one call and no dispatch (the
    core asks it for every message it takes)."""
    return _CHECKS.get(kind, _plausible_header)


# Every message a node receives passes here. The range tests of ``plain`` are written out
# for the two types of every replication round (``type(v) is int and 0 <= v <= top``): a
# call less per field (``plain`` stays the rule's one statement;
# tests/raftlib/core/test_core_validation.py holds this to it). The fields every message
# has are tested in one place, ``_plausible_header``.


def _plausible_header(msg: Message, node_id: NodeId) -> bool:
    """Addressed to us, from another node, with a term in range."""
    src = msg.src
    term = msg.term
    return not (msg.dst != node_id or type(src) is not int or src < 1 or src == node_id
                or type(term) is not int or not 0 <= term <= VALUE_MAX)


def _plausible_append_response(msg: AppendEntriesResponse, node_id: NodeId) -> bool:
    top = VALUE_MAX
    if not _plausible_header(msg, node_id):
        return False
    term = msg.term
    match = msg.match_index
    conflict = msg.conflict_index
    conflict_term = msg.conflict_term
    read_ctx = msg.read_ctx
    stream = msg.stream
    return (
        type(msg.success) is bool
        and type(match) is int and 0 <= match <= top
        and type(conflict) is int and 0 <= conflict <= top
        and type(conflict_term) is int and 0 <= conflict_term <= term
        and type(read_ctx) is int and 0 <= read_ctx <= top
        and type(stream) is int and 0 <= stream <= top
    )


def _plausible_append(msg: AppendEntries, node_id: NodeId) -> bool:
    top = VALUE_MAX
    if not _plausible_header(msg, node_id):
        return False
    term = msg.term
    prev = msg.prev_log_index
    prev_term = msg.prev_log_term
    commit = msg.commit
    read_ctx = msg.read_ctx
    stream = msg.stream
    entries = msg.entries
    if not (
        type(prev) is int and 0 <= prev <= top
        and type(prev_term) is int and 0 <= prev_term <= term
        and (prev == 0) == (prev_term == 0)
        and type(commit) is int and 0 <= commit <= top
        and type(read_ctx) is int and 0 <= read_ctx <= top
        and type(stream) is int and 0 <= stream <= top
        and type(entries) is tuple
    ):
        return False
    if not entries:
        return True  # a heartbeat (or a commit index): nothing more to check
    if prev + len(entries) > top:
        return False
    # Entries must follow prev contiguously with non-decreasing terms no newer than the
    # sender's: anything else cannot come from a correct leader (Log Matching).
    expected = prev + 1
    last_term = prev_term
    for entry in entries:
        if (
            type(entry) is not Entry
            or entry.index != expected
            or type(entry.term) is not int
            or not last_term <= entry.term <= term
            or type(entry.data) is not bytes
            or entry.kind not in _ENTRY_KINDS
        ):
            return False
        expected += 1
        last_term = entry.term
    return last_term >= 1


def _plausible_request_vote(msg: RequestVote, node_id: NodeId) -> bool:
    return _plausible_header(msg, node_id) and (
        plain(msg.last_log_index)
        and plain(msg.last_log_term)
        and msg.last_log_term <= msg.term
        and (msg.last_log_index == 0) == (msg.last_log_term == 0)
        and type(msg.pre_vote) is bool
        and type(msg.transfer) is bool
    )


def _plausible_vote_response(msg: RequestVoteResponse, node_id: NodeId) -> bool:
    return (_plausible_header(msg, node_id) and type(msg.granted) is bool
            and type(msg.pre_vote) is bool)


def _plausible_read_request(msg: ReadIndexRequest, node_id: NodeId) -> bool:
    return _plausible_header(msg, node_id) and type(msg.request_id) is int


def _plausible_read_response(msg: ReadIndexResponse, node_id: NodeId) -> bool:
    return (_plausible_header(msg, node_id) and type(msg.request_id) is int
            and plain(msg.index))


def _plausible_install_snapshot(msg: InstallSnapshot, node_id: NodeId) -> bool:
    meta = msg.meta
    return _plausible_header(msg, node_id) and (
        type(meta) is SnapshotMeta
        and plain(meta.index)
        and plain(meta.term)
        and meta.index >= 1
        and 1 <= meta.term <= msg.term
    )


# The test of each message type with fields of its own (any other: the header's alone).
_CHECKS: dict[type, Callable[[Any, NodeId], bool]] = {
    AppendEntries: _plausible_append,
    AppendEntriesResponse: _plausible_append_response,
    RequestVote: _plausible_request_vote,
    RequestVoteResponse: _plausible_vote_response,
    ReadIndexRequest: _plausible_read_request,
    ReadIndexResponse: _plausible_read_response,
    InstallSnapshot: _plausible_install_snapshot,
}
