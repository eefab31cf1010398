"""Elections with PreVote and CheckQuorum (thesis §9.6), leases and leadership transfer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftlib.core import (
    NO_NODE,
    AppendEntries,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from raftlib.errors import NotLeader, ProposalDropped
from tests.raftlib.core.network import Network, become_leader, drain, make_core, sent

MakeNet = Callable[..., Network]


def elect(net: Network, node_id: int) -> None:
    net.campaign(node_id)
    net.stabilize()
    assert net.leader() == node_id


def test_election_happens_by_ticks_alone(make_net: MakeNet) -> None:
    """§5.2: with nothing but time passing, exactly one leader emerges within a few election
    timeouts, and every node learns it."""
    net = make_net(5, seed=3)
    for _ in range(60):
        net.tick_all()
        net.stabilize()
        if net.leader() is not None:
            break
    leader = net.leader()
    assert leader is not None
    assert all(net.node(i).leader == leader for i in net.ids)
    assert len(net.leaders()) == 1


def test_prevote_keeps_term_of_partitioned_node(make_net: MakeNet) -> None:
    """Thesis §9.6 PreVote: an isolated node keeps timing out but never raises its term,
    because it cannot win a pre-vote."""
    net = make_net(3)
    elect(net, 1)
    net.isolate(3)
    net.tick(3, 200)
    net.stabilize()
    assert net.node(3).term == net.node(1).term
    assert net.node(3).role is Role.PRE_CANDIDATE


def test_rejoining_node_does_not_disrupt_leader(make_net: MakeNet) -> None:
    """Thesis §9.6: a node rejoining after a partition does not depose a healthy leader nor
    bump the cluster's term."""
    net = make_net(3)
    elect(net, 1)
    term = net.node(1).term
    net.isolate(3)
    for _ in range(100):
        net.tick_all()
        net.stabilize()
    net.heal()
    for _ in range(40):
        net.tick_all()
        net.stabilize()
    assert net.leader() == 1
    assert all(net.node(i).term == term for i in net.ids)
    assert net.node(3).leader == 1


def test_rejoining_node_without_prevote_is_ignored_by_check_quorum_lease(
    make_net: MakeNet,
) -> None:
    """Thesis §9.6 (§4.2.3): with CheckQuorum, servers that heard from the leader within the
    minimum election timeout ignore RequestVote from a node whose term ran ahead, so the
    leader keeps its term."""
    net = make_net(3, pre_vote=False, check_quorum=True)
    elect(net, 1)
    term = net.node(1).term
    net.isolate(3)
    for _ in range(60):
        net.tick_all()
        net.stabilize()
    assert net.node(3).term > term  # without PreVote the isolated node's term runs ahead
    net.heal()
    net.campaign(3)
    net.stabilize()
    assert net.node(1).role is Role.LEADER
    assert net.node(1).term == term
    assert net.node(2).term == term


def test_leader_without_quorum_steps_down(make_net: MakeNet) -> None:
    """Thesis §9.6 CheckQuorum: a leader that has not heard from a quorum within an election
    timeout steps down (and so stops accepting commands)."""
    net = make_net(3)
    elect(net, 1)
    net.isolate(1)
    min_ticks = net.node(1).config.election_timeout_ticks_min
    net.tick(1, min_ticks - 1)
    assert net.node(1).role is Role.LEADER
    net.tick(1, min_ticks + 1)
    assert net.node(1).role is Role.FOLLOWER
    assert net.node(1).leader == NO_NODE
    with pytest.raises(NotLeader):
        net.node(1).propose(b"x")


def test_leader_with_quorum_stays(make_net: MakeNet) -> None:
    """CheckQuorum does not depose a leader that hears from a majority (one follower down)."""
    net = make_net(3)
    elect(net, 1)
    net.crash(3)
    for _ in range(100):
        net.tick_all()
        net.stabilize()
    assert net.leader() == 1


def test_no_leader_without_quorum(make_net: MakeNet) -> None:
    """§5.2: no node is elected while a majority is unreachable, however long we wait."""
    net = make_net(5)
    elect(net, 1)
    net.partition([1, 2], [3], [4], [5])
    for _ in range(300):
        net.tick_all()
        net.stabilize()
    assert net.leaders() == []


def test_new_leader_elected_after_leader_cut_off(make_net: MakeNet) -> None:
    """§5.2: when the leader is cut off, the majority side elects a new leader in a later
    term; when the old leader returns it follows the new one."""
    net = make_net(3)
    elect(net, 1)
    net.isolate(1)
    for _ in range(60):
        net.tick_all()
        net.stabilize()
    new = net.leader()
    assert new in (2, 3)
    net.heal()
    for _ in range(5):
        net.tick_all()
        net.stabilize()
    assert net.leaders() == [new]
    assert net.node(1).leader == new


