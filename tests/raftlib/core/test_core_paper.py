"""One test per rule of the Raft paper's §5 (and Figure 2), run against the pure core."""

from __future__ import annotations

import random

import pytest

from raftlib.core import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from tests.raftlib.core.network import (
    ack_all,
    become_leader,
    drain,
    entries_of_terms,
    make_core,
    sent,
)

NO_PREVOTE = {"pre_vote": False, "check_quorum": False}


def append(
    term: int,
    prev: tuple[int, int],
    entries: list[Entry] | tuple[Entry, ...] = (),
    commit: int = 0,
    src: int = 2,
    dst: int = 1,
) -> AppendEntries:
    return AppendEntries(term, src, dst, prev[0], prev[1], tuple(entries), commit)


def vote_request(term: int, src: int, last: tuple[int, int], dst: int = 1) -> RequestVote:
    return RequestVote(term, src, dst, last[0], last[1])


def responses(core: RaftCore) -> list[AppendEntriesResponse]:
    return [m for m in sent(core) if isinstance(m, AppendEntriesResponse)]


def core_in_role(role: Role) -> RaftCore:
    if role is Role.FOLLOWER:
        return make_core(term=1)
    if role is Role.PRE_CANDIDATE:
        core = make_core(term=1, pre_vote=True)
        core.campaign()
    elif role is Role.CANDIDATE:
        core = make_core(term=1, **NO_PREVOTE)
        core.campaign()
    else:
        core = make_core(term=1, **NO_PREVOTE)
        become_leader(core)
    drain(core)
    assert core.role is role
    return core


# --- §5.1 Raft basics -------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_follower_update_term_from_message(role: Role) -> None:
    """§5.1: a server that sees a larger term adopts it and reverts to follower, whatever its
    role; an AppendEntries of that term also names the leader."""
    core = core_in_role(role)
    core.step(append(term=10, prev=(0, 0)))
    assert (core.role, core.term, core.vote, core.leader) == (Role.FOLLOWER, 10, NO_NODE, 2)
    assert drain(core)[0].hard_state == HardState(10, NO_NODE, 0)


def test_reject_stale_term_message() -> None:
    """§5.1: a request with a stale term is rejected and answered with the current term, so the
    stale sender can update itself; nothing else changes."""
    core = make_core(term=5, log_terms=[1, 2])
    drain(core)
    core.step(append(term=3, prev=(2, 2), entries=[Entry(3, 3, b"x")], commit=2))
    core.step(vote_request(term=4, src=3, last=(9, 4)))
    msgs = sent(core)
    assert msgs == [
        AppendEntriesResponse(5, 1, 2, False),
        RequestVoteResponse(5, 1, 3, False),
    ]
    assert (core.term, core.vote, core.leader, core.last_index, core.commit_index) == (
        5,
        NO_NODE,
        NO_NODE,
        2,
        0,
    )


# --- §5.2 Leader election ---------------------------------------------------------------------


def test_start_as_follower() -> None:
    """§5.2: when servers start up, they begin as followers and send nothing."""
    core = make_core()
    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, 0, NO_NODE)
    assert sent(core) == []


def test_leader_bcast_beat() -> None:
    """§5.2: a leader sends periodic heartbeats (AppendEntries with no entries) to every
    follower, every heartbeat_interval_ticks."""
    core = make_core(heartbeat_interval_ticks=2, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.tick()
    assert sent(core) == []
    core.tick()
    beats = sent(core)
    assert [(m.dst, type(m), m.entries) for m in beats] == [  # type: ignore[union-attr]
        (2, AppendEntries, ()),
        (3, AppendEntries, ()),
    ]
    assert all(m.term == core.term for m in beats)


def test_follower_start_election() -> None:
    """§5.2: a follower that hears nothing for an election timeout increments its term, votes
    for itself and sends RequestVote to every other server; the new term and vote are in the
    same Ready as the requests, so they are persisted before the requests go out."""
    core = make_core(term=1, **NO_PREVOTE)
    for _ in range(core.config.election_timeout_ticks_max):
        core.tick()
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 2, 1)
    readies = drain(core)
    assert len(readies) == 1
    assert readies[0].hard_state == HardState(2, 1, 0)
    assert list(readies[0].messages) == [
        RequestVote(2, 1, 2, 0, 0),
        RequestVote(2, 1, 3, 0, 0),
    ]


