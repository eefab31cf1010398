"""Membership changes in the core, in the style of etcd-io/raft's confchange tests: the rules of
``raftlib.core.membership`` on their own, the joint quorum against a naive definition, and
scripted clusters that add, remove, promote and replace nodes while the safety checks of
``Network`` run on every step."""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftlib.core import quorum
from raftlib.core.membership import (
    Change,
    ChangeOp,
    apply_changes,
    decode_conf,
    encode_conf,
    leave_joint,
)
from raftlib.core.types import (
    AppendEntries,
    ConfState,
    EntryKind,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    Role,
    SnapshotMeta,
)
from raftlib.errors import ChangeInProgress, MembershipError, RaftError
from tests.raftlib.core.network import Network


def voter(node: int, address: str = "") -> Change:
    return Change(ChangeOp.ADD_VOTER, node, address)


def learner(node: int, address: str = "") -> Change:
    return Change(ChangeOp.ADD_LEARNER, node, address)


def remove(node: int) -> Change:
    return Change(ChangeOp.REMOVE, node)


def elect(net: Network, node: int = 1) -> None:
    net.campaign(node)
    net.stabilize()
    assert net.leader() == node


# --- the rules, on their own ----------------------------------------------------------------


def test_one_voter_changes_directly() -> None:
    conf = apply_changes(ConfState((1, 2, 3)), (voter(4, "h4"),))
    assert conf == ConfState((1, 2, 3, 4), (), (), ((4, "h4"),))


def test_two_voters_change_through_the_joint_configuration() -> None:
    conf = apply_changes(ConfState((1, 2, 3)), (voter(4), voter(5)))
    assert (conf.voters, conf.voters_outgoing) == ((1, 2, 3, 4, 5), (1, 2, 3))
    assert leave_joint(conf) == ConfState((1, 2, 3, 4, 5))


def test_replacing_a_voter_is_a_joint_change_and_keeps_the_old_address_until_left() -> None:
    start = ConfState((1, 2, 3), (), (), ((1, "a"), (2, "b"), (3, "c")))
    joint = apply_changes(start, (remove(3), voter(4, "d")))
    assert joint.voters == (1, 2, 4) and joint.voters_outgoing == (1, 2, 3)
    assert dict(joint.addresses)[3] == "c"
    assert dict(leave_joint(joint).addresses) == {1: "a", 2: "b", 4: "d"}


def test_learners_are_added_and_promoted_without_a_joint_step() -> None:
    conf = apply_changes(ConfState((1, 2, 3)), (learner(4),))
    assert conf.learners == (4,) and not conf.voters_outgoing
    promoted = apply_changes(conf, (voter(4),))
    assert promoted == ConfState((1, 2, 3, 4))


@pytest.mark.parametrize(
    ("start", "changes", "words"),
    [
        (ConfState((1, 2, 3)), (remove(9),), "not a member"),
        (ConfState((1,)), (remove(1),), "no voter"),
        (ConfState((1, 2, 3)), (voter(2),), "already a voter"),
        (ConfState((1, 2, 3), (4,)), (learner(4),), "already a learner"),
        (ConfState((1, 2, 3)), (learner(2),), "demoting"),
        (ConfState((1, 2, 3)), (), "at least one"),
        (ConfState((1, 2, 3, 4), (), (1, 2, 3)), (voter(5),), "joint"),
    ],
)
def test_a_change_that_makes_no_sense_is_refused(
    start: ConfState, changes: tuple[Change, ...], words: str
) -> None:
    with pytest.raises(MembershipError, match=words):
        apply_changes(start, changes)


def test_leaving_a_configuration_that_is_not_joint_is_refused() -> None:
    with pytest.raises(MembershipError, match="not joint"):
        leave_joint(ConfState((1, 2, 3)))


def test_a_configuration_entry_round_trips_and_garbage_is_refused() -> None:
    conf = ConfState((1, 2, 4), (5,), (1, 2, 3), ((4, "x:1"),))
    assert decode_conf(encode_conf(conf)) == conf
    with pytest.raises(MembershipError):
        decode_conf(b"\xc1")
    with pytest.raises(MembershipError, match="both voters and learners"):
        decode_conf(encode_conf(ConfState((1, 2), (2,))))


# --- the joint quorum against its definition ------------------------------------------------