def test_lease_ignores_vote_request_with_higher_term() -> None:
    """Thesis §9.6: a follower that heard from a leader within the minimum election timeout
    neither grants nor adopts the term of a RequestVote; after the timeout it does."""
    core = make_core(term=1)
    drain(core)
    core.step(AppendEntries(1, 2, 1, 0, 0))
    drain(core)
    core.step(RequestVote(5, 3, 1, 0, 0))
    assert core.term == 1
    assert sent(core) == []
    for _ in range(core.config.election_timeout_ticks_min):
        core.tick()
        if core.role is not Role.FOLLOWER:
            break
    drain(core)
    core.step(RequestVote(5, 3, 1, 0, 0))
    assert core.term == 5
    assert sent(core) == [RequestVoteResponse(5, 1, 3, True)]


def test_prevote_does_not_change_voter_state() -> None:
    """Thesis §9.6: a pre-vote request changes neither the voter's term nor its vote; the
    grant names the prospective term."""
    core = make_core(term=1)
    drain(core)
    core.step(RequestVote(2, 3, 1, 0, 0, pre_vote=True))
    assert (core.term, core.vote) == (1, NO_NODE)
    readies = drain(core)
    assert readies[0].hard_state is None
    assert list(readies[0].messages) == [RequestVoteResponse(2, 1, 3, True, True)]


def test_precandidate_becomes_candidate_only_after_prevote_quorum() -> None:
    """Thesis §9.6: the term is incremented only after a majority granted the pre-vote."""
    core = make_core(term=1)
    core.campaign()
    assert (core.role, core.term) == (Role.PRE_CANDIDATE, 1)
    assert [type(m) for m in sent(core)] == [RequestVote, RequestVote]
    core.step(RequestVoteResponse(2, 2, 1, True, True))
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 2, 1)
    votes = sent(core)
    assert all(isinstance(m, RequestVote) and not m.pre_vote and m.term == 2 for m in votes)


def test_leadership_transfer(make_net: MakeNet) -> None:
    """Thesis §3.10: the leader catches the target up and sends TimeoutNow; the target wins
    at once despite the other followers' leases; proposals are refused meanwhile."""
    net = make_net(3)
    elect(net, 1)
    net.propose(1, b"a", b"b")
    net.cut(1, 3)
    net.stabilize()
    net.heal()
    net.node(1).transfer_leadership(3)
    with pytest.raises(ProposalDropped):
        net.node(1).propose(b"c")
    net.tick(1)  # heartbeat: 3 catches up, then gets TimeoutNow
    net.stabilize()
    assert net.leader() == 3
    assert net.node(1).leader == 3
    assert net.applied_data(3) == [b"a", b"b"]


def test_transfer_to_unknown_node_is_refused() -> None:
    """transfer_leadership names a bad target clearly instead of waiting forever."""
    core = make_core(pre_vote=False)
    with pytest.raises(NotLeader):
        core.transfer_leadership(2)
    become_leader(core)
    with pytest.raises(ValueError, match="not a voter"):
        core.transfer_leadership(9)


def test_a_refused_vote_request_of_a_newer_term_does_not_restart_the_election_timer() -> None:
    """Figure 2 (Followers): only the current leader's AppendEntries or a vote this node grants
    restart its election timer. A newer term's vote request that it refuses (the candidate's
    log is behind) moves it to that term, but its timer runs on: otherwise candidates that can
    never win, taking turns, keep the one node that could win from ever campaigning, and no
    leader is elected (found by the swarm: seed 17005, PreVote off, timeouts of 40 to 44
    ticks). A vote it grants does restart the timer."""
    def follower() -> RaftCore:
        return make_core(1, term=1, log_terms=[1, 1, 1], pre_vote=False,
                         election_timeout_ticks_min=10, election_timeout_ticks_max=12)

    refused, granted = follower(), follower()
    for core in (refused, granted):
        drain(core)
        for _ in range(9):  # one tick short of the shortest timeout
            core.tick()
        assert core.role is Role.FOLLOWER
    refused.step(RequestVote(5, 2, 1, 1, 1))  # its log ends before ours: refused
    granted.step(RequestVote(5, 2, 1, 3, 1))  # as long as ours: granted
    assert [m.granted for m in sent(refused) if isinstance(m, RequestVoteResponse)] == [False]
    assert [m.granted for m in sent(granted) if isinstance(m, RequestVoteResponse)] == [True]
    assert refused.term == granted.term == 5
    for core in (refused, granted):
        for _ in range(3):  # 12 ticks since the start, 3 since the request
            core.tick()
    assert refused.role is Role.CANDIDATE and refused.term == 6
    assert granted.role is Role.FOLLOWER and granted.term == 5
