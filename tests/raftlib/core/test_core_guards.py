"""Guards of the core that no test of this directory pinned down: each test here fails on a
small change (a mutant) of one safety- or liveness-relevant check that left the pure-core tests
(tests/raftlib/core) green; a few of those mutants the slower simulator tests catch too.

The mutants each test kills are named in its docstring as ``file:line`` of the code it guards
(as of the mutation audit that added this file), so a later audit can tell which check a test
is about."""

from __future__ import annotations

import random
from typing import Any

import pytest

from raftlib.core import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
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
from raftlib.core.leader import SNAPSHOT_STALL_ELECTION_TIMEOUTS
from raftlib.core.log import RaftLog
from raftlib.core.membership import (
    Change,
    ChangeOp,
    MembershipError,
    apply_changes,
    check_conf,
    encode_conf,
    leave_joint,
)
from raftlib.core.types import ConfState, InstallSnapshot, Ready, SnapshotMeta
from raftlib.errors import ConfigError, NotLeader, ProposalDropped
from tests.raftlib.core.network import (
    CORE_TEST_DEFAULTS,
    ack_all,
    become_leader,
    drain,
    make_core,
    sent,
)

CONF = ConfState((1, 2, 3))
NO_PREVOTE: dict[str, Any] = {"pre_vote": False, "check_quorum": False}
# An election timeout of exactly 10 ticks (drawn from [10, 11)): timer tests count to it.
EXACT_TIMEOUT: dict[str, Any] = {"election_timeout_ticks_min": 10, "election_timeout_ticks_max": 11}
TIMEOUT = 10


def vote_responses(core: RaftCore) -> list[RequestVoteResponse]:
    return [m for m in sent(core) if isinstance(m, RequestVoteResponse)]


def append_responses(readies: list[Ready]) -> list[AppendEntriesResponse]:
    return [m for r in readies for m in r.messages if isinstance(m, AppendEntriesResponse)]


def anomalies(readies: list[Ready]) -> list[tuple[str, bool]]:
    return [(a.text, a.fatal) for r in readies for a in r.anomalies]


def around_the_timeout(core: RaftCore) -> list[tuple[Role, int]]:
    """(role, term) after ``TIMEOUT - 1`` more ticks and after one tick more: a timer that
    restarted at the last input fires exactly at the second."""
    for _ in range(TIMEOUT - 1):
        core.tick()
    before = (core.role, core.term)
    core.tick()
    return [before, (core.role, core.term)]


def follower_of(leader: int, term: int = 2, **config: Any) -> RaftCore:
    """Node 1, a follower that heard from ``leader`` in ``term`` (its log is empty)."""
    core = make_core(1, term=term, **config)
    core.step(AppendEntries(term, leader, 1, 0, 0))
    drain(core)
    assert core.role is Role.FOLLOWER and core.leader == leader
    return core


# --- PreVote (thesis §9.6) ---------------------------------------------------------------------


def test_a_pre_vote_is_refused_to_a_candidate_whose_log_is_behind() -> None:
    """Thesis §9.6 with §5.4.1: a pre-vote is granted only when a real vote could be, so never
    to a log less up to date than ours, even for a newer term (election.py:44 ``and``)."""
    core = make_core(1, term=2, log_terms=[1, 2, 2])
    drain(core)
    core.step(RequestVote(3, 2, 1, 2, 2, pre_vote=True))
    (reply,) = vote_responses(core)
    assert reply.pre_vote and not reply.granted
    assert core.term == 2


def test_a_pre_vote_is_refused_when_its_term_is_not_above_ours() -> None:
    """Thesis §9.6: a pre-vote asks for the term after the candidate's; one that does not name
    a term above ours could only win a term we are already in (election.py:44 ``>``)."""
    core = make_core(1, term=3, log_terms=[1, 2, 2])
    drain(core)
    core.step(RequestVote(3, 2, 1, 3, 2, pre_vote=True))
    (reply,) = vote_responses(core)
    assert reply.pre_vote and not reply.granted


def test_a_pre_candidate_refused_by_a_quorum_returns_to_follower() -> None:
    """Thesis §9.6: a pre-candidate that a quorum refuses goes back to follower in its term
    (election.py:70)."""
    core = make_core(1, term=1)
    core.campaign()
    drain(core)
    assert core.role is Role.PRE_CANDIDATE
    for peer in (2, 3):
        core.step(RequestVoteResponse(1, peer, 1, False, pre_vote=True))
    assert (core.role, core.term) == (Role.FOLLOWER, 1)


def test_a_pre_vote_answer_is_ignored_by_a_node_that_is_no_pre_candidate() -> None:
    """Thesis §9.6: pre-vote answers count only towards a pre-candidacy; refusals arriving at a
    leader of the same term must not be tallied as lost votes that depose it
    (election.py:61)."""
    core = make_core(1, term=1, **NO_PREVOTE)
    become_leader(core)
    term = core.term
    for peer in (2, 3):
        core.step(RequestVoteResponse(term, peer, 1, False, pre_vote=True))
    assert core.role is Role.LEADER
    assert core.term == term


# --- election timer (Figure 2, Followers) --------------------------------------------------------


def test_granting_a_vote_restarts_the_election_timer() -> None:
    """Figure 2 (Followers): a follower campaigns only after an election timeout without
    hearing from a leader or granting a vote; the grant restarts the count from zero
    (election.py:55)."""
    core = make_core(1, term=2, **NO_PREVOTE, **EXACT_TIMEOUT)
    drain(core)
    for _ in range(TIMEOUT - 1):
        core.tick()
    core.step(RequestVote(2, 2, 1, 0, 0))
    (reply,) = vote_responses(core)
    assert reply.granted
    assert around_the_timeout(core) == [(Role.FOLLOWER, 2), (Role.CANDIDATE, 3)]


def test_an_append_from_the_known_leader_restarts_the_election_timer() -> None:
    """Figure 2 (Followers): each AppendEntries from the current leader restarts the election
    timeout from zero: exactly a timeout of silence after it, and not a tick sooner, the
    follower campaigns (follower.py:51)."""
    core = follower_of(2, **NO_PREVOTE, **EXACT_TIMEOUT)
    for _ in range(TIMEOUT - 1):
        core.tick()
    core.step(AppendEntries(2, 2, 1, 0, 0))
    drain(core)
    assert [role for role, _ in around_the_timeout(core)] == [Role.FOLLOWER, Role.CANDIDATE]


def test_the_first_append_from_a_new_leader_restarts_the_election_timer() -> None:
    """Figure 2 (Followers): the first AppendEntries of the term's leader (learnt from it,
    same term) restarts the election timeout from zero (follower.py:45)."""
    core = make_core(1, term=2, **NO_PREVOTE, **EXACT_TIMEOUT)
    drain(core)
    for _ in range(TIMEOUT - 1):
        core.tick()
    core.step(AppendEntries(2, 2, 1, 0, 0))
    drain(core)
    assert core.leader == 2
    assert [role for role, _ in around_the_timeout(core)] == [Role.FOLLOWER, Role.CANDIDATE]


# --- leadership transfer (thesis §3.10) ----------------------------------------------------------


def test_timeout_now_from_a_node_that_is_not_our_leader_is_ignored() -> None:
    """Thesis §3.10: only the current leader hands over leadership; a TimeoutNow from any other
    node must not make a follower campaign (election.py:82, :83)."""
    core = follower_of(2)
    core.step(TimeoutNow(2, 3, 1))
    drain(core)
    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, 2, 2)


