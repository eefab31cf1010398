"""Hypothesis properties: quorum math against brute force, safety under random schedules,
and step() surviving arbitrary message field values."""

from __future__ import annotations

import contextlib
from itertools import combinations
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    Message,
    RaftCore,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    Role,
    TimeoutNow,
    quorum,
)
from raftlib.errors import NotLeader, ProposalDropped, ProposalQueueFull
from tests.raftlib.core.network import Network, ack_all, become_leader, drain, make_core

# --- quorum math against brute force ----------------------------------------------------------


def naive_committed_index(matches: list[int]) -> int:
    """The largest index held by some majority subset of the voters (brute force)."""
    best = 0
    need = len(matches) // 2 + 1
    for subset in combinations(range(len(matches)), need):
        best = max(best, min(matches[i] for i in subset))
    return best


@given(st.lists(st.integers(0, 50), min_size=1, max_size=7))
def test_committed_index_matches_brute_force(matches: list[int]) -> None:
    """quorum.committed_index is the largest index some majority has replicated."""
    assert quorum.committed_index(matches) == naive_committed_index(matches)


@given(
    st.integers(1, 7).flatmap(
        lambda n: st.tuples(
            st.just(tuple(range(1, n + 1))),
            st.dictionaries(st.integers(0, n + 2), st.booleans()),
        )
    )
)
def test_vote_result_matches_brute_force(case: tuple[tuple[int, ...], dict[int, bool]]) -> None:
    """WON iff a majority granted; LOST iff no majority can still grant; else PENDING."""
    voters, votes = case
    granted = sum(1 for v in voters if votes.get(v) is True)
    undecided = sum(1 for v in voters if v not in votes)
    need = len(voters) // 2 + 1
    expected = (
        quorum.VoteResult.WON
        if granted >= need
        else quorum.VoteResult.LOST
        if granted + undecided < need
        else quorum.VoteResult.PENDING
    )
    assert quorum.vote_result(voters, votes) is expected


@given(st.integers(1, 7), st.sets(st.integers(0, 9)))
def test_has_quorum_matches_brute_force(size: int, members: set[int]) -> None:
    voters = tuple(range(1, size + 1))
    present = [v for v in voters if v in members]
    assert quorum.has_quorum(voters, members) == (2 * len(present) > size)


# --- random schedules never break safety ------------------------------------------------------

node_ids = st.integers(1, 3)
operations = st.one_of(
    st.tuples(st.just("tick"), node_ids, st.integers(1, 25)),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.integers(0, 2**16)),
    st.tuples(st.just("drop"), st.integers(0, 50), st.integers(0, 2**16)),
    st.tuples(st.just("duplicate"), st.integers(0, 50), st.integers(0, 2**16)),
    st.tuples(st.just("stabilize"), st.just(0), st.just(0)),
    st.tuples(st.just("propose"), st.integers(1, 5), st.just(0)),
    st.tuples(st.just("campaign"), node_ids, st.just(0)),
    st.tuples(st.just("crash"), node_ids, st.integers(0, 2)),
    st.tuples(st.just("restart"), node_ids, st.just(0)),
    st.tuples(st.just("cut"), node_ids, node_ids),
    st.tuples(st.just("heal"), st.just(0), st.just(0)),
    st.tuples(st.just("read"), node_ids, st.integers(0, 100)),
)


def _apply(net: Network, op: tuple[str, int, int], counter: list[int]) -> None:
    kind, a, b = op
    if kind == "tick":
        net.tick(a, b)
    elif kind in ("deliver", "drop", "duplicate") and net.queue:
        position = b % len(net.queue)
        msg = net.queue[position]
        if kind != "duplicate":
            net.queue.pop(position)
        if kind == "drop":
            net.log("drop", msg)
        else:
            net.deliver_one(msg)
    elif kind == "stabilize":
        try:
            net.stabilize(rounds_max=50)
        except AssertionError as exc:
            if "did not stabilize" not in str(exc):
                raise
    elif kind == "propose":
        leader = net.leader()
        if leader is not None:
            counter[0] += 1
            with contextlib.suppress(NotLeader, ProposalQueueFull, ProposalDropped):
                net.propose(leader, *[b"p%d.%d" % (counter[0], i) for i in range(a)])
    elif kind == "campaign" and a not in net.down:
        net.campaign(a)
    elif kind == "crash" and a not in net.down:
        if b == 0:
            net.crash(a)
        else:
            net.crash_mid_ready(a, persisted=b == 2)
    elif kind == "restart" and a in net.down:
        net.restart(a)
    elif kind == "cut" and a != b:
        net.cut(a, b)
    elif kind == "heal":
        net.heal()
    elif kind == "read" and a not in net.down:
        net.read_index(a, b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(operations, max_size=120),
    st.booleans(),
    st.integers(0, 3),
)
def test_random_schedules_keep_raft_safe(
    ops: list[tuple[str, int, int]], prevote: bool, seed: int
) -> None:
    """Any schedule of ticks, deliveries, drops, duplicates, reorders, crashes (also between
    fsync and send), restarts and partitions keeps election safety, log matching, leader
    completeness and state machine safety (the network checks after every step)."""
    net = Network(3, seed=seed, pre_vote=prevote, check_quorum=prevote, append_entries_max=2)
    counter = [0]
    for op in ops:
        _apply(net, op, counter)
    net.check_safety()
    # Every ReadState a node got points at or below what some node committed at the time,
    # which is bounded by the final committed prefix.
    for node_id in net.ids:
        for state in net.read_states[node_id]:
            assert state.index <= len(net.committed) or state.index <= max(
                net.node(i).last_index for i in net.ids
            )