def test_candidate_start_new_election() -> None:
    """§5.2: a candidate whose election times out (split vote) starts a new one in a new
    term."""
    core = make_core(term=1, **NO_PREVOTE)
    core.campaign()
    drain(core)
    assert core.term == 2
    for _ in range(core.config.election_timeout_ticks_max):
        core.tick()
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 3, 1)
    assert [m.term for m in sent(core) if isinstance(m, RequestVote)] == [3, 3]


@pytest.mark.parametrize(
    ("size", "votes", "expected"),
    [
        (1, {}, Role.LEADER),
        (3, {2: True, 3: True}, Role.LEADER),
        (3, {2: True}, Role.LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, Role.LEADER),
        (5, {2: True, 3: True}, Role.LEADER),
        (3, {}, Role.CANDIDATE),
        (5, {2: True}, Role.CANDIDATE),
        (5, {2: False, 3: False}, Role.CANDIDATE),
        (5, {}, Role.CANDIDATE),
        (3, {2: False, 3: False}, Role.FOLLOWER),
        (5, {2: False, 3: False, 4: False}, Role.FOLLOWER),
        (5, {2: True, 3: False, 4: False, 5: False}, Role.FOLLOWER),
    ],
)
def test_leader_election_in_one_round_rpc(
    size: int, votes: dict[int, bool], expected: Role
) -> None:
    """§5.2: a candidate wins once a majority granted its vote, loses (back to follower) once a
    majority refused, and otherwise stays a candidate."""
    core = make_core(voters=range(1, size + 1), term=1, **NO_PREVOTE)
    core.campaign()
    drain(core)
    for voter, granted in votes.items():
        core.step(RequestVoteResponse(core.term, voter, 1, granted))
    assert core.role is expected
    assert core.term == 2


@pytest.mark.parametrize(
    ("voted_for", "candidate", "granted"),
    [
        (NO_NODE, 2, True),
        (NO_NODE, 3, True),
        (2, 2, True),
        (3, 3, True),
        (2, 3, False),
        (3, 2, False),
    ],
)
def test_follower_vote(voted_for: int, candidate: int, granted: bool) -> None:
    """§5.2: each server votes for at most one candidate in a term (a repeated request from
    the same candidate is granted again, e.g. after a lost reply)."""
    core = make_core(term=1, vote=voted_for, **NO_PREVOTE)
    drain(core)
    core.step(vote_request(term=1, src=candidate, last=(0, 0)))
    assert sent(core) == [RequestVoteResponse(1, 1, candidate, granted)]


def test_follower_vote_first_come_first_served() -> None:
    """§5.2: votes go first-come-first-served, and the vote is persisted with the reply."""
    core = make_core(term=1, **NO_PREVOTE)
    drain(core)
    core.step(vote_request(term=2, src=3, last=(0, 0)))
    core.step(vote_request(term=2, src=2, last=(0, 0)))
    readies = drain(core)
    assert readies[0].hard_state == HardState(2, 3, 0)
    assert list(readies[0].messages) == [
        RequestVoteResponse(2, 1, 3, True),
        RequestVoteResponse(2, 1, 2, False),
    ]


@pytest.mark.parametrize("leader_term", [2, 3])
def test_candidate_fallback(leader_term: int) -> None:
    """§5.2: a candidate that receives AppendEntries from a leader whose term is at least its
    own recognises it and returns to follower."""
    core = make_core(term=1, **NO_PREVOTE)
    core.campaign()
    drain(core)
    assert (core.role, core.term) == (Role.CANDIDATE, 2)
    core.step(append(term=leader_term, prev=(0, 0)))
    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, leader_term, 2)


def _ticks_until_campaign(core: RaftCore) -> int:
    for ticks in range(1, core.config.election_timeout_ticks_max + 1):
        core.tick()
        if core.role is not Role.FOLLOWER:
            return ticks
    raise AssertionError("no election within election_timeout_ticks_max")