# --- two leaders in one term (§5.2 Election Safety) ----------------------------------------------


def test_a_leader_never_obeys_an_append_from_another_leader_of_its_term() -> None:
    """§5.2 Election Safety: there is at most one leader per term; a leader that receives an
    AppendEntries of its own term from another node reports it and changes nothing
    (follower.py:33, :34)."""
    core = make_core(1, term=1, **NO_PREVOTE)
    become_leader(core)
    term, last = core.term, core.last_index
    core.step(AppendEntries(term, 2, 1, 0, 0, (Entry(term, 1, b"other"),), 1))
    readies = drain(core)
    assert core.role is Role.LEADER
    assert core.last_index == last and core.entries(1, 1)[0].data == b""
    assert not append_responses(readies)
    assert len(anomalies(readies)) == 1


def test_a_follower_never_obeys_a_second_leader_of_its_term() -> None:
    """§5.2 Election Safety: a follower that follows node 2 in a term and hears an
    AppendEntries of the same term from node 3 reports two leaders and neither appends nor
    answers (follower.py:43, :53)."""
    core = follower_of(2)
    core.step(AppendEntries(2, 3, 1, 0, 0, (Entry(2, 1, b"other"),), 1))
    readies = drain(core)
    assert core.leader == 2 and core.last_index == 0 and core.commit_index == 0
    assert not append_responses(readies)
    assert len(anomalies(readies)) == 1


def test_a_follower_never_installs_a_snapshot_from_a_second_leader_of_its_term() -> None:
    """§5.2 Election Safety with §7: a snapshot from a node that is not the leader this
    follower follows in the term is not installed (follower.py:114)."""
    core = follower_of(2)
    core.step(InstallSnapshot(2, 3, 1, SnapshotMeta(5, 2, CONF)))
    readies = drain(core)
    assert core.pending_install is None and core.commit_index == 0
    assert all(r.snapshot is None for r in readies)
    assert not append_responses(readies)
    assert len(anomalies(readies)) == 1


# --- AppendEntries at or below the commit index (§5.3, §5.4) ------------------------------------


def test_an_append_contradicting_the_entry_at_the_commit_index_halts_the_follower() -> None:
    """§5.4 Leader Completeness: a leader's log holds every committed entry, so an append whose
    prev entry is our committed entry AT the commit index with another term means a lost disk:
    the follower halts (a fatal anomaly), it does not merely refuse (follower.py:58)."""
    core = make_core(1, term=3, commit=3, log_terms=[1, 1, 2])
    drain(core)
    core.step(AppendEntries(3, 2, 1, 3, 3, (Entry(3, 4, b"x"),), 4))
    readies = drain(core)
    fatal = [text for text, is_fatal in anomalies(readies) if is_fatal]
    assert fatal and "diverged at index 3" in fatal[0]
    assert core.last_index == 3


def test_committed_entries_sent_again_are_acknowledged_once_up_to_what_was_compared() -> None:
    """§5.3: entries the follower already committed are compared (never rewritten) and the
    append is acknowledged once, at its last entry, not at our commit index: a leader whose
    log is shorter must learn only what matched (follower.py:81, :82)."""
    core = make_core(1, term=2, commit=4, log_terms=[1, 1, 1, 1])
    drain(core)
    entries = (Entry(1, 2, b"2"), Entry(1, 3, b"3"))
    core.step(AppendEntries(2, 2, 1, 1, 1, entries, 4))
    acks = append_responses(drain(core))
    assert [(a.success, a.match_index) for a in acks] == [(True, 3)]


def test_a_rejection_hint_never_names_a_committed_index() -> None:
    """§5.3 (fast backtracking): the follower's hint is where the conflicting term starts in
    its log, but never at or below its commit index: committed entries match every later
    leader's log, so the leader need not send them again (follower.py:164)."""
    core = make_core(1, term=3, commit=2, log_terms=[2, 2, 2, 2, 2])
    drain(core)
    core.step(AppendEntries(3, 2, 1, 5, 3, (), 2))
    (reject,) = append_responses(drain(core))
    assert not reject.success
    assert (reject.conflict_index, reject.conflict_term) == (3, 2)


# --- InstallSnapshot (§7) ----------------------------------------------------------------------


def _install(log_terms: list[int], commit: int, meta: SnapshotMeta) -> tuple[RaftCore, Ready]:
    follower = make_core(2, term=3, commit=commit, log_terms=log_terms)
    drain(follower)
    follower.step(InstallSnapshot(3, 1, 2, meta))
    return follower, follower.ready()


