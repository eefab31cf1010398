"""Hypothesis strategies for Raft messages: every message type, always valid on the wire.

"Valid" means what ``raftlib.transport.codec.validate_message`` accepts (and any correct Raft
node can send): u64 numbers, positive distinct node ids, log positions whose index 0 has term
0, no log term above the message's term, contiguous entries with non-decreasing terms.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from raftlib.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    ConfState,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
    TimeoutNow,
)

U64_MAX = 2**64 - 1

# Mostly small values (the common case, and collisions find more bugs), sometimes the extremes.
u64s = st.one_of(st.integers(0, 20), st.integers(0, U64_MAX))
terms = st.one_of(st.integers(1, 20), st.integers(1, U64_MAX))
node_ids = st.one_of(st.integers(1, 7), st.integers(1, U64_MAX))


@st.composite
def src_dst(draw: st.DrawFn) -> tuple[int, int]:
    src = draw(node_ids)
    dst = draw(node_ids.filter(lambda n: n != src))
    return src, dst


@st.composite
def log_positions(draw: st.DrawFn, term: int) -> tuple[int, int]:
    """(index, term) of a log position that a node at ``term`` may hold."""
    index = draw(u64s)
    if index == 0:
        return 0, 0
    return index, draw(st.integers(1, term))


def _head(draw: st.DrawFn) -> dict[str, Any]:
    src, dst = draw(src_dst())
    return {"term": draw(terms), "src": src, "dst": dst}


@st.composite
def entries_after(
    draw: st.DrawFn, prev_index: int, prev_term: int, term: int, size_max: int = 8
) -> tuple[Entry, ...]:
    count = draw(st.integers(0, min(size_max, U64_MAX - prev_index)))
    entries: list[Entry] = []
    low = max(prev_term, 1)
    for i in range(count):
        low = draw(st.integers(low, term))
        entries.append(
            Entry(
                term=low,
                index=prev_index + 1 + i,
                data=draw(st.binary(max_size=64)),
                kind=draw(st.sampled_from(EntryKind)),
            )
        )
    return tuple(entries)


@st.composite
def request_votes(draw: st.DrawFn) -> RequestVote:
    head = _head(draw)
    index, log_term = draw(log_positions(head["term"]))
    return RequestVote(
        **head,
        last_log_index=index,
        last_log_term=log_term,
        pre_vote=draw(st.booleans()),
        transfer=draw(st.booleans()),
    )


@st.composite
def request_vote_responses(draw: st.DrawFn) -> RequestVoteResponse:
    head = _head(draw)
    head["term"] = draw(u64s)  # a fresh node answers at term 0
    return RequestVoteResponse(**head, granted=draw(st.booleans()), pre_vote=draw(st.booleans()))


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    head = _head(draw)
    prev_index, prev_term = draw(log_positions(head["term"]))
    return AppendEntries(
        **head,
        prev_log_index=prev_index,
        prev_log_term=prev_term,
        entries=draw(entries_after(prev_index, prev_term, head["term"])),
        commit=draw(u64s),
        read_ctx=draw(u64s),
    )


@st.composite
def append_entries_responses(draw: st.DrawFn) -> AppendEntriesResponse:
    return AppendEntriesResponse(
        **_head(draw),
        success=draw(st.booleans()),
        match_index=draw(u64s),
        conflict_index=draw(u64s),
        conflict_term=draw(u64s),
        read_ctx=draw(u64s),
    )


@st.composite
def timeout_nows(draw: st.DrawFn) -> TimeoutNow:
    return TimeoutNow(**_head(draw))


@st.composite
def read_index_requests(draw: st.DrawFn) -> ReadIndexRequest:
    return ReadIndexRequest(**_head(draw), request_id=draw(u64s))


@st.composite
def read_index_responses(draw: st.DrawFn) -> ReadIndexResponse:
    return ReadIndexResponse(**_head(draw), request_id=draw(u64s), index=draw(u64s))


@st.composite
def snapshot_metas(draw: st.DrawFn, term: int) -> SnapshotMeta:
    index = draw(st.one_of(st.integers(1, 20), st.integers(1, U64_MAX)))
    voters = tuple(draw(st.lists(node_ids, min_size=1, max_size=5, unique=True)))
    learners = tuple(draw(st.lists(node_ids, max_size=2, unique=True)))
    return SnapshotMeta(index, draw(st.integers(1, term)), ConfState(voters, learners))


@st.composite
def install_snapshots(draw: st.DrawFn) -> InstallSnapshot:
    head = _head(draw)
    return InstallSnapshot(**head, meta=draw(snapshot_metas(head["term"])))


@st.composite
def snapshot_chunks(draw: st.DrawFn) -> SnapshotChunk:
    head = _head(draw)
    data = draw(st.binary(max_size=64))
    size = draw(st.integers(len(data), len(data) + 1000))
    offset = draw(st.integers(0, size - len(data)))
    return SnapshotChunk(**head, meta=draw(snapshot_metas(head["term"])),
                         stream=draw(u64s), offset=offset, size=size,
                         crc=draw(st.integers(0, 2**32 - 1)), data=data)


@st.composite
def snapshot_chunk_acks(draw: st.DrawFn) -> SnapshotChunkAck:
    return SnapshotChunkAck(**_head(draw), stream=draw(u64s),
                            offset=draw(st.integers(-1, U64_MAX)))


MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    RequestVote: request_votes(),
    RequestVoteResponse: request_vote_responses(),
    AppendEntries: append_entries(),
    AppendEntriesResponse: append_entries_responses(),
    TimeoutNow: timeout_nows(),
    ReadIndexRequest: read_index_requests(),
    ReadIndexResponse: read_index_responses(),
    InstallSnapshot: install_snapshots(),
    SnapshotChunk: snapshot_chunks(),
    SnapshotChunkAck: snapshot_chunk_acks(),
}

messages: st.SearchStrategy[Message] = st.one_of(*MESSAGE_STRATEGIES.values())
message_batches: st.SearchStrategy[list[Message]] = st.lists(messages, min_size=1, max_size=16)
