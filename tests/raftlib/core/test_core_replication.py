"""Replication: fast backtracking, flow control limits, backpressure and loss recovery."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    Message,
    RaftCore,
    Role,
)
from raftlib.errors import NotLeader, ProposalQueueFull
from tests.raftlib.core.network import (
    Network,
    ack_all,
    become_leader,
    drain,
    entries_of_terms,
    make_core,
    sent,
)

MakeNet = Callable[..., Network]
NO_PREVOTE = {"pre_vote": False, "check_quorum": False}
NO_PREVOTE_HEARTBEAT_TICKS = 1


def _load(net: Network, node_id: int, terms: list[int], term: int) -> None:
    net.durable[node_id].entries = entries_of_terms(terms)
    net.durable[node_id].hard_state = HardState(term=term)
    net.restart(node_id)


def _appends_to(net: Network, node_id: int) -> list[AppendEntries]:
    return [
        d
        for kind, d in net.trace
        if kind == "deliver" and isinstance(d, AppendEntries) and d.dst == node_id
    ]


def _rejections_from(net: Network, node_id: int) -> list[AppendEntriesResponse]:
    return [
        d
        for kind, d in net.trace
        if kind == "deliver"
        and isinstance(d, AppendEntriesResponse)
        and d.src == node_id
        and not d.success
    ]


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms", "rejections_max"),
    [
        # 50 divergent entries of one old term plus 60 the follower lacks.
        ([1] * 10 + [3] * 60, [1] * 10 + [2] * 50, 2),
        # 50 divergent entries spread over five old terms.
        ([1] * 10 + [7] * 60, [1] * 10 + [2] * 10 + [3] * 10 + [4] * 10 + [5] * 10 + [6] * 10, 2),
        # The follower is 300 entries behind (no divergence).
        ([1] * 310, [1] * 10, 1),
        # Leader and follower share term 2 entries but the follower has more of them.
        ([1] * 10 + [2] * 20 + [4] * 30, [1] * 10 + [2] * 70, 2),
    ],
)
def test_fast_backtracking_over_divergent_entries(
    make_net: MakeNet, leader_terms: list[int], follower_terms: list[int], rejections_max: int
) -> None:
    """§5.3 optimisation: with conflict term/index hints, a leader finds the match point with
    a divergent follower in a handful of round trips, not one per entry."""
    net = make_net(3, **NO_PREVOTE)
    top = max(leader_terms + follower_terms)
    _load(net, 1, leader_terms, top)
    _load(net, 3, leader_terms, top)
    _load(net, 2, follower_terms, top)
    net.campaign(1)
    net.stabilize()
    assert net.leader() == 1
    assert net.node(2).log_entries() == net.node(1).log_entries()
    rejections = _rejections_from(net, 2)
    assert len(rejections) <= rejections_max
    # Round trips: probes until the first accepted one (each rejection costs one).
    assert len(_appends_to(net, 2)) <= rejections_max + 1 + (len(leader_terms) + 1) // 512 + 2


def test_backtracking_hints_skip_a_whole_term() -> None:
    """§5.3: the follower's rejection names the first index of its conflicting term and the
    leader jumps straight there."""
    follower = make_core(term=3, log_terms=[1] * 10 + [2] * 50)
    drain(follower)
    follower.step(AppendEntries(3, 2, 1, 60, 3))
    (reply,) = sent(follower)
    assert isinstance(reply, AppendEntriesResponse)
    assert (reply.success, reply.match_index, reply.conflict_index, reply.conflict_term) == (
        False,
        60,
        11,
        2,
    )


def test_append_entries_max_limits_entries_per_message() -> None:
    """Flow control: no AppendEntries carries more than append_entries_max entries."""
    core = make_core(append_entries_max=4, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.propose_batch([b"x"] * 10)
    msgs = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert [len(m.entries) for m in msgs] == [4, 4, 2]
    assert [m.prev_log_index for m in msgs] == [1, 5, 9]


def test_append_bytes_max_limits_payload_but_always_sends_one_entry() -> None:
    """Flow control: entries of one AppendEntries total at most append_bytes_max bytes of
    payload, except that a single larger entry still goes (alone) so replication progresses."""
    core = make_core(append_bytes_max=250, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.propose_batch([b"a" * 100] * 3 + [b"b" * 1000] + [b"c" * 100])
    msgs = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert [[len(e.data) for e in m.entries] for m in msgs] == [[100, 100], [100], [1000], [100]]


def test_inflight_window_pauses_replication() -> None:
    """Flow control: at most inflight_appends_max unacknowledged appends per follower; each
    acknowledgement opens the window again."""
    core = make_core(append_entries_max=1, inflight_appends_max=2, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.propose_batch([b"x"] * 5)
    first = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert [m.entries[0].index for m in first] == [2, 3]
    ack_all(core, first[:1])
    more = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert [m.entries[0].index for m in more] == [4]


def test_probe_state_sends_one_append_per_round_trip() -> None:
    """Flow control: while the match point is unknown (probe state) the leader has at most
    one append in flight to that follower; the next heartbeat retries."""
    core = make_core(term=1, log_terms=[1] * 5, **NO_PREVOTE)
    msgs = become_leader(core)
    assert [m.dst for m in msgs if isinstance(m, AppendEntries)] == [2, 3]
    core.propose_batch([b"x"] * 3)
    assert [m for m in sent(core) if isinstance(m, AppendEntries)] == []
    assert core.status().progress[2].state == "probe"
    core.tick()  # heartbeat
    beats = [m for m in sent(core) if isinstance(m, AppendEntries)]
    assert [(m.dst, m.entries) for m in beats] == [(2, ()), (3, ())]


def test_an_answer_to_an_earlier_stream_changes_nothing() -> None:
    """Swarm seed 513: a late or duplicated rejection from before a follower caught up threw
    it back from streaming to probing (and reset its match), and each flip re-sent a whole
    window of one-entry appends: a message storm. Appends carry their stream and answers
    echo it; only the current stream's answers move the follower's progress."""
    core = make_core(append_entries_max=1, inflight_appends_max=4, **NO_PREVOTE)
    first = become_leader(core)
    probe = next(m for m in first if isinstance(m, AppendEntries) and m.dst == 2)
    ack_all(core, first)
    drain(core)
    core.propose_batch([b"x"] * 3)
    window = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    ack_all(core, window[:2])
    pr = core._progress[2]
    assert (pr.state.value, pr.match) == ("replicate", 3)
    assert probe.stream != pr.stream
    # A rejection of the append after prev 4 (still unanswered in the current stream), but
    # from the earlier stream: without the stream it would pass for the current one's.
    stale = AppendEntriesResponse(probe.term, 2, 1, False, match_index=4, conflict_index=1,
                                  stream=probe.stream)
    core.step(stale)
    assert (pr.state.value, pr.match) == ("replicate", 3)
    # The same rejection in the current stream is news: the follower lost what it had.
    core.step(AppendEntriesResponse(probe.term, 2, 1, False, match_index=4, conflict_index=1,
                                    stream=pr.stream))
    assert pr.state.value == "probe"


def test_a_refusal_of_an_append_a_later_one_overtook_leaves_the_stream_streaming() -> None:
    """Swarm seed 1804 (one-entry appends, network jitter): appends of one stream overtook
    each other, the follower refused the first that came too early, and the leader fell back
    to probing under a new stream, which made the acceptances still in flight stale. Each
    window then gained a few entries for a whole window of messages: a livelock the simulator
    stopped as an event storm. Only the refusal of an empty append at next - 1 (a heartbeat or
    a commit update), sent after every append of the window, says the follower is missing
    something that is not on its way."""
    core = make_core(append_entries_max=1, inflight_appends_max=8, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    pr = core._progress[2]
    assert pr.state.value == "replicate"
    match = pr.match
    core.propose_batch([b"x"] * 4)
    window = [m for m in sent(core) if isinstance(m, AppendEntries) and m.dst == 2]
    assert [m.prev_log_index for m in window] == [match, match + 1, match + 2, match + 3]
    stream = pr.stream
    # The second append arrived before the first: refused. The first is still on its way.
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=match + 1,
                                    conflict_index=match + 1, stream=stream))
    assert (pr.state.value, pr.stream) == ("replicate", stream)
    core.step(AppendEntriesResponse(core.term, 2, 1, True, match_index=match + 1,
                                    stream=stream))
    assert pr.match == match + 1
    # The follower refused the rest (it lacks the second entry), the latest too: still the
    # appends may have crossed. The next heartbeat, sent at next - 1, is refused: that counts.
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=match + 3,
                                    conflict_index=match + 2, stream=stream))
    assert (pr.state.value, pr.stream) == ("replicate", stream)
    core.step(AppendEntriesResponse(core.term, 2, 1, False, match_index=match + 4,
                                    conflict_index=match + 2, stream=stream))
    assert pr.state.value == "probe" and pr.next == match + 2


def test_lost_append_recovered_by_next_append(make_net: MakeNet) -> None:
    """Replicate state streams optimistically; a lost append leaves a gap: the follower
    refuses what follows (consistency check), and the refusal of the latest append sent (here
    the commit update after the next one) sends the leader back to the follower's match point."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.propose(1, b"a")
    net.drop_queued(lambda m: m.dst == 3)
    net.propose(1, b"b")
    net.stabilize()
    assert net.node(3).last_index == 3
    assert net.applied_data(3) == [b"a", b"b"]