def test_a_snapshot_at_exactly_the_commit_index_is_not_installed() -> None:
    """§7: a snapshot is taken only when it holds committed entries the follower lacks; one
    ending at its commit index brings nothing (follower.py:139)."""
    follower, rd = _install([1, 1, 2, 2], commit=4, meta=SnapshotMeta(4, 2, CONF))
    assert rd.snapshot is None and follower.pending_install is None
    acks = [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    assert [(a.success, a.match_index) for a in acks] == [(True, 4)]


def test_a_snapshot_whose_last_entry_has_another_term_in_our_log_resets_the_log() -> None:
    """§7 (Figure 13 step 6): the log after a snapshot is kept only when it holds the
    snapshot's last entry with the same term; an entry of another term there is a conflicting
    suffix and the whole log goes (follower.py:146 ``and``)."""
    follower, rd = _install([1, 1, 2, 2, 2], commit=2, meta=SnapshotMeta(4, 3, CONF))
    assert rd.snapshot is not None and not rd.snapshot_keeps_log
    follower.advance(rd)
    assert follower.last_index == 4 and follower.first_index == 5


def test_a_snapshot_ending_at_our_last_durable_entry_keeps_the_log() -> None:
    """§7 (Figure 13 step 6): a follower whose durable log holds the snapshot's last entry
    (same index and term) keeps its log, up to and including the last durable entry
    (follower.py:146 ``<=``)."""
    _, rd = _install([1, 1, 2, 2], commit=2, meta=SnapshotMeta(4, 2, CONF))
    assert rd.snapshot is not None and rd.snapshot_keeps_log


def test_the_answers_to_a_snapshot_echo_no_read_round() -> None:
    """Thesis §6.4: a follower's echo of a heartbeat round confirms the leader's reads; its
    answer to a snapshot (installed or not) is no such echo and must carry read_ctx 0
    (follower.py:119, :134)."""
    follower, rd = _install([1, 1], commit=2, meta=SnapshotMeta(4, 2, CONF))
    installed = [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    follower.advance(rd)
    follower.step(InstallSnapshot(3, 1, 2, SnapshotMeta(3, 2, CONF)))
    again = append_responses(drain(follower))
    assert [(a.match_index, a.read_ctx) for a in installed] == [(4, 0)]
    assert [(a.match_index, a.read_ctx) for a in again] == [(4, 0)]
    assert follower.leader == 1


# --- a leader's timers: heartbeats, CheckQuorum, transfers, snapshot stalls ---------------------


def leader_with_acks(**config: Any) -> RaftCore:
    """Node 1 leading (term 2) with followers 2 and 3 caught up on its NOOP."""
    core = make_core(1, term=1, **{**NO_PREVOTE, **config})
    ack_all(core, become_leader(core))
    drain(core)
    assert core.commit_index == 1
    return core


def test_a_leader_sends_heartbeats_exactly_every_heartbeat_interval() -> None:
    """Figure 2 (Leaders) and §5.2: an idle leader sends empty AppendEntries every heartbeat
    interval, restarting the count after each round, neither more often nor less
    (leader.py:67)."""
    core = leader_with_acks(heartbeat_interval_ticks=3)
    beats = []
    for _ in range(9):
        core.tick()
        beats.append(any(isinstance(m, AppendEntries) and m.dst == 2 for m in sent(core)))
    assert beats == [False, False, True] * 3


def test_check_quorum_runs_once_per_minimum_election_timeout() -> None:
    """Thesis §9.6 (CheckQuorum): a leader checks every election_timeout_ticks_min ticks that
    a quorum was heard from in that period; heard from at first, then cut off, it steps down
    at the end of the second period exactly (leader.py:53)."""
    core = leader_with_acks(check_quorum=True, **EXACT_TIMEOUT)
    for _ in range(2 * TIMEOUT - 1):
        core.tick()
    drain(core)
    before = core.role
    core.tick()
    assert [before, core.role] == [Role.LEADER, Role.FOLLOWER]


def test_a_leadership_transfer_is_abandoned_after_exactly_an_election_timeout() -> None:
    """Thesis §3.10: while a transfer is under way the leader refuses proposals; one that did
    not finish within an election timeout (counted from the transfer's start) is abandoned,
    and proposals are accepted again (leader.py:56, :82)."""
    core = make_core(1, term=1, **NO_PREVOTE, **EXACT_TIMEOUT)
    msgs = become_leader(core)
    ack_all(core, [m for m in msgs if m.dst == 3])  # node 2 never answers: not caught up
    drain(core)
    for _ in range(3):
        core.tick()
    core.transfer_leadership(2)
    assert not [m for m in sent(core) if isinstance(m, TimeoutNow)]
    for _ in range(TIMEOUT - 1):
        core.tick()
    with pytest.raises(ProposalDropped):
        core.propose(b"x")
    core.tick()
    assert core.propose(b"x") == core.last_index


def test_a_transfer_of_leadership_to_the_leader_itself_changes_nothing() -> None:
    """Thesis §3.10: transferring leadership to the current leader is a no-op: no transfer
    starts, proposals are still accepted (leader.py:78)."""
    core = leader_with_acks()
    core.transfer_leadership(1)
    assert core.propose(b"x") == 2


def test_an_empty_proposal_batch_is_refused() -> None:
    """A proposal appends at least one command: an empty batch is refused rather than
    answered with the index of an entry it never appended (leader.py:104, :105)."""
    core = leader_with_acks()
    with pytest.raises(ValueError, match="at least one command"):
        core.propose_batch([])
    assert core.last_index == 1


def _leader_sending_a_snapshot_to_2(hint: int = 1, **config: Any) -> RaftCore:
    """Leader 1 whose log was compacted to 3; follower 2 refuses an append and hints that its
    log may match up to ``hint - 1`` only (below the snapshot's last entry): it is sent the
    snapshot (progress state SNAPSHOT)."""
    core = leader_with_acks(**config)
    core.propose_batch([b"a", b"b", b"c"])
    for _ in range(3):
        ack_all(core, sent(core))
    assert core.commit_index == 4
    core.snapshot_taken(SnapshotMeta(3, core.term_at(3) or 0, CONF))
    core.compact(3)
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=4, conflict_index=hint))
    snaps = [m for m in sent(core) if isinstance(m, InstallSnapshot) and m.dst == 2]
    assert len(snaps) == 1 and core.status().progress[2].state == "snapshot"
    return core


def test_a_snapshot_transfer_without_progress_is_restarted_after_the_stall_timeout() -> None:
    """§7: a snapshot transfer that made no progress for SNAPSHOT_STALL_ELECTION_TIMEOUTS
    election timeouts is presumed lost and the snapshot is sent again, at once and not a tick
    earlier (leader.py:35, :45-:49)."""
    core = _leader_sending_a_snapshot_to_2(heartbeat_interval_ticks=4, **EXACT_TIMEOUT)
    stall = SNAPSHOT_STALL_ELECTION_TIMEOUTS * (TIMEOUT + 1)
    assert _ticks_until_the_snapshot_goes_to_2_again(core, stall) == stall


def _ticks_until_the_snapshot_goes_to_2_again(core: RaftCore, stall: int) -> int | None:
    """Tick until the leader sends node 2 an InstallSnapshot (at most twice ``stall``)."""
    for tick in range(1, 2 * stall):
        core.tick()
        if any(isinstance(m, InstallSnapshot) and m.dst == 2 for m in sent(core)):
            return tick
    return None


def test_a_command_that_is_not_bytes_is_refused() -> None:
    """Entries carry bytes (the log and the wire store nothing else): a proposal of any other
    type is refused before anything is appended (leader.py:114, :115)."""
    core = leader_with_acks()
    with pytest.raises(TypeError, match="must be bytes"):
        core.propose_batch([b"ok", "text"])  # type: ignore[list-item]
    assert core.last_index == 1


def test_an_acknowledgement_beyond_the_leaders_log_is_reported_and_ignored() -> None:
    """§5.3: a follower's log matches the leader's at most up to the leader's last entry; an
    acknowledgement of more is reported and changes no progress or commit (leader.py:138,
    :142)."""
    core = leader_with_acks()
    core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=7))
    readies = drain(core)
    assert len(anomalies(readies)) == 1
    assert core.status().progress[2].match == 1 and core.commit_index == 1


@pytest.mark.parametrize(
    ("leader_terms", "rejected", "hint", "next_prev"),
    [
        # The follower's log ends before the probe: go to its end.
        ([1, 1, 1], 3, (2, 0), 1),
        # We hold entries of the follower's conflicting term 2 (up to 3): resume after them.
        ([1, 2, 2, 3, 3], 5, (2, 2), 3),
        # We hold no entry of term 2: skip the follower's whole run of it (from 3).
        ([1, 1, 3, 3], 4, (3, 2), 2),
    ],
)
def test_a_rejection_moves_the_next_probe_to_where_the_logs_may_match(
    leader_terms: list[int], rejected: int, hint: tuple[int, int], next_prev: int
) -> None:
    """§5.3 (the optimisation at the end of the section; etcd's fast backtracking): after a
    rejection carrying the follower's conflict index and term, the leader's next probe skips
    every index where the logs cannot match, and no more (leader.py:168-:174)."""
    core = make_core(1, term=leader_terms[-1], log_terms=leader_terms, **NO_PREVOTE)
    msgs = become_leader(core)
    (probe,) = [m for m in msgs if isinstance(m, AppendEntries) and m.dst == 2]
    assert probe.prev_log_index == rejected
    conflict_index, conflict_term = hint
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=rejected,
                                    conflict_index=conflict_index, conflict_term=conflict_term,
                                    stream=probe.stream))
    (again,) = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert again.prev_log_index == next_prev


@pytest.mark.parametrize("hint", [1, 2, 3])
def test_a_follower_whose_next_entry_is_compacted_is_sent_the_snapshot(hint: int) -> None:
    """§7: a follower that needs any entry the leader compacted away, up to and including the
    snapshot's last one, is sent the snapshot instead of entries (leader.py:204)."""
    core = _leader_sending_a_snapshot_to_2(hint)
    assert core.status().progress[2].next == hint