def test_follower_election_timeout_randomized() -> None:
    """§5.2: election timeouts are chosen randomly from a fixed interval ([min, max) ticks),
    and every value of the interval occurs."""
    seen = {_ticks_until_campaign(make_core(seed=seed, **NO_PREVOTE)) for seed in range(300)}
    assert seen == set(range(10, 20))


def test_election_timeouts_nonconflict() -> None:
    """§5.2: randomized timeouts make it rare that several servers time out first together
    (split votes): with 3 servers, fewer than 30% of elections start with a tie."""
    rounds, ties = 300, 0
    for round_ in range(rounds):
        timeouts = [
            _ticks_until_campaign(make_core(node_id=i, seed=round_ * 10 + i, **NO_PREVOTE))
            for i in (1, 2, 3)
        ]
        ties += timeouts.count(min(timeouts)) > 1
    assert ties / rounds < 0.3


# --- §5.3 Log replication ---------------------------------------------------------------------


def _leader_with_noop_committed(size: int = 3, **config: object) -> RaftCore:
    core = make_core(voters=range(1, size + 1), term=1, **{**NO_PREVOTE, **config})  # type: ignore[arg-type]
    ack_all(core, become_leader(core))
    drain(core)
    assert core.commit_index == 1
    return core


def test_leader_start_replication() -> None:
    """§5.3: the leader appends a command to its log and issues AppendEntries to every
    follower, with the previous entry's index and term for the consistency check."""
    core = _leader_with_noop_committed()
    index = core.propose(b"x")
    assert index == 2
    ready = drain(core)[0]
    entry = Entry(2, 2, b"x")
    assert ready.entries == (entry,)
    streams = {peer: pr.stream for peer, pr in core._progress.items()}
    assert list(ready.messages) == [
        AppendEntries(2, 1, 2, 1, 2, (entry,), 1, stream=streams[2]),
        AppendEntries(2, 1, 3, 1, 2, (entry,), 1, stream=streams[3]),
    ]


def test_leader_commit_entry() -> None:
    """§5.3: once a majority stored the entry, the leader commits it, hands it to the state
    machine, and tells followers the new commit index in later AppendEntries."""
    core = _leader_with_noop_committed()
    core.propose(b"x")
    msgs = sent(core)
    ack_all(core, msgs)
    assert core.commit_index == 2
    readies = drain(core)
    assert [e for r in readies for e in r.committed] == [Entry(2, 2, b"x")]
    commits = {m.dst: m.commit for r in readies for m in r.messages if isinstance(m, AppendEntries)}
    assert commits == {2: 2, 3: 2}


@pytest.mark.parametrize(
    ("size", "acceptors", "committed"),
    [
        (1, set(), True),
        (3, set(), False),
        (3, {2}, True),
        (3, {2, 3}, True),
        (5, set(), False),
        (5, {2}, False),
        (5, {2, 3}, True),
        (5, {2, 3, 4}, True),
        (5, {2, 3, 4, 5}, True),
    ],
)
def test_leader_acknowledge_commit(size: int, acceptors: set[int], committed: bool) -> None:
    """§5.3: an entry is committed once the leader that created it replicated it on a majority
    (the leader itself counting once it persisted the entry)."""
    core = _leader_with_noop_committed(size)
    core.propose(b"x")
    msgs = sent(core)
    ack_all(core, [m for m in msgs if m.dst in acceptors])
    drain(core)
    assert (core.commit_index == 2) is committed


def test_leader_commit_preceding_entries() -> None:
    """§5.3: committing an entry also commits all preceding entries, including those created
    by previous leaders."""
    core = make_core(term=2, log_terms=[1, 2], **NO_PREVOTE)
    msgs = become_leader(core)
    ack_all(core, msgs)
    readies = drain(core)
    assert core.commit_index == 3
    assert [(e.index, e.term) for r in readies for e in r.committed] == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize(
    ("entries", "leader_commit", "expected_commit"),
    [
        ([Entry(1, 1, b"a")], 1, 1),
        ([Entry(1, 1, b"a"), Entry(1, 2, b"b")], 2, 2),
        ([Entry(1, 1, b"a"), Entry(1, 2, b"b")], 1, 1),
        ([Entry(1, 1, b"a")], 5, 1),  # never beyond the last new entry
    ],
)
def test_follower_commit_entry(
    entries: list[Entry], leader_commit: int, expected_commit: int
) -> None:
    """§5.3 / Figure 2: a follower sets commit to min(leaderCommit, index of last new entry)
    and applies committed entries in log order once they are durable."""
    core = make_core(term=1)
    drain(core)
    core.step(append(term=1, prev=(0, 0), entries=entries, commit=leader_commit))
    assert core.commit_index == expected_commit
    applied = [e for r in drain(core) for e in r.committed]
    assert applied == entries[:expected_commit]


