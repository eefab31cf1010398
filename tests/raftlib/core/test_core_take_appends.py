"""take_appends: a leader's AppendEntries leave while a Ready is being persisted (§10.2.1)."""

from __future__ import annotations

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
)
from tests.raftlib.core.network import ack_all, become_leader, drain, make_core, sent


def _leader() -> RaftCore:
    """A leader whose followers hold its NOOP (replicate state), with nothing pending."""
    core = make_core(1, pre_vote=False)
    ack_all(core, become_leader(core))
    sent(core)
    assert not core.has_ready()
    return core


def test_appends_for_proposals_made_during_a_sync_leave_before_it_ends() -> None:
    core = _leader()
    first = core.propose(b"a")
    ready = core.ready()  # "a" is being persisted
    assert [e.data for e in ready.entries] == [b"a"]
    second = core.propose(b"b")
    appends = core.take_appends()
    assert {m.dst for m in appends} == {2, 3}
    for msg in appends:
        assert [e.index for e in msg.entries] == [second]
        assert msg.prev_log_index == first
    core.advance(ready)
    # Taken once: the next Ready hands "b" to storage but does not send it again.
    later = core.ready()
    assert [e.data for e in later.entries] == [b"b"]
    assert not [m for m in later.messages if isinstance(m, AppendEntries) and m.entries]


def test_take_appends_leaves_every_other_message_for_the_ready() -> None:
    core = _leader()
    core.propose(b"a")
    in_flight = core.ready()
    core.propose(b"b")
    # A vote request in our own term is refused (we voted for ourselves); the refusal is not
    # an append, so it waits for the next Ready like any message that may depend on a sync.
    core.step(RequestVote(core.term, 3, 1, 99, core.term))
    appends = core.take_appends()
    assert appends and all(isinstance(m, AppendEntries) for m in appends)
    core.advance(in_flight)
    rest = core.ready().messages
    assert any(isinstance(m, RequestVoteResponse) for m in rest)
    assert not any(isinstance(m, AppendEntries) and m.entries for m in rest)


def test_a_follower_has_no_appends_to_take_and_keeps_its_acknowledgement() -> None:
    follower = make_core(2, pre_vote=False)
    follower.step(AppendEntries(1, 1, 2, 0, 0, (), 0))
    sent(follower)
    follower.step(AppendEntries(1, 1, 2, 0, 0, (Entry(1, 1, b"x"),), 0))
    assert follower.take_appends() == []
    ready = follower.ready()
    assert [e.index for e in ready.entries] == [1]
    # The acknowledgement rides in the Ready, to be sent only after its entries are synced.
    assert any(
        isinstance(m, AppendEntriesResponse) and m.success and m.match_index == 1
        for m in ready.messages
    )


def test_leader_counts_itself_only_for_entries_it_persisted() -> None:
    core = _leader()
    commit_before = core.commit_index
    index = core.propose(b"a")
    appends = core.take_appends()  # sent before the leader's own sync even started
    in_flight = core.ready()
    # One follower acknowledges: with the leader's copy not yet durable that is 1 of 3.
    ack_all(core, [m for m in appends if m.dst == 2])
    assert core.commit_index == commit_before
    # The leader's sync returns: now 2 of 3 hold it.
    core.advance(in_flight)
    assert core.commit_index == index


def test_two_followers_commit_an_entry_before_the_leader_persisted_it() -> None:
    core = _leader()
    index = core.propose(b"a")
    appends = core.take_appends()
    in_flight = core.ready()
    ack_all(core, appends)
    assert core.commit_index == index
    # But it is applied only once durable here too (Ready.committed holds durable entries).
    assert not core.has_ready()
    core.advance(in_flight)
    applied = [e.data for r in drain(core) for e in r.committed]
    assert applied == [b"a"]