def test_a_late_echo_of_an_older_heartbeat_round_does_not_shorten_the_lease() -> None:
    """Thesis §6.4 and §6.4.1: what a follower acknowledged only grows; an echo of an earlier
    round that the network delivered late must not move it back (it shortened the lease, and
    could hold back reads the newer echo confirmed) (leader.py:127)."""
    lease: dict[str, Any] = {"lease_reads": True, "lease_drift_ticks": 3}
    core = make_core(1, term=1, **lease)
    ack_all(core, become_leader(core))
    drain(core)
    rounds = []
    for _ in range(2):
        core.tick()
        (beat,) = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
        rounds.append(beat)
    older, newer = rounds
    assert older.read_ctx < newer.read_ctx

    def echo(beat: AppendEntries) -> None:
        core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=1,
                                        read_ctx=beat.read_ctx, stream=beat.stream))

    echo(newer)
    left = core.lease_ticks_left()
    echo(older)  # the older echo arrives last
    assert left > 0
    assert core.lease_ticks_left() == left


def _appends_to(msgs: list[Message], dst: int) -> list[AppendEntries]:
    return [m for m in msgs if isinstance(m, AppendEntries) and m.dst == dst]


def test_a_heartbeat_round_that_carries_entries_sends_no_extra_empty_append() -> None:
    """§5.3 and Figure 2 (Leaders): a heartbeat is an AppendEntries; when a follower is owed
    entries, the round sends them and nothing more (leader.py:227, :231)."""
    core = leader_with_acks()
    core.propose_batch([b"x"])  # owed to every follower, not yet flushed
    core.tick()  # a heartbeat round (every tick here)
    appends = _appends_to(sent(core), 2)
    assert [(len(a.entries), a.prev_log_index) for a in appends] == [(1, 1)]


def test_the_commit_index_sent_with_entries_is_not_sent_again_empty() -> None:
    """Figure 2 (AppendEntries, leaderCommit): the commit index rides with every append; once
    a follower was sent it with entries, no empty append follows to repeat it
    (leader.py:226)."""
    core = leader_with_acks()
    core.propose_batch([b"x"])
    first = sent(core)
    ack_all(core, [m for m in first if m.dst == 3])  # commits 2
    core.propose_batch([b"y"])  # the first append to node 2 since: it carries commit 2
    (with_commit,) = _appends_to(sent(core), 2)
    assert (with_commit.entries[0].index, with_commit.commit) == (3, 2)
    ack_all(core, _appends_to(first, 2))  # node 2's late answer for index 2
    assert _appends_to(sent(core), 2) == []


def test_a_heartbeat_to_a_probed_follower_behind_the_compacted_log_sends_the_snapshot() -> None:
    """§7: a follower whose next entry was compacted away while a probe to it was out is sent
    the snapshot at the next heartbeat, and no append naming an entry the leader no longer has
    (leader.py:240, :241)."""
    core = leader_with_acks()
    core.propose_batch([b"a", b"b", b"c"])
    msgs = sent(core)
    for _ in range(3):
        ack_all(core, [m for m in msgs if m.dst == 3])
        msgs = sent(core)
    assert core.commit_index == 4
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=4, conflict_index=2))
    (probe,) = _appends_to(sent(core), 2)
    assert probe.prev_log_index == 1
    core.snapshot_taken(SnapshotMeta(3, core.term_at(3) or 0, CONF))
    core.compact(3)
    core.tick()
    msgs = [m for m in sent(core) if m.dst == 2]
    assert [type(m) for m in msgs] == [InstallSnapshot]


def test_a_pre_vote_grant_for_another_term_than_the_one_asked_is_not_counted() -> None:
    """Thesis §9.6: a pre-candidate in term t counts only grants of term t + 1 (the term it
    asks for); a late grant of an earlier round must not win it a candidacy
    (election.py:63, :64)."""
    core = make_core(1, term=1)
    core.campaign()
    drain(core)
    assert core.role is Role.PRE_CANDIDATE
    core.step(RequestVoteResponse(1, 2, 1, True, pre_vote=True))  # a grant asking for term 1
    assert (core.role, core.term) == (Role.PRE_CANDIDATE, 1)


def test_a_node_that_wins_its_election_alone_asks_no_one_for_a_vote() -> None:
    """§5.2 with thesis §4.3: a candidate that is a quorum by itself (the only voter of the
    configuration its log ends with: here the entry leaving a joint configuration that
    removed nodes 2 and 3) becomes leader at once; no (pre-)vote request goes to the voters
    of the joint configuration still in force (election.py:101, :121)."""
    joint = ConfState((1,), (), (1, 2, 3))
    entries = [
        Entry(1, 1, encode_conf(joint), EntryKind.CONF),
        Entry(1, 2, encode_conf(leave_joint(joint)), EntryKind.CONF),
    ]
    config = CoreConfig(node_id=1, voters=(1, 2, 3), **CORE_TEST_DEFAULTS)
    core = RaftCore(config, random.Random(0), HardState(1, 0, 1), entries, applied=0)
    drain(core)  # entry 1 is applied: the joint configuration is in force
    assert core.conf == joint
    core.campaign()
    msgs = sent(core)
    assert core.role is Role.LEADER
    assert not [m for m in msgs if isinstance(m, RequestVote)]


def test_an_acknowledgement_that_unblocks_no_follower_leaves_nothing_ready() -> None:
    """The Ready contract (raft.py): ``has_ready`` is True only when ``ready()`` has something;
    an acknowledgement that leaves every follower it owes entries paused (its window of
    unacknowledged appends still full) does not cost the driver an empty Ready
    (leader.py:275)."""
    core = leader_with_acks(inflight_appends_max=1)
    core.propose_batch([b"x"])
    drain(core)  # x goes out: each follower's window (one append) is full
    core.propose_batch([b"y"])
    drain(core)  # y is owed to both, and waits
    core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=1))  # a duplicate
    assert not core.has_ready()


# --- the snapshot API of the core (§7) ---------------------------------------------------------


def test_a_snapshot_is_taken_at_the_applied_index_and_a_newer_one_replaces_it() -> None:
    """§7: a snapshot covers what the state machine applied, up to and including the applied
    index; each newer one replaces the last (what followers behind the log are sent)
    (leader.py:296, :300)."""
    core = leader_with_acks()
    core.propose_batch([b"a", b"b"])
    ack_all(core, sent(core))
    drain(core)
    assert core.applied_index == 3
    first = SnapshotMeta(2, core.term_at(2) or 0, CONF)
    core.snapshot_taken(first)
    newest = SnapshotMeta(3, core.term_at(3) or 0, CONF)
    core.snapshot_taken(newest)
    core.snapshot_taken(first)  # a late, older one changes nothing
    assert core.snapshot == newest


def test_a_snapshot_the_state_machine_cannot_have_taken_is_refused() -> None:
    """§7: a snapshot holds applied entries only, with their terms; one beyond the applied
    index, with another term than the log's, or not a snapshot at all is a driver bug and is
    refused (leader.py:295, :297, :299)."""
    core = leader_with_acks()
    with pytest.raises(AssertionError, match="beyond applied"):
        core.snapshot_taken(SnapshotMeta(2, core.term, CONF))
    with pytest.raises(AssertionError, match="wrong term"):
        core.snapshot_taken(SnapshotMeta(1, core.term + 1, CONF))
    with pytest.raises(TypeError, match="SnapshotMeta"):
        core.snapshot_taken((1, core.term))  # type: ignore[arg-type]
    assert core.snapshot is None