@pytest.mark.parametrize(
    ("prev", "success", "hint"),
    [
        ((0, 0), True, None),
        ((1, 1), True, None),
        ((2, 2), True, None),
        ((2, 1), False, (2, 2)),  # term mismatch at 2: hint where our term 2 starts
        ((3, 2), False, (3, 0)),  # we have no index 3: hint our end
    ],
)
def test_follower_check_append(
    prev: tuple[int, int], success: bool, hint: tuple[int, int] | None
) -> None:
    """§5.3 consistency check: a follower refuses an AppendEntries whose prev_log_index/term it
    does not hold, with conflict hints for fast backtracking."""
    core = make_core(term=2, log_terms=[1, 2])
    drain(core)
    core.step(append(term=2, prev=prev))
    (reply,) = responses(core)
    assert reply.success is success
    if hint is not None:
        assert (reply.match_index, reply.conflict_index, reply.conflict_term) == (prev[0], *hint)


@pytest.mark.parametrize(
    ("prev", "entries", "expected_terms", "written_from"),
    [
        ((2, 2), [(3, 3)], [1, 2, 3], 3),
        ((1, 1), [(2, 3), (3, 4)], [1, 3, 4], 2),
        ((0, 0), [(1, 1)], [1, 2], None),
        ((0, 0), [(1, 3)], [3], 1),
        ((1, 1), [(2, 2)], [1, 2], None),
    ],
)
def test_follower_append_entries(
    prev: tuple[int, int],
    entries: list[tuple[int, int]],
    expected_terms: list[int],
    written_from: int | None,
) -> None:
    """§5.3: an existing entry that conflicts with a new one (same index, different term) is
    deleted with all that follow it; entries already present are kept; new ones appended.
    The replaced suffix is handed to storage again from the first rewritten index."""
    core = make_core(term=4, log_terms=[1, 2])
    drain(core)
    new = [Entry(term, index, b"new%d" % index) for index, term in entries]
    core.step(append(term=4, prev=prev, entries=new))
    assert [e.term for e in core.log_entries()] == expected_terms
    ready = drain(core)[0]
    first_written = ready.entries[0].index if ready.entries else None
    assert first_written == written_from
    assert responses_in(ready)[0].success


def responses_in(ready: object) -> list[AppendEntriesResponse]:
    return [m for m in ready.messages if isinstance(m, AppendEntriesResponse)]  # type: ignore[attr-defined]


FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE7_FOLLOWERS))
def test_leader_sync_follower_log(make_net, case: str) -> None:  # type: ignore[no-untyped-def]
    """§5.3, Figure 7: a new leader (term 8) brings any follower log (a-f: missing entries,
    extra uncommitted entries, or both) into agreement with its own."""
    net = make_net(3)
    net.durable[1].entries = entries_of_terms(FIGURE7_LEADER)
    net.durable[1].hard_state = HardState(term=7)
    net.durable[2].entries = entries_of_terms(FIGURE7_FOLLOWERS[case])
    net.durable[2].hard_state = HardState(term=7)
    net.durable[3].hard_state = HardState(term=7)
    for node_id in (1, 2, 3):
        net.restart(node_id)
    net.campaign(1)
    net.stabilize()
    assert net.leader() == 1
    assert net.node(1).term == 8
    expected = [*FIGURE7_LEADER, 8]
    assert net.terms(2) == expected
    assert net.terms(3) == expected
    assert net.durable[2].entries == net.node(1).log_entries()
    assert net.node(2).commit_index == 11


# --- §5.4 Safety ------------------------------------------------------------------------------