# --- step() survives arbitrary messages -------------------------------------------------------

wild_ints = st.one_of(
    st.integers(-3, 8), st.integers(-(2**70), 2**70), st.sampled_from([2**63 - 1, 2**63, -1])
)
ids = st.one_of(st.integers(-1, 5), wild_ints)
wild_entries = st.lists(
    st.builds(
        Entry,
        term=wild_ints,
        index=wild_ints,
        data=st.binary(max_size=4),
        kind=st.sampled_from([0, 1, 2, -1]),
    ),
    max_size=4,
).map(tuple)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        RequestVote,
        term=wild_ints,
        src=ids,
        dst=ids,
        last_log_index=wild_ints,
        last_log_term=wild_ints,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    st.builds(
        RequestVoteResponse,
        term=wild_ints,
        src=ids,
        dst=ids,
        granted=st.booleans(),
        pre_vote=st.booleans(),
    ),
    st.builds(
        AppendEntries,
        term=wild_ints,
        src=ids,
        dst=ids,
        prev_log_index=wild_ints,
        prev_log_term=wild_ints,
        entries=wild_entries,
        commit=wild_ints,
        read_ctx=wild_ints,
    ),
    st.builds(
        AppendEntriesResponse,
        term=wild_ints,
        src=ids,
        dst=ids,
        success=st.booleans(),
        match_index=wild_ints,
        conflict_index=wild_ints,
        conflict_term=wild_ints,
        read_ctx=wild_ints,
    ),
    st.builds(TimeoutNow, term=wild_ints, src=ids, dst=ids),
    st.builds(ReadIndexRequest, term=wild_ints, src=ids, dst=ids, request_id=wild_ints),
    st.builds(
        ReadIndexResponse, term=wild_ints, src=ids, dst=ids, request_id=wild_ints, index=wild_ints
    ),
)


def _core_in(role: Role) -> RaftCore:
    core = make_core(term=2, log_terms=[1, 1, 2], commit=2)
    if role is Role.LEADER:
        ack_all(core, become_leader(core))
    elif role is not Role.FOLLOWER:
        core.campaign()
        if role is Role.CANDIDATE:
            core.step(RequestVoteResponse(3, 2, 1, True, True))
    drain(core)
    assert core.role is role
    return core


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Role)), st.lists(messages, min_size=1, max_size=8))
def test_step_survives_arbitrary_messages(role: Role, msgs: list[Message]) -> None:
    """step() never raises on hostile input (negative, huge, unknown ids, gaps, bad kinds):
    such messages are ignored or handled, and every invariant the core asserts in ready()
    still holds afterwards."""
    core = _core_in(role)
    term_before = core.term
    for msg in msgs:
        core.step(msg)
        core.tick()
        drain(core)
    status = core.status()
    assert core.term >= term_before
    assert 0 <= status.commit <= status.last_index
    assert core.term <= 2**63 - 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(0, 10**6))
def test_same_seed_same_inputs_same_outputs(schedule: list[int], seed: int) -> None:
    """Determinism: the same config, rng seed and inputs yield identical Readies."""

    def run() -> list[Any]:
        net = Network(3, seed=seed)
        out: list[Any] = []
        for step in schedule:
            if step == 0:
                net.tick_all(3)
            elif step == 1:
                net.deliver()
            elif step == 2 and net.leader() is not None:
                net.propose(net.leader() or 1, b"x")
            else:
                net.drop_queued(lambda m: m.src == 3)
            out.append([(k, repr(d)) for k, d in net.trace])
        return out

    assert run() == run()