def test_the_log_is_never_compacted_past_the_durable_snapshot() -> None:
    """§7: only entries a durable snapshot covers may be dropped from the log (leader.py:307,
    :308)."""
    core = leader_with_acks()
    core.propose_batch([b"a", b"b"])
    ack_all(core, sent(core))
    drain(core)
    with pytest.raises(AssertionError, match="no durable snapshot"):
        core.compact(2)
    core.snapshot_taken(SnapshotMeta(2, core.term_at(2) or 0, CONF))
    with pytest.raises(AssertionError, match="no durable snapshot"):
        core.compact(3)
    assert core.first_index == 1


def test_progress_of_a_snapshot_transfer_restarts_its_stall_timeout() -> None:
    """§7: a transfer that shows progress (a chunk acknowledged) is not presumed lost: the
    stall timeout counts from its last progress. Progress or failure reported for a node that
    is not being sent a snapshot changes nothing (leader.py:314, :315, :320)."""
    core = _leader_sending_a_snapshot_to_2(heartbeat_interval_ticks=4, **EXACT_TIMEOUT)
    stall = SNAPSHOT_STALL_ELECTION_TIMEOUTS * (TIMEOUT + 1)
    for _ in range(stall - 1):
        core.tick()
    core.snapshot_progress(2)
    for node in (3, 9):  # a follower in replicate state, and no follower at all
        core.snapshot_progress(node)
        core.snapshot_failed(node)
    assert core.status().progress[3].state == "replicate"
    assert _ticks_until_the_snapshot_goes_to_2_again(core, stall) == stall



# --- quorums and the configurations that decide them (§5.2, thesis §4.1, §4.3) ---------------


def test_no_quorum_of_an_empty_voter_set_exists() -> None:
    """§5.2: a quorum is a strict majority of at least one voter; the size of a quorum of no
    voters is refused, not made up (quorum.py:22, :23)."""
    assert [quorum.quorum_size(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="voters_count must be >= 1"):
        quorum.quorum_size(0)


def test_a_restarted_node_counts_the_configuration_its_log_brings() -> None:
    """Thesis §4.1: a server uses the latest configuration in its log, committed or not; a
    joining node restarted with an uncommitted entry that makes it a voter may campaign
    (log.py:49: the CONF entries a restarted log holds are found)."""
    entries = [
        Entry(1, 1, b"", EntryKind.NOOP),
        Entry(1, 2, encode_conf(ConfState((1, 2, 3, 4))), EntryKind.CONF),
    ]
    config = CoreConfig(node_id=4, voters=(), **CORE_TEST_DEFAULTS)
    core = RaftCore(config, random.Random(0), HardState(1, 0, 1), entries, applied=0)
    drain(core)
    assert core.conf == ConfState(()) and core.is_voter
    core.campaign()
    assert core.role is Role.PRE_CANDIDATE


# --- the in-memory log's queries, with and without a compacted prefix (§5.3, §7) --------------

# Terms of entries 1..8 (never decreasing along a log, §5.3); data of i bytes at index i.
LOG_TERMS = [1, 1, 2, 2, 2, 4, 4, 5]


def _model_logs() -> list[tuple[RaftLog, int, int]]:
    """The same log whole, and compacted to 1, 3 and 5: (log, base index, base term)."""
    full = [Entry(t, i, b"d" * i) for i, t in enumerate(LOG_TERMS, start=1)]
    logs = []
    for base in (0, 1, 3, 5):
        base_term = LOG_TERMS[base - 1] if base else 0
        logs.append((RaftLog(full[base:], base, base_term), base, base_term))
    return logs


def _term(index: int, base: int, base_term: int) -> int | None:
    if index == base:
        return base_term
    if base < index <= len(LOG_TERMS):
        return LOG_TERMS[index - 1]
    return 0 if index == 0 else None


def test_the_log_answers_term_entry_and_slice_like_a_naive_model() -> None:
    """§5.3 and §7: a log after a snapshot knows the term of its base (the snapshot's last
    entry) and of its entries, and nothing of what is compacted or beyond its end; its
    entries and slices are exactly the held ones (log.py:75-:89)."""
    last = len(LOG_TERMS)
    for log, base, base_term in _model_logs():
        for index in range(0, last + 3):
            assert log.term(index) == _term(index, base, base_term), (base, index)
            if base < index <= last:
                assert log.entry(index).index == index
            elif index <= base:
                with pytest.raises(AssertionError, match="compacted"):
                    log.entry(index)
        for lo in range(0, last + 2):
            for hi in range(0, last + 2):
                expected = [i for i in range(max(lo, base + 1), min(hi, last) + 1)]
                assert [e.index for e in log.slice(lo, hi)] == expected, (base, lo, hi)


def test_the_log_batches_entries_within_the_count_and_byte_limits() -> None:
    """§5.3 (flow control): a batch from ``lo`` holds at most count_max entries whose data
    totals at most bytes_max, but at least one entry when ``lo`` is held; compacted entries
    cannot be batched (log.py:94-:105)."""
    last = len(LOG_TERMS)
    for log, base, _ in _model_logs():
        for lo in range(base + 1, last + 2):
            for count_max in (1, 2, 8):
                for bytes_max in range(0, 30):
                    batch = [e.index for e in log.entries_from(lo, count_max, bytes_max)]
                    expected: list[int] = []
                    for index in range(lo, min(last, lo + count_max - 1) + 1):
                        if expected and sum(expected) + index > bytes_max:
                            break
                        expected.append(index)
                        if sum(expected) > bytes_max:
                            break
                    assert batch == expected, (base, lo, count_max, bytes_max)
        with pytest.raises(AssertionError, match="compacted"):
            log.entries_from(base, 1, 1)


def test_the_log_finds_where_a_term_starts_and_ends_like_a_naive_model() -> None:
    """§5.3 (fast backtracking): the first index in [lo, hi] whose term is >= t (hi + 1 when
    none), and the last index <= hi whose term is <= t (the base when only it qualifies, 0
    when not even the base does), over held entries only (log.py:118-:136)."""
    last = len(LOG_TERMS)
    for log, base, base_term in _model_logs():
        for term in range(0, 7):
            for hi in range(0, last + 2):
                top = min(hi, last)
                for lo in range(0, last + 2):
                    held = range(max(lo, base + 1), top + 1)
                    first = next((i for i in held if LOG_TERMS[i - 1] >= term), top + 1)
                    assert log.first_index_of_term(term, lo, hi) == first, (base, term, lo, hi)
                at_most = next((i for i in range(top, base, -1) if LOG_TERMS[i - 1] <= term),
                               None)
                if at_most is None:
                    at_most = min(top, base) if base_term <= term else 0
                assert log.last_index_of_term_at_most(term, hi) == at_most, (base, term, hi)


def test_the_log_finds_the_first_entry_it_lacks_like_a_naive_model() -> None:
    """§5.3: of a leader's entries, the first one the follower's log does not hold (past its
    end, or another term at that index); entries at or below the base count as held: a
    snapshot covers them (log.py:142-:151)."""
    last = len(LOG_TERMS)
    for log, base, _ in _model_logs():
        for first in range(1, last + 2):
            for conflict_at in range(first, last + 3):
                entries = [Entry(LOG_TERMS[i - 1] if i <= last and i < conflict_at else 9, i)
                           for i in range(first, last + 3)]
                expected = next((p for p, e in enumerate(entries)
                                 if e.index > base and (e.index > last or e.term == 9)),
                                len(entries))
                assert log.find_conflict(entries) == expected, (base, first, conflict_at)


def test_the_log_appends_and_replaces_only_right_after_what_it_holds() -> None:
    """§5.3: entries are appended right after the last one, and a conflicting suffix is
    replaced from an index in (base, last + 1]: never over the base, never leaving a gap
    (log.py:157-:175)."""
    for log, base, _ in _model_logs():
        last = log.last_index
        with pytest.raises(AssertionError, match="does not follow"):
            log.append([Entry(9, last + 2)])
        for first in (base, last + 2):
            with pytest.raises(AssertionError, match="replace at"):
                log.replace_from([Entry(9, first)])
        log.replace_from([])
        assert log.last_index == last
        log.replace_from([Entry(9, last + 1)])
        assert log.last_index == last + 1


def test_replacing_a_suffix_forgets_the_configurations_it_held() -> None:
    """Thesis §4.1: a configuration counts from when its entry is in the log; an entry that a
    conflicting suffix replaced (§5.3) no longer does, and one before the suffix still does
    (log.py:180)."""
    conf = encode_conf(CONF)
    for first in (2, 3, 4):
        log = RaftLog([Entry(1, 1), Entry(1, 2), Entry(1, 3, conf, EntryKind.CONF), Entry(1, 4)])
        log.replace_from([Entry(2, first, conf, EntryKind.CONF)])
        assert log.conf_indexes == ([3, first] if first > 3 else [first]), first


def test_the_log_is_compacted_only_over_durable_entries_above_its_base() -> None:
    """§7: compaction drops durable entries only (up to the persisted index, inclusive); one
    to or below the base changes nothing (log.py:193-:196)."""
    log = RaftLog([Entry(1, i) for i in range(3, 8)], 2, 1)
    log.compact(2)
    log.compact(0)
    assert (log.base_index, log.last_index, log.term(5)) == (2, 7, 1)
    log.append([Entry(2, 8)])  # not durable yet
    with pytest.raises(AssertionError, match="beyond persisted"):
        log.compact(8)
    log.compact(7)
    assert (log.base_index, log.base_term, log.last_index) == (7, 1, 8)


def test_compaction_keeps_the_configurations_after_the_new_base_only() -> None:
    """Thesis §4.1 with §7: configurations of entries a snapshot now covers are the snapshot's
    business; those after the new base still count (log.py:200)."""
    conf = encode_conf(CONF)
    entries = [Entry(1, i, conf if i in (2, 4, 6) else b"",
                     EntryKind.CONF if i in (2, 4, 6) else EntryKind.NORMAL) for i in range(1, 8)]
    log = RaftLog(entries)
    log.compact(4)
    assert log.conf_indexes == [6]


def test_entries_are_handed_out_once_and_persisted_only_once_handed() -> None:
    """The Ready contract (raft.py): each new entry is handed to the driver once, after the
    snapshot's base as well; an acknowledgement of persistence counts only what was handed
    (log.py:217, :224)."""
    log = RaftLog([Entry(1, 3), Entry(1, 4)], 2, 1)
    log.append([Entry(2, 5), Entry(2, 6)])
    assert [e.index for e in log.take_unhanded()] == [5, 6]
    assert log.take_unhanded() == ()
    log.append([Entry(2, 7)])
    log.mark_persisted(7)  # 7 was never handed: only up to 6 is durable
    assert (log.persisted, log.handed) == (6, 6)
    log.check()


def test_a_failed_snapshot_transfer_probes_right_after_what_the_follower_holds() -> None:
    """§5.3 with §7: a leader that gives up on a snapshot transfer probes the follower again
    from right after its acknowledged match, not beyond it (progress.py:160)."""
    core = _leader_sending_a_snapshot_to_2()
    core.snapshot_failed(2)
    progress = core.status().progress[2]
    assert progress.next == progress.match + 1


def test_a_probing_leader_counts_only_the_refusal_of_its_outstanding_probe() -> None:
    """§5.3 (probing one append per round trip): while probing, only the refusal of the probe
    that is out moves the probe point back; a refusal naming another index (late or
    duplicated) changes nothing (progress.py:247, :253; the swarm's livelock of seed 513)."""
    core = make_core(1, term=3, log_terms=[1, 1, 2, 2, 3], **NO_PREVOTE)
    msgs = become_leader(core)
    (probe,) = _appends_to(msgs, 2)
    assert probe.prev_log_index == 5
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=3, conflict_index=2,
                                    conflict_term=1, stream=probe.stream))
    assert _appends_to(sent(core), 2) == []
    assert core.status().progress[2].next == 6