def test_vote_request() -> None:
    """§5.4.1: RequestVote carries the candidate's last log index and term."""
    core = make_core(term=2, log_terms=[1, 2, 2], **NO_PREVOTE)
    core.campaign()
    msgs = sent(core)
    assert msgs == [RequestVote(3, 1, 2, 3, 2), RequestVote(3, 1, 3, 3, 2)]


@pytest.mark.parametrize(
    ("voter_log", "candidate_last", "granted"),
    [
        ([1, 1], (2, 1), True),  # same last term, same length
        ([1, 1], (3, 1), True),  # same last term, longer
        ([1, 1], (1, 1), False),  # same last term, shorter
        ([1, 2], (1, 1), False),  # older last term
        ([1, 2], (3, 1), False),  # older last term, even though longer
        ([1, 2], (2, 2), True),
        ([1, 2], (1, 3), True),  # newer last term wins even when shorter
        ([], (0, 0), True),
    ],
)
def test_voter(voter_log: list[int], candidate_last: tuple[int, int], granted: bool) -> None:
    """§5.4.1: a voter denies its vote if its own log is more up-to-date than the candidate's
    (later last term, or same last term and longer)."""
    core = make_core(term=3, log_terms=voter_log, **NO_PREVOTE)
    drain(core)
    core.step(vote_request(term=4, src=2, last=candidate_last))
    assert sent(core) == [RequestVoteResponse(4, 1, 2, granted)]