def _naive_committed(voters: tuple[int, ...], outgoing: tuple[int, ...],
                     match: dict[int, int]) -> int:
    """The largest index held by a strict majority of each (non-empty) set, by brute force."""
    best = 0
    for index in sorted(set(match.values()) | {0}):
        sets = [s for s in (voters, outgoing) if s]
        if all(2 * sum(1 for v in s if match.get(v, 0) >= index) > len(s) for s in sets):
            best = max(best, index)
    return best


def _naive_vote(voters: tuple[int, ...], outgoing: tuple[int, ...],
                votes: dict[int, bool]) -> quorum.VoteResult:
    """WON if every completion wins, LOST if none can, PENDING otherwise (by enumeration)."""
    pending = [v for v in set(voters) | set(outgoing) if v not in votes]
    outcomes = set()
    for filled in itertools.product((True, False), repeat=len(pending)):
        full = {**votes, **dict(zip(pending, filled, strict=True))}
        won = all(2 * sum(1 for v in s if full.get(v)) > len(s) for s in (voters, outgoing) if s)
        outcomes.add(won)
    if outcomes == {True}:
        return quorum.VoteResult.WON
    if outcomes == {False}:
        return quorum.VoteResult.LOST
    return quorum.VoteResult.PENDING


_ids = st.lists(st.integers(1, 7), min_size=1, max_size=5, unique=True).map(tuple)


@given(_ids, st.one_of(st.just(()), _ids), st.dictionaries(st.integers(1, 7), st.integers(0, 9)))
def test_joint_commit_index_is_the_largest_held_by_both_majorities(
    voters: tuple[int, ...], outgoing: tuple[int, ...], match: dict[int, int]
) -> None:
    assert quorum.joint_committed_index(voters, outgoing, match) == _naive_committed(
        voters, outgoing, match
    )


@given(_ids, st.one_of(st.just(()), _ids), st.dictionaries(st.integers(1, 7), st.booleans()))
def test_joint_vote_needs_both_majorities(
    voters: tuple[int, ...], outgoing: tuple[int, ...], votes: dict[int, bool]
) -> None:
    assert quorum.joint_vote_result(voters, outgoing, votes) is _naive_vote(
        voters, outgoing, votes
    )


@given(st.lists(st.tuples(st.sampled_from(list(ChangeOp)), st.integers(1, 6)), max_size=12))
def test_every_reachable_configuration_is_valid(steps: list[tuple[ChangeOp, int]]) -> None:
    """Whatever sequence of changes is asked for, each one either is refused with
    MembershipError or yields a configuration that passes every check; joint ones only from
    changes of more than one voter, and they can always be left."""
    conf = ConfState((1, 2, 3))
    for op, node in steps:
        try:
            new = apply_changes(conf, (Change(op, node),))
        except MembershipError:
            continue
        assert not new.voters_outgoing  # one change: never joint
        assert decode_conf(encode_conf(new)) == new
        conf = new
    assert conf.voters


# --- clusters -------------------------------------------------------------------------------


def test_an_added_voter_catches_up_and_counts_once_the_change_commits(
    make_net: Callable[..., Network],
) -> None:
    net = make_net(3)
    elect(net)
    net.propose(1, b"before")
    net.stabilize()
    net.add_node(4)
    net.change(1, voter(4))
    net.stabilize()
    for node in (1, 2, 3, 4):
        assert net.node(node).conf.voters == (1, 2, 3, 4), node
    assert net.applied_data(4) == [b"before"]
    # Now 1 and 4 are not a majority of four: with 2 and 3 cut off nothing commits.
    net.cut(1, 2)
    net.cut(1, 3)
    index = net.propose(1, b"x")
    net.stabilize()
    assert net.node(1).commit_index < index
    net.heal()
    net.tick(1, 2)
    net.stabilize()
    assert net.node(1).commit_index >= index


def test_a_learner_gets_the_log_but_its_acknowledgement_never_commits(
    make_net: Callable[..., Network],
) -> None:
    """A learner counted as a voter would let the leader commit with {leader, learner}: a
    minority of the voters (a zoo bug: learner-in-quorum)."""
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.change(1, learner(4))
    net.stabilize()
    assert net.node(1).conf.learners == (4,)
    net.cut(1, 2)
    net.cut(1, 3)
    index = net.propose(1, b"x")
    net.stabilize()
    assert [e.index for e in net.node(4).log_entries()][-1] == index  # it has it
    assert net.node(1).commit_index < index  # but 1 + learner is no quorum of {1, 2, 3}