# --- membership changes (thesis §4.1-§4.3) ------------------------------------------------------


def test_only_a_leader_with_no_transfer_under_way_appends_a_configuration_change() -> None:
    """Thesis §4.1: configuration changes are log entries only the leader appends; none while
    a leadership transfer is under way (§3.10), nor by a halted leader (reconfigure.py:143,
    :144, :146)."""
    remove_3 = [Change(ChangeOp.REMOVE, 3)]
    follower = follower_of(2)
    with pytest.raises(NotLeader):
        follower.propose_conf_change(remove_3)
    assert follower.last_index == 0
    core = leader_with_acks(**EXACT_TIMEOUT)
    core.transfer_leadership(2)
    with pytest.raises(ProposalDropped):
        core.propose_conf_change(remove_3)
    assert core.last_index == 1


def test_a_committed_entry_that_is_no_configuration_halts_the_node() -> None:
    """Thesis §4.1: a committed CONF entry is a configuration the cluster agreed on; one that
    does not decode means corrupt storage: the node halts with a fatal anomaly instead of
    going on with a configuration nobody chose (reconfigure.py:192, :194)."""
    config = CoreConfig(node_id=1, voters=(1, 2, 3), **CORE_TEST_DEFAULTS)
    entries = [Entry(1, 1, b"not a configuration", EntryKind.CONF)]
    core = RaftCore(config, random.Random(0), HardState(1, 0, 1), entries, applied=0)
    readies = drain(core)
    assert [fatal for _, fatal in anomalies(readies)] == [True]
    assert core.conf == ConfState((1, 2, 3))


def test_a_leader_stops_replicating_to_a_member_once_its_removal_took_effect() -> None:
    """Thesis §4.2.2: once the configuration without a member took effect, the leader no
    longer tracks (or sends to) it (reconfigure.py:214)."""
    core = leader_with_acks()
    core.propose_conf_change([Change(ChangeOp.REMOVE, 3)])
    ack_all(core, [m for m in sent(core) if m.dst == 2])
    drain(core)
    assert core.conf.voters == (1, 2)
    assert set(core.status().progress) == {2}