def test_lost_last_append_recovered_after_heartbeat(make_net: MakeNet) -> None:
    """When the last appends to a follower are lost (entries and commit update alike), the
    next heartbeat, sent at the follower's optimistic next index, exposes the gap."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.filter = lambda m: m.dst != 3
    net.propose(1, b"a")
    net.stabilize()
    assert net.node(3).last_index == 1
    assert net.node(1).status().progress[3].state == "replicate"
    net.filter = None
    net.tick(1)
    net.stabilize()
    assert net.node(3).last_index == 2
    assert net.applied_data(3) == [b"a"]


def test_proposals_between_readies_are_batched() -> None:
    """Batching: any number of proposals made between two Readies leave in one AppendEntries
    per follower (up to append_entries_max)."""
    core = make_core(**NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    for i in range(100):
        core.propose(b"%d" % i)
    (ready,) = drain(core)
    assert len(ready.entries) == 100
    assert [(m.dst, len(m.entries)) for m in ready.messages] == [(2, 100), (3, 100)]  # type: ignore[union-attr]


def test_proposal_queue_bound_refuses_with_clear_error() -> None:
    """Backpressure: once uncommitted_entries_max entries await commit, propose raises
    ProposalQueueFull (nothing is appended); commits make room again."""
    core = make_core(uncommitted_entries_max=5, **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.propose_batch([b"x"] * 4)
    core.propose(b"y")
    with pytest.raises(ProposalQueueFull, match="uncommitted_entries_max=5"):
        core.propose(b"z")
    assert core.last_index == 6
    ack_all(core, sent(core))
    drain(core)
    assert core.commit_index == 6
    assert core.propose(b"z") == 7


def test_follower_refuses_proposals_naming_the_leader(make_net: MakeNet) -> None:
    """A follower cannot accept proposals; NotLeader tells the client who leads."""
    net = make_net(3)
    net.campaign(2)
    net.stabilize()
    with pytest.raises(NotLeader) as info:
        net.node(1).propose(b"x")
    assert info.value.leader_id == 2


def test_leader_never_overwrites_its_own_log(make_net: MakeNet) -> None:
    """Figure 3 Leader Append-Only: a deposed leader's log only changes once it is a
    follower; while leader it appends only, even when its followers diverge."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.isolate(1)
    net.propose(1, b"lost1", b"lost2")
    before = net.node(1).log_entries()
    for _ in range(40):
        net.tick_all()
        net.stabilize()
    new = net.leader()
    assert new in (2, 3)
    net.propose(new, b"kept")
    net.stabilize()
    net.heal()
    for _ in range(3):
        net.tick_all()
        net.stabilize()
    after = net.node(1).log_entries()
    assert after != before
    assert b"lost1" not in [e.data for e in after]
    assert net.applied_data(1) == [b"kept"]
    assert net.node(1).role is Role.FOLLOWER