def test_a_learner_never_campaigns(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.change(1, learner(4))
    net.stabilize()
    net.isolate(4)
    net.tick(4, 500)
    assert net.node(4).role is Role.FOLLOWER
    assert not [m for m in net.queue if isinstance(m, RequestVote)]


def test_a_joining_node_knows_no_configuration_and_never_campaigns(
    make_net: Callable[..., Network],
) -> None:
    net = make_net(3)
    net.add_node(4)
    net.tick(4, 500)
    assert net.node(4).conf.voters == () and net.node(4).role is Role.FOLLOWER
    assert not net.queue


def test_a_joint_change_needs_both_majorities_and_is_left_by_the_leader(
    make_net: Callable[..., Network],
) -> None:
    """Replace 2 and 3 by 4 and 5 in one change: the joint entry needs the old voters' majority
    as well as the new one; once it is committed the leader leaves the joint configuration by
    itself, and that entry (the new configuration alone) needs only the new voters."""
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.add_node(5)
    net.cut(1, 2)
    net.cut(1, 3)
    enter = net.change(1, remove(2), remove(3), voter(4), voter(5))
    net.stabilize()
    # {1, 4, 5} is a majority of the new voters but only 1 of {1, 2, 3}.
    assert net.node(1).commit_index < enter
    assert net.node(1).conf == ConfState((1, 2, 3))
    net.heal()
    net.tick(1, 2)  # a heartbeat round finds 2 and 3 again
    for _ in range(200):
        if net.node(1).conf.voters_outgoing:
            break
        net.deliver(1)
    assert net.node(1).conf == ConfState((1, 4, 5), (), (1, 2, 3))
    leave = net.node(1).last_index
    assert leave > enter
    assert net.node(1).entries(leave, leave)[0].kind is EntryKind.CONF
    net.cut(1, 2)
    net.cut(1, 3)
    net.stabilize()
    assert net.node(1).commit_index >= leave
    for node in (1, 4, 5):
        assert net.node(node).conf == ConfState((1, 4, 5)), node


def test_a_new_leader_accepts_no_change_before_its_own_entry_commits(
    make_net: Callable[..., Network],
) -> None:
    """The bug in the original single-server algorithm: a leader that changes the
    configuration before committing an entry of its term can build a second majority that
    does not overlap one an earlier leader's change used."""
    net = make_net(3)
    net.campaign(1)
    # Deliver the votes but not the acknowledgements of the leader's NOOP.
    while net.node(1).role is not Role.LEADER:
        net.deliver(1)
    net.drop_queued()
    with pytest.raises(ChangeInProgress, match="not taken effect"):
        net.node(1).propose_conf_change((voter(4),))
    net.tick(1, 2)
    net.stabilize()
    net.add_node(4)
    net.change(1, voter(4))  # accepted now


def test_one_change_at_a_time(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.add_node(5)
    net.node(1).propose_conf_change((learner(4),))
    with pytest.raises(ChangeInProgress):
        net.node(1).propose_conf_change((learner(5),))
    net.stabilize()
    net.change(1, learner(5))


def test_a_removed_leader_steps_down_and_never_campaigns_again(
    make_net: Callable[..., Network],
) -> None:
    net = make_net(3)
    elect(net)
    net.change(1, remove(1))
    net.stabilize()
    assert net.node(1).role is Role.FOLLOWER and not net.node(1).is_voter
    assert net.node(2).conf.voters == (2, 3)
    net.tick(1, 500)
    assert not [m for m in net.queue if isinstance(m, RequestVote)]
    # The rest time out and elect a leader among themselves.
    for _ in range(100):
        if net.leader() is not None:
            break
        net.tick_all(1)
        net.stabilize()
    leader = net.leader()
    assert leader in (2, 3)
    net.propose(leader, b"after")
    net.stabilize()
    assert net.applied_data(2)[-1] == net.applied_data(3)[-1] == b"after"


def test_the_voters_left_by_a_removed_leader_elect_without_it_even_if_it_dies_at_once(
    make_net: Callable[..., Network],
) -> None:
    """Seed 141 of a swarm mix: a leader committed the change that removed it and stepped
    down before any heartbeat told the others; then it died. Their latest configuration no
    longer has it, so they elect a leader without it (counting the configuration they had
    applied, which still needed it, left them without a leader for good)."""
    net = make_net(3)
    elect(net, 3)
    net.change(3, remove(2))
    net.stabilize()
    assert net.node(1).conf == ConfState((1, 3))
    # Joint {1, 3} -> {1, 2}, then the leader leaves it: 3 is in neither new voter set.
    net.change(3, remove(3), voter(2))
    for _ in range(500):
        if net.node(3).role is not Role.LEADER:
            break
        net.deliver(1)
    assert net.node(3).role is not Role.LEADER, "the removed leader did not step down"
    net.drop_queued()  # the heartbeat carrying the commit index to 1 and 2 is lost
    assert max(net.node(1).commit_index, net.node(2).commit_index) < net.node(3).commit_index
    net.crash(3)
    for _ in range(100):
        net.tick_all(1)
        net.stabilize()
        if net.leader() in (1, 2):
            break
    assert net.leader() in (1, 2), "no leader among the remaining voters"
    assert net.node(1).conf == net.node(2).conf == ConfState((1, 2))


def test_a_removed_follower_stops_campaigning(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.change(1, remove(3))
    net.stabilize()
    assert net.node(3).conf.voters == (1, 2)
    net.isolate(3)
    net.tick(3, 500)
    assert not [m for m in net.queue if m.src == 3]


def test_restart_replays_the_configuration_from_the_log(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.change(1, learner(4))
    net.stabilize()
    net.change(1, voter(4))
    net.stabilize()
    for node in (2, 4):
        net.crash(node)
        net.restart(node)
        net.stabilize()
        assert net.node(node).conf.voters == (1, 2, 3, 4), node


def test_a_snapshot_carries_the_configuration_to_a_joining_node() -> None:
    from raftlib.core import CoreConfig, RaftCore

    core = RaftCore(CoreConfig(node_id=4, voters=()), random.Random(0))
    assert not core.is_voter
    conf = ConfState((1, 2, 4), (), (), ((4, "h4"),))
    core.step(InstallSnapshot(3, 1, 4, SnapshotMeta(10, 3, conf)))
    assert core.conf == conf and core.is_voter
    rd = core.ready()
    assert rd.snapshot is not None and rd.snapshot.conf == conf


def test_transfer_to_a_learner_is_refused(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.change(1, learner(4))
    net.stabilize()
    with pytest.raises(ValueError, match="not a voter"):
        net.node(1).transfer_leadership(4)


def test_messages_from_a_member_we_have_not_learnt_of_are_handled(
    make_net: Callable[..., Network],
) -> None:
    """Node 4 was added while 3 was cut off; when 4 leads, 3 (still on the old
    configuration) must follow it rather than count its messages as invalid."""
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.cut(1, 3)
    net.cut(4, 3)
    net.change(1, voter(4))
    net.stabilize()
    assert net.node(3).conf.voters == (1, 2, 3)
    net.heal()
    net.node(1).transfer_leadership(4)
    net.stabilize()
    assert net.leader() == 4
    net.propose(4, b"y")
    net.stabilize()
    assert net.node(3).status().invalid_messages == 0
    assert net.applied_data(3)[-1] == b"y"
    assert net.node(3).conf.voters == (1, 2, 3, 4)


# --- random schedules -----------------------------------------------------------------------

_SEEDS = range(40)


@pytest.mark.parametrize("seed", _SEEDS)
def test_random_membership_changes_under_faults_keep_raft_safe(
    make_net: Callable[..., Network], seed: int
) -> None:
    """Random changes (learners, promotions, removals, joint replacements of two voters)
    among six possible nodes, with partitions, crashes, restarts and dropped messages. The
    network checks election safety, leader completeness and state machine safety after every
    step; at the end the cluster heals and must agree on one configuration."""
    rng = random.Random(seed)
    net = make_net(3, seed=seed)
    pool = [1, 2, 3, 4, 5, 6]
    for node in (4, 5, 6):
        net.add_node(node)
    for step in range(600):
        roll = rng.random()
        leader = net.leader()
        if roll < 0.15 and leader is not None:
            with contextlib.suppress(RaftError):
                net.propose(leader, f"{seed}-{step}".encode())
        elif roll < 0.40 and leader is not None:
            conf = net.node(leader).conf
            members = set(conf.voters) | set(conf.learners)
            outsiders = [n for n in pool if n not in members]
            choice = rng.random()
            changes: tuple[Change, ...]
            if choice < 0.3 and outsiders:
                changes = (learner(rng.choice(outsiders)),)
            elif choice < 0.5 and conf.learners:
                changes = (voter(rng.choice(conf.learners)),)
            elif choice < 0.7 and len(conf.voters) > 1:
                changes = (remove(rng.choice(conf.voters)),)
            elif outsiders and len(conf.voters) > 1:
                gone = rng.choice(conf.voters)
                new = rng.sample(outsiders, min(2, len(outsiders)))
                changes = (remove(gone), *(voter(n) for n in new))
            else:
                continue
            with contextlib.suppress(ChangeInProgress, MembershipError):
                net.change(leader, *changes)
        elif roll < 0.46:
            a, b = rng.sample(pool, 2)
            net.cut(a, b)
        elif roll < 0.52:
            net.heal()
        elif roll < 0.55:
            node = rng.choice(pool)
            if node not in net.down:
                net.crash(node)
        elif roll < 0.62 and net.down:
            net.restart(rng.choice(sorted(net.down)))
        elif roll < 0.66:
            net.drop_queued(lambda m: rng.random() < 0.3)
        elif roll < 0.85:
            net.deliver(rng.randint(1, 8))
        else:
            net.tick_all(rng.randint(1, 4))
    # Heal everything: one configuration, one leader, everyone's log agrees.
    net.heal()
    for node in sorted(net.down):
        net.restart(node)
    for _ in range(200):
        net.tick_all(1)
        net.stabilize()
        leader = net.leader()
        if leader is not None and not net.node(leader).change_pending \
                and not net.node(leader).conf.voters_outgoing:
            break
    leader = net.leader()
    assert leader is not None, f"seed {seed}: no leader after healing"
    final = net.node(leader).conf
    net.propose(leader, b"final")
    net.stabilize()
    for node in set(final.voters) | set(final.learners):
        assert net.node(node).conf == final, f"seed {seed}: node {node} disagrees"
        assert net.applied_data(node)[-1:] == [b"final"] or net.node(node).applied_index \
            < net.node(leader).commit_index, f"seed {seed}"
    net.check_log_matching()


def test_append_entries_are_sent_only_to_members(make_net: Callable[..., Network]) -> None:
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.propose(1, b"x")
    net.process(1)
    assert not [m for m in net.queue if isinstance(m, AppendEntries) and m.dst == 4]



def test_a_node_counts_as_a_voter_once_its_promotion_is_in_its_log(
    make_net: Callable[..., Network],
) -> None:
    """A learner whose log holds its promotion, not yet known committed, is a voter for every
    decision (elections and commits follow the latest configuration in the log): it grants votes
    and may campaign, so a cluster that needs it is never stuck waiting for it to apply."""
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.change(1, learner(4))
    net.stabilize()
    promotion = net.node(1).propose_conf_change((voter(4),))
    net.process(1)
    # Only node 4 gets the entry; nobody learns it committed.
    net.take(lambda m: not (isinstance(m, AppendEntries) and m.dst == 4))
    net.deliver()
    net.drop_queued()
    four = net.node(4)
    assert four.last_index >= promotion
    assert four.conf.learners == (4,) and four.is_voter
    # (transfer: past the lease it gives the leader it just heard from)
    four.step(RequestVote(9, 3, 4, four.last_index, four.log_entries()[-1].term, transfer=True))
    replies = [m for m in four.ready().messages if isinstance(m, RequestVoteResponse)]
    assert replies and replies[0].granted


def test_a_pending_configuration_counts_for_commits(make_net: Callable[..., Network]) -> None:
    """The swarm's seed 462 in miniature: a configuration change that is in the leader's log
    but not applied yet already needs its own majority for any later commit, so entries
    (a leave-joint among them) cannot be committed by the old voters alone."""
    net = make_net(3)
    elect(net)
    net.add_node(4)
    net.add_node(5)
    # Nodes 4 and 5 never answer: a majority of (1, 4, 5) is out of reach.
    net.filter = lambda m: m.dst not in (4, 5)
    # The joint change and an entry after it go out together, so one round of
    # acknowledgements from 2 and 3 covers both before the change took effect anywhere.
    net.node(1).propose_conf_change((remove(2), remove(3), voter(4), voter(5)))
    index = net.propose(1, b"x")
    net.stabilize()
    assert net.node(1).commit_index < index
    net.filter = None
    net.tick(1, 2)
    net.stabilize()
    assert net.node(1).commit_index >= index