def test_a_transfer_to_a_node_whose_removal_took_effect_is_abandoned() -> None:
    """Thesis §3.10 with §4.2.2: leadership is handed only to a voter; once the target's
    removal took effect the transfer is abandoned and proposals are accepted again
    (reconfigure.py:215, :216)."""
    core = leader_with_acks()
    core.propose_conf_change([Change(ChangeOp.REMOVE, 3)])
    appends = sent(core)
    core.transfer_leadership(3)  # still a voter: its removal has not taken effect
    with pytest.raises(ProposalDropped):
        core.propose(b"x")
    ack_all(core, [m for m in appends if m.dst == 2])
    drain(core)
    assert core.conf.voters == (1, 2)
    assert core.propose(b"x") == 3


def test_a_learner_that_applies_a_configuration_keeps_following_its_leader() -> None:
    """Thesis §4.2.1 (learners): a non-voting member applying a configuration keeps
    following the leader it hears from; it only stops counting as a voter
    (reconfigure.py:225)."""
    config = CoreConfig(node_id=4, voters=(), **CORE_TEST_DEFAULTS)
    core = RaftCore(config, random.Random(0))
    conf = ConfState((1, 2, 3), (4,))
    core.step(AppendEntries(2, 1, 4, 0, 0, (Entry(2, 1, encode_conf(conf), EntryKind.CONF),), 1))
    drain(core)
    assert core.conf == conf
    assert (core.role, core.leader) == (Role.FOLLOWER, 1)


def test_a_member_added_by_the_leader_is_probed_right_after_the_configuration_entry() -> None:
    """Thesis §4.2.1: a member the leader starts to track is assumed to hold the leader's
    whole log, up to the configuration entry that adds it: its first probe asks about exactly
    that entry, neither past the leader's log nor before it (reconfigure.py:175)."""
    core = leader_with_acks()
    index = core.propose_conf_change([Change(ChangeOp.ADD_LEARNER, 4)])
    assert core.status().progress[4].next == index + 1
    probes = _appends_to(sent(core), 4)
    assert [(p.prev_log_index, p.prev_log_term) for p in probes] == [(index, core.term)]


def test_a_candidate_steps_down_only_when_a_configuration_without_it_takes_effect() -> None:
    """Thesis §4.2.2: a node that campaigns while committed configuration entries still wait
    to take effect goes on campaigning when they keep it a voter, and returns to follower
    when they removed it (reconfigure.py:225, :226)."""
    entries = [Entry(1, 1, b"", EntryKind.NOOP),
               Entry(1, 2, encode_conf(ConfState((1, 2))), EntryKind.CONF)]
    roles = []
    for node_id in (1, 3):
        config = CoreConfig(node_id=node_id, voters=(1, 2, 3), **CORE_TEST_DEFAULTS)
        core = RaftCore(config, random.Random(0), HardState(1, 0, 2), entries, applied=0)
        core.campaign()  # before the first Ready applies entry 2
        drain(core)
        assert core.conf == ConfState((1, 2))
        roles.append(core.role)
    assert roles == [Role.PRE_CANDIDATE, Role.FOLLOWER]


@pytest.mark.parametrize(
    "conf",
    [
        ConfState((0, 1)),  # a node id must be >= 1
        ConfState((True, 2)),  # and an int, not a bool
        ConfState((1, 1, 2)),  # no duplicates
        ConfState((1, 2), (3, 3)),
        ConfState((), (), (1, 2)),  # a joint configuration needs incoming voters
        ConfState((1, 2), (), (), ((1, "a"), (3, "c"))),  # an address for no member
        ConfState((1, 2), (), (), ((1, 2),)),  # type: ignore[arg-type]  # (id, str) pairs
        ConfState((1, 2), (), (), ((1,),)),  # type: ignore[arg-type]
    ],
)
def test_a_configuration_no_correct_cluster_holds_is_refused(conf: ConfState) -> None:
    """Thesis §4.1: a configuration entry names voters, learners and addresses by valid,
    distinct node ids; any other is refused where it is decoded or made (membership.py:85-
    :107)."""
    with pytest.raises(MembershipError):
        check_conf(conf)


def test_a_change_that_is_no_change_is_refused_and_a_removal_forgets_the_member() -> None:
    """Thesis §4.1: a change names a valid node; removing a learner (or a voter) takes it and
    its address out of the configuration (membership.py:124, :125, :147, :150)."""
    conf = ConfState((1, 2, 3), (4,), (), ((3, "c:1"), (4, "d:1")))
    for change in (Change(ChangeOp.REMOVE, 0), Change(ChangeOp.ADD_VOTER, True), "x"):
        with pytest.raises(MembershipError, match="not a valid change"):
            apply_changes(conf, (change,))  # type: ignore[arg-type]
    assert apply_changes(conf, (Change(ChangeOp.REMOVE, 4),)) == ConfState(
        (1, 2, 3), (), (), ((3, "c:1"),))
    assert apply_changes(conf, (Change(ChangeOp.REMOVE, 3),)) == ConfState(
        (1, 2), (4,), (), ((4, "d:1"),))


# --- linearizable reads (thesis §6.4) ------------------------------------------------------------


def test_each_read_is_answered_once_its_own_heartbeat_round_is_confirmed() -> None:
    """Thesis §6.4 (ReadIndex): a read waits for a quorum to echo a round sent after it was
    registered; an earlier read whose round is confirmed is answered without waiting for a
    later read's round (reads.py:51)."""
    core = leader_with_acks()
    rounds = []
    for request_id in (1, 2):
        core.read_index(request_id)
        (beat,) = _appends_to(sent(core), 2)
        rounds.append(beat)
    first, _second = rounds
    core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=1,
                                    read_ctx=first.read_ctx, stream=first.stream))
    states = [s for r in drain(core) for s in r.read_states]
    assert [(s.request_id, s.index) for s in states] == [(1, 1)]


def test_a_node_that_does_not_lead_refuses_a_forwarded_read() -> None:
    """Thesis §6.4: only the leader may name a read index; any other node answers a forwarded
    read with the refusal (index 0), so the asker retries instead of waiting (reads.py:67)."""
    core = follower_of(2)
    core.step(ReadIndexRequest(2, 3, 1, 7))
    (answer,) = [m for m in sent(core) if isinstance(m, ReadIndexResponse)]
    assert (answer.dst, answer.request_id, answer.index) == (3, 7, 0)


def test_a_forwarded_read_is_served_or_dropped_only_on_the_answer_of_the_node_asked() -> None:
    """Thesis §6.4: a follower forwards a read to its leader and serves it at the index that
    leader names; a refusal (index 0) drops the read for a retry and never serves it at index
    0, and an answer from any other node is ignored (reads.py:71-:76)."""
    core = follower_of(2)
    for request_id in (7, 8, 9):
        core.read_index(request_id)
    drain(core)
    core.step(ReadIndexResponse(2, 3, 1, 7, 5))  # node 3 was not asked
    core.step(ReadIndexResponse(2, 2, 1, 7, 0))
    core.step(ReadIndexResponse(2, 2, 1, 8, 1))
    readies = drain(core)
    assert [r for rd in readies for r in rd.dropped_reads] == [7]
    assert [(s.request_id, s.index) for rd in readies for s in rd.read_states] == [(8, 1)]
    core.step(ReadIndexResponse(2, 3, 1, 9, 4))  # still not the node asked
    assert not core.has_ready()