def test_single_node_cluster_commits_after_own_write() -> None:
    """A one-node cluster elects itself and commits each entry once it is durable."""
    core = make_core(voters=(1,))
    core.campaign()
    assert core.role is Role.LEADER
    drain(core)
    core.propose(b"x")
    readies = drain(core)
    assert [e.data for r in readies for e in r.committed] == [b"x"]


def test_step_ignores_messages_not_for_this_cluster() -> None:
    """step() tolerates anything: messages for another node, from no node or with
    impossible values are counted and ignored. (A node missing from our configuration may be a
    member we have not learnt of yet: its messages are handled.)"""
    core = make_core(term=1)
    drain(core)
    bad: list[Message] = [
        AppendEntries(1, 2, 9, 0, 0),  # dst is not us
        AppendEntries(1, 0, 1, 0, 0),  # from nobody (NO_NODE)
        AppendEntries(1, 1, 1, 0, 0),  # from ourselves
        AppendEntries(-1, 2, 1, 0, 0),
        AppendEntries(1, 2, 1, 0, 5),  # prev term beyond the sender's term
        AppendEntries(1, 2, 1, 0, 0, (Entry(1, 5, b""),)),  # gap
        AppendEntries(2**70, 2, 1, 0, 0),
    ]
    for msg in bad:
        core.step(msg)
    assert core.status().invalid_messages == len(bad)
    assert (core.term, core.leader, sent(core)) == (1, 0, [])


def _leader(core: RaftCore) -> None:
    ack_all(core, become_leader(core))
    drain(core)


def test_a_follower_whose_disk_was_wiped_catches_up_instead_of_staying_stuck(
    make_net: MakeNet,
) -> None:
    """The leader believes node 3 matches its whole log; node 3 restarts with an empty disk
    and rejects every heartbeat at that index. Those rejections are current, not stale: the
    leader must probe lower and resend the log, never sit at the old match forever."""
    net = make_net(3, check=False, **NO_PREVOTE)
    net.campaign(1)
    net.stabilize()
    leader = net.leader()
    assert leader is not None
    net.propose(leader, *[b"x%d" % i for i in range(20)])
    net.stabilize()
    follower = next(i for i in net.ids if i != leader)
    assert net.node(follower).last_index == net.node(leader).last_index
    net.crash(follower)
    net.durable[follower].entries = []
    net.durable[follower].hard_state = HardState(term=net.node(leader).term)
    net.restart(follower)
    for _ in range(10):
        net.tick(leader, NO_PREVOTE_HEARTBEAT_TICKS)
        net.stabilize()
    assert net.node(follower).log_entries() == net.node(leader).log_entries()