@pytest.mark.parametrize(("acked_index", "expected_commit"), [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term(acked_index: int, expected_commit: int) -> None:
    """§5.4.2: a leader never commits an entry of an earlier term by counting replicas; only
    entries of its own term, which then commit the earlier ones with them."""
    core = make_core(term=2, log_terms=[1, 2], **NO_PREVOTE)
    become_leader(core)
    drain(core)
    assert core.term == 3 and core.last_index == 3
    for follower in (2, 3):
        core.step(AppendEntriesResponse(3, follower, 1, True, acked_index))
    drain(core)
    assert core.commit_index == expected_commit


def test_leader_appends_noop_on_election() -> None:
    """§5.4.2 / §8: a new leader appends an entry of its own term (a NOOP) so that entries of
    earlier terms can commit and reads can trust its commit index."""
    core = make_core(term=2, log_terms=[1, 2], **NO_PREVOTE)
    become_leader(core)
    (noop,) = core.log_entries()[2:]
    assert (noop.index, noop.term, noop.kind, noop.data) == (3, 3, EntryKind.NOOP, b"")


def test_figure8_old_term_entry_is_not_committed_by_counting(make_net) -> None:  # type: ignore[no-untyped-def]
    """§5.4.2, Figure 8: an entry of an old term stored on a majority is NOT committed by a
    later leader counting replicas, because a server with a newer-term log can still be
    elected and overwrite it; the checker confirms nobody ever applied it."""
    net = make_net(5, append_entries_max=1, **NO_PREVOTE)
    # (a) S1 leads and replicates X at index 2 to S2 only.
    net.campaign(1)
    net.stabilize()
    net.partition([1, 2], [3], [4], [5])
    net.propose(1, b"X")
    net.stabilize()
    assert [e.data for e in net.node(2).log_entries()] == [b"", b"X"]
    term_x = net.node(1).term
    # (b) S1 crashes; S5 is elected by S3, S4, S5 and appends its own entry at index 2.
    net.crash(1)
    net.heal()
    net.partition([3, 4, 5], [1], [2])
    net.campaign(5)
    net.deliver()  # votes
    net.deliver()  # grants: S5 leads, its appends are queued
    assert net.leader() == 5
    net.drop_queued()
    net.crash(5)
    term_s5 = net.node(5).term
    assert net.terms(5) == [term_x, term_s5]
    # (c) S1 restarts, is elected by S1, S2, S3 and replicates X (old term) to S3, but its
    # own-term entry (index 3) reaches nobody.
    net.heal()
    net.partition([1, 2, 3], [4], [5])
    net.restart(1)
    net.filter = lambda m: (
        not (isinstance(m, AppendEntries) and any(e.index == 3 for e in m.entries))
    )
    for _ in range(3):
        if net.leader() == 1:
            break
        net.campaign(1)
        net.stabilize()
    assert net.leader() == 1
    net.tick(1)  # heartbeats: S3 rejects, S1 backs up and sends it X alone
    net.stabilize()
    holders = [i for i in (1, 2, 3) if net.terms(i)[:2] == [term_x, term_x]]
    assert holders == [1, 2, 3]  # X is on a majority of the five servers...
    assert net.node(1).commit_index == 1  # ...and still not committed.
    # (d) S1 crashes; S5 can be elected (votes of S2, S3, S4) and overwrites X everywhere.
    net.crash(1)
    net.filter = None
    net.heal()
    net.restart(5)
    for _ in range(3):
        if net.leader() == 5:
            break
        net.campaign(5)
        net.stabilize()
    assert net.leader() == 5
    net.restart(1)
    net.tick(5)
    net.stabilize()
    for node_id in net.ids:
        assert net.terms(node_id)[1] == term_s5
        assert b"X" not in net.applied_data(node_id)
    net.check_safety()


def test_figure8_old_term_entry_commits_with_own_term_entry(make_net) -> None:  # type: ignore[no-untyped-def]
    """§5.4.2, Figure 8 (e): once the leader's own-term entry is on a majority, it and the
    old-term entry before it are committed, and no other server can be elected to undo it."""
    net = make_net(5, **NO_PREVOTE)
    net.campaign(1)
    net.stabilize()
    net.partition([1, 2], [3], [4], [5])
    net.propose(1, b"X")
    net.stabilize()
    net.crash(1)
    net.heal()
    net.restart(1)
    for _ in range(3):
        net.campaign(1)
        net.stabilize()
        if net.leader() == 1:
            break
    assert net.leader() == 1
    assert net.node(1).commit_index == 3
    for node_id in net.ids:
        assert net.applied_data(node_id) == [b"X"]
    # S5 (or anyone) can no longer win: its log is behind a majority.
    net.partition([1], [2, 3, 4, 5])
    for _ in range(5):
        net.campaign(5)
        net.stabilize()
    assert all(net.terms(i)[:2] == [1, 1] for i in net.ids)
    net.check_safety()


def test_committed_entries_are_emitted_only_once_durable() -> None:
    """Figure 2 / §5.3 with the Ready contract: an entry committed by followers' acks before
    the leader's own write finished reaches the state machine only after that write."""
    core = _leader_with_noop_committed()
    core.propose(b"x")
    ready = core.ready()  # the driver is still writing entry 2
    ack_all(core, ready.messages)
    assert core.commit_index == 2  # a majority of followers has it: committed...
    core.advance(ready)
    after = drain(core)
    assert [e.data for r in after for e in r.committed] == [b"x"]  # ...applied once durable


def test_follower_applies_only_durable_entries() -> None:
    """The Ready contract: a follower told an entry is committed in the same message that
    carries it persists it first; the entry is applied in a later Ready."""
    core = make_core(term=1)
    drain(core)
    core.step(append(term=1, prev=(0, 0), entries=[Entry(1, 1, b"a")], commit=1))
    first = core.ready()
    assert first.entries == (Entry(1, 1, b"a"),)
    assert first.committed == ()
    assert first.hard_state == HardState(1, 0, 1)
    assert responses_in(first) == [AppendEntriesResponse(1, 1, 2, True, 1)]
    core.advance(first)
    assert [e for r in drain(core) for e in r.committed] == [Entry(1, 1, b"a")]


def test_restart_replays_committed_entries_and_keeps_vote() -> None:
    """Figure 2 (persistent state): after a restart the core keeps its term and vote, so it
    cannot vote twice in a term, and re-applies committed entries from the log."""
    hard = HardState(term=3, vote=2, commit=2)
    core = RaftCore(
        make_core().config, random.Random(1), hard, entries_of_terms([1, 2, 3]), applied=0
    )
    ready = core.ready()
    assert ready.hard_state is None  # unchanged: nothing to persist
    assert [e.index for e in ready.committed] == [1, 2]
    core.advance(ready)
    core.step(vote_request(term=3, src=3, last=(9, 3)))
    assert sent(core) == [RequestVoteResponse(3, 1, 3, False)]