def test_a_leader_that_steps_down_refuses_the_reads_forwarded_to_it() -> None:
    """Thesis §6.4: reads a leader had not confirmed when it lost leadership are refused
    (index 0), so their followers retry with the next leader (reads.py:83)."""
    core = leader_with_acks()
    core.step(ReadIndexRequest(core.term, 2, 1, 7))
    drain(core)
    core.step(AppendEntries(core.term + 1, 3, 1, 1, core.term, (), 1))
    answers = [m for m in sent(core) if isinstance(m, ReadIndexResponse)]
    assert [(a.dst, a.request_id, a.index) for a in answers] == [(2, 7, 0)]


def test_a_restarted_node_refuses_votes_for_a_whole_election_timeout_with_lease_reads() -> None:
    """Thesis §6.4.1 (lease reads): a node that (re)started may have acknowledged a round
    that grants a leader its lease; it refuses (pre)votes for its first
    election_timeout_ticks_min ticks, not a tick fewer (lease.py:58)."""
    lease: dict[str, Any] = {"lease_reads": True, "lease_drift_ticks": 3, **EXACT_TIMEOUT}
    core = make_core(1, term=1, **lease)
    drain(core)
    answers = []
    for ticks in (TIMEOUT - 1, 1):
        for _ in range(ticks):
            core.tick()
        core.step(RequestVote(2, 2, 1, 0, 0, pre_vote=True))
        answers += [m.granted for m in vote_responses(core) if m.dst == 2]
    assert answers == [False, True]


def test_a_lease_round_is_kept_for_the_lease_counted_in_ticks() -> None:
    """Thesis §6.4.1: the lease counts from when its round was sent, in ticks; a leader that
    sends heartbeats every few ticks (so its round numbers trail its tick count) keeps a
    fresh, acknowledged round for the whole lease (lease.py:80)."""
    lease: dict[str, Any] = {"lease_reads": True, "lease_drift_ticks": 3,
                             "heartbeat_interval_ticks": 3}
    core = leader_with_acks(check_quorum=True, **lease)
    beat = None
    for _ in range(30):
        core.tick()
        beats = _appends_to(sent(core), 2)
        for b in beats:  # node 2 echoes every round at once: with the leader, a quorum
            core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=1,
                                            read_ctx=b.read_ctx, stream=b.stream))
        beat = beats[-1] if beats else beat
    assert beat is not None and 0 < beat.read_ctx < 30
    core.tick()
    assert core.lease_ticks_left() > 0


def _leader_with_a_lease_committing(conf_data: bytes) -> RaftCore:
    """Node 1 restarted with a CONF entry of term 1 holding ``conf_data`` and not known to be
    committed, elected in term 2 with lease reads; followers 2 and 3 acknowledge its appends
    and its first heartbeat round at once, so the entry commits (with the leader's no-op) as
    its lease round is confirmed."""
    config = CoreConfig(node_id=1, voters=(1, 2, 3), **{
        **CORE_TEST_DEFAULTS, **NO_PREVOTE, "check_quorum": True, "lease_reads": True,
        "lease_drift_ticks": 3})
    entries = [Entry(1, 1, conf_data, EntryKind.CONF)]
    core = RaftCore(config, random.Random(0), HardState(1, 0, 0), entries, applied=0)
    appends = become_leader(core)
    core.tick()  # the first heartbeat round, stamped for the lease
    ack_all(core, appends + sent(core))  # the commit and the round's confirmation, together
    drain(core)
    return core


def test_a_halted_leader_serves_no_read_under_its_lease() -> None:
    """A node halted by a fatal anomaly disagrees with its cluster about what is committed:
    it answers no read from its state, not even one its lease would cover (lease.py:159)."""
    healthy = _leader_with_a_lease_committing(encode_conf(CONF))
    assert healthy.commit_index == 2 and healthy.lease_ticks_left() > 0
    halted = _leader_with_a_lease_committing(b"not a configuration")
    assert halted.role is Role.LEADER and halted.commit_index == 2
    assert halted.lease_ticks_left() == 0


def test_without_lease_reads_heartbeats_start_no_read_round() -> None:
    """Thesis §6.4: without lease reads, read rounds are started by reads only; a heartbeat
    carries the last read round, not a new one (lease.py:147, :148)."""
    core = leader_with_acks()
    for _ in range(3):
        core.tick()
        assert {b.read_ctx for b in _appends_to(sent(core), 2)} == {0}


# --- the core's inputs and status (raft.py) ------------------------------------------------------


def test_a_halted_node_takes_no_more_input_from_its_clock() -> None:
    """§5.4 (State Machine Safety): a node whose committed log contradicts the leader's halts;
    it must not go on to campaign when its election timeout passes (raft.py:278, :279)."""
    core = make_core(1, term=3, commit=3, log_terms=[1, 1, 2])
    drain(core)
    core.step(AppendEntries(3, 2, 1, 3, 3, (), 3))
    assert [fatal for _, fatal in anomalies(drain(core))] == [True]
    for _ in range(100):
        core.tick()
    assert (core.role, core.term) == (Role.FOLLOWER, 3)
    assert not core.has_ready()


def test_the_core_api_checks_its_config_and_reports_its_id_and_snapshots() -> None:
    """The core's API: its config must be a CoreConfig (raft.py:115, :116); it names its node
    (raft.py:191); before any snapshot its status says snapshot index 0 (raft.py:271), and a
    snapshot it accepted waits as pending_install for the driver (raft.py:238)."""
    with pytest.raises(ConfigError, match="must be a CoreConfig"):
        RaftCore({"node_id": 1}, random.Random(0))  # type: ignore[arg-type]
    core = make_core(3)
    assert core.node_id == 3
    assert core.status().snapshot_index == 0 and core.snapshot is None
    meta = SnapshotMeta(4, 2, CONF)
    core.step(InstallSnapshot(2, 1, 3, meta))
    assert core.pending_install == meta


def _learner_4(**config: Any) -> RaftCore:
    """Node 4, a learner of (1, 2, 3) that follows leader 1 in term 2."""
    core = RaftCore(CoreConfig(node_id=4, voters=(), **{**CORE_TEST_DEFAULTS, **config}),
                    random.Random(0))
    conf = ConfState((1, 2, 3), (4,))
    core.step(AppendEntries(2, 1, 4, 0, 0, (Entry(2, 1, encode_conf(conf), EntryKind.CONF),), 1))
    drain(core)
    assert (core.conf, core.leader, core.is_voter) == (conf, 1, False)
    return core


def test_campaign_is_ignored_by_a_leader_and_by_a_node_that_is_no_voter() -> None:
    """§5.2 with thesis §4.2.1: only a voter that does not lead campaigns; a leader asked to
    campaign keeps leading, a learner never asks for votes (raft.py:307, :308)."""
    leader = leader_with_acks()
    term = leader.term
    leader.campaign()
    assert (leader.role, leader.term) == (Role.LEADER, term)
    learner = _learner_4()
    learner.campaign()
    assert learner.role is Role.FOLLOWER
    assert not [m for m in sent(learner) if isinstance(m, RequestVote)]


def test_a_learner_that_hears_nothing_for_an_election_timeout_forgets_its_leader() -> None:
    """Thesis §4.2.1: a non-voter never campaigns, but after a whole election timeout of
    silence it stops naming a leader that may be gone (raft.py:294, :297)."""
    learner = _learner_4(**EXACT_TIMEOUT)
    for _ in range(TIMEOUT - 1):
        learner.tick()
    before = learner.leader
    learner.tick()
    assert [before, learner.leader] == [1, NO_NODE]
    assert learner.role is Role.FOLLOWER
