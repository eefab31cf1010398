"""Lease reads (thesis §6.4.1, raftlib/core/lease.py): a leader that a quorum acknowledged
within the lease answers reads at its commit index with no heartbeat round; the lease counts
from when the acknowledged round was sent, is shorter than the election timeout by the drift
bound, and does not exist before a quorum acknowledged a round of the leader's term, after it
stepped down, or once a leadership transfer started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Message,
    RaftCore,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Role,
)
from raftlib.core.lease import LEASE_ROUNDS_MAX, Lease
from raftlib.errors import ConfigError
from tests.raftlib.core.network import Network, ack_all, become_leader, drain, make_core, sent

MakeNet = Callable[..., Network]
# Election timeout min 10 ticks, drift 3: the lease is 7 ticks. A heartbeat every tick.
LEASE: dict[str, Any] = {"lease_reads": True, "lease_drift_ticks": 3,
                         "election_timeout_ticks_min": 10, "election_timeout_ticks_max": 20}
LEASE_TICKS = 7


def _beats(msgs: list[Message]) -> list[AppendEntries]:
    return [m for m in msgs if isinstance(m, AppendEntries)]


def _leader(voters: tuple[int, ...] = (1, 2, 3), **config: Any) -> RaftCore:
    """A leader whose no-op is committed (acknowledged by every follower)."""
    core = make_core(voters=voters, **{**LEASE, **config})
    ack_all(core, become_leader(core))
    drain(core)
    assert core.commit_index == core.last_index
    return core


def _heartbeat_round(core: RaftCore) -> list[AppendEntries]:
    """Tick once (a heartbeat every tick) and return the round that went out."""
    core.tick()
    beats = _beats(sent(core))
    assert beats and all(b.read_ctx == beats[0].read_ctx for b in beats)
    return beats


def _read(core: RaftCore, request_id: int) -> tuple[list[ReadState], list[AppendEntries]]:
    core.read_index(request_id)
    readies = drain(core)
    states = [s for r in readies for s in r.read_states]
    return states, _beats([m for r in readies for m in r.messages])


# --- settings ----------------------------------------------------------------------------------


def test_lease_reads_are_off_by_default() -> None:
    config = CoreConfig(node_id=1, voters=(1,))
    assert config.lease_reads is False
    assert config.election_timeout_ticks_min - config.lease_drift_ticks > 0


def test_lease_reads_require_check_quorum() -> None:
    with pytest.raises(ConfigError, match=r"^CoreConfig\.lease_reads requires check_quorum"):
        CoreConfig(node_id=1, voters=(1,), lease_reads=True, check_quorum=False)


def test_the_lease_must_be_longer_than_zero_ticks() -> None:
    with pytest.raises(ConfigError, match=r"^CoreConfig\.lease_drift_ticks must be < "
                                          r"election_timeout_ticks_min"):
        CoreConfig(node_id=1, voters=(1,), lease_reads=True, heartbeat_interval_ticks=1,
                   election_timeout_ticks_min=4, election_timeout_ticks_max=8,
                   lease_drift_ticks=4)
    # The same numbers are fine while lease reads are off: the drift bound is then unused.
    CoreConfig(node_id=1, voters=(1,), heartbeat_interval_ticks=1, election_timeout_ticks_min=4,
               election_timeout_ticks_max=8, lease_drift_ticks=4)


def test_the_drift_bound_is_a_positive_number_of_ticks() -> None:
    with pytest.raises(ConfigError, match=r"^CoreConfig\.lease_drift_ticks must be an integer"):
        CoreConfig(node_id=1, voters=(1,), lease_drift_ticks=0)


# --- granting ----------------------------------------------------------------------------------


def test_a_leader_a_quorum_acknowledged_answers_a_read_without_a_heartbeat_round() -> None:
    core = _leader(voters=(1, 2, 3, 4, 5))
    beats = _heartbeat_round(core)
    ack_all(core, beats[:2])  # nodes 2 and 3: with the leader, 3 of 5
    assert core.lease_ticks_left() == LEASE_TICKS
    states, round_trip = _read(core, 7)
    assert states == [ReadState(7, core.commit_index)]
    assert round_trip == []  # answered at once: no heartbeat round for it
    assert core.lease_reads_served == 1


def test_a_minority_of_acknowledgements_grants_no_lease() -> None:
    core = _leader(voters=(1, 2, 3, 4, 5))
    ack_all(core, _heartbeat_round(core)[:1])  # 2 of 5
    assert core.lease_ticks_left() == 0
    states, round_trip = _read(core, 7)
    assert states == []
    assert round_trip and all(b.read_ctx for b in round_trip)  # the ReadIndex round instead


def test_lease_reads_off_always_take_a_read_index_round() -> None:
    core = _leader(lease_reads=False)
    ack_all(core, _heartbeat_round(core))
    assert core.lease_ticks_left() == 0
    states, round_trip = _read(core, 7)
    assert states == [] and round_trip


def test_a_forwarded_read_is_answered_at_once_under_the_lease() -> None:
    core = _leader()
    ack_all(core, _heartbeat_round(core))
    core.step(ReadIndexRequest(core.term, 2, 1, 42))
    msgs = sent(core)
    assert msgs == [ReadIndexResponse(core.term, 1, 2, 42, core.commit_index)]


def test_a_lease_read_waits_for_an_entry_of_the_leaders_term_to_commit() -> None:
    """Same condition as ReadIndex (thesis §6.4 step 1): before its no-op commits, a new
    leader's commit index may be behind the cluster's."""
    core = make_core(term=1, log_terms=[1, 1], **LEASE)
    become_leader(core)  # its no-op (index 3) is not acknowledged yet
    beats = _heartbeat_round(core)
    for beat in beats:  # they echo the round but do not hold the no-op yet
        core.step(AppendEntriesResponse(beat.term, beat.dst, 1, True, 2, read_ctx=beat.read_ctx))
    assert core.lease_ticks_left() > 0 and core.commit_index == 0
    states, round_trip = _read(core, 5)
    assert states == [] and round_trip  # the ReadIndex path, which waits for the commit


# --- expiry ------------------------------------------------------------------------------------


def test_the_lease_ends_lease_ticks_after_the_acknowledged_round_was_sent() -> None:
    core = _leader()
    ack_all(core, _heartbeat_round(core))
    for left in range(LEASE_TICKS - 1, 0, -1):
        _heartbeat_round(core)  # sent, never acknowledged
        assert core.lease_ticks_left() == left
        assert _read(core, 100 + left)[0] != []
    _heartbeat_round(core)
    assert core.lease_ticks_left() == 0
    states, round_trip = _read(core, 1)
    assert states == [] and round_trip


def test_the_lease_counts_from_when_the_round_was_sent_not_when_acks_arrived() -> None:
    core = _leader()
    late = _heartbeat_round(core)
    for _ in range(4):
        _heartbeat_round(core)  # lost
    ack_all(core, late)  # the acknowledgements of the round sent 4 ticks ago arrive now
    assert core.lease_ticks_left() == LEASE_TICKS - 4


def test_a_read_index_round_renews_no_lease_beyond_the_heartbeat_before_it() -> None:
    """A read_ctx created by a ReadIndex read is not stamped: its acknowledgement counts from
    the heartbeat round before it, an earlier start (never a later one)."""
    core = _leader(lease_reads=True)
    _heartbeat_round(core)  # stamped, not acknowledged
    core.tick()
    core.tick()  # two more rounds, lost
    drain(core)
    # No lease now (nothing acknowledged): this read takes a ReadIndex round of its own.
    states, round_trip = _read(core, 9)
    assert states == []
    ack_all(core, round_trip)
    assert [s.request_id for r in drain(core) for s in r.read_states] == [9]
    # Its round was created after the last stamped heartbeat (2 ticks ago): the lease counts
    # from that heartbeat.
    assert core.lease_ticks_left() == LEASE_TICKS


# --- void --------------------------------------------------------------------------------------


def test_no_lease_before_a_quorum_acknowledged_a_round_of_the_new_term() -> None:
    core = make_core(**LEASE)
    ack_all(core, become_leader(core))  # the no-op's appends carry no stamped round
    drain(core)
    assert core.commit_index == core.last_index
    assert core.lease_ticks_left() == 0
    assert _read(core, 1)[0] == []
    ack_all(core, _heartbeat_round(core))
    assert core.lease_ticks_left() == LEASE_TICKS


def test_the_lease_is_void_once_the_leader_steps_down() -> None:
    core = _leader()
    ack_all(core, _heartbeat_round(core))
    assert core.lease_ticks_left() > 0
    core.step(AppendEntriesResponse(core.term + 1, 2, 1, False))
    assert core.role is Role.FOLLOWER
    assert core.lease_ticks_left() == 0


def test_a_lease_of_an_earlier_term_does_not_carry_into_the_next() -> None:
    """Stepped down and elected again: the old term's rounds count for nothing, even with
    acknowledgements that echo a sequence number from before."""
    core = _leader()
    old = _heartbeat_round(core)
    ack_all(core, old)
    core.step(AppendEntriesResponse(core.term + 1, 2, 1, False))
    appends = become_leader(core)
    assert core.role is Role.LEADER
    ack_all(core, appends)
    drain(core)
    assert core.lease_ticks_left() == 0
    assert _read(core, 3)[0] == []


def test_the_lease_is_void_for_the_rest_of_the_term_once_a_transfer_starts() -> None:
    """The successor's TimeoutNow makes voters grant at once: the lease's premise is gone."""
    core = _leader()
    ack_all(core, _heartbeat_round(core))
    core.transfer_leadership(2)
    assert core.lease_ticks_left() == 0
    for _ in range(12):  # the transfer is abandoned after an election timeout
        ack_all(core, _heartbeat_round(core))
    assert core.role is Role.LEADER
    assert core.lease_ticks_left() == 0
    assert _read(core, 4)[0] == []


def test_a_single_voter_holds_its_own_lease() -> None:
    core = _leader(voters=(1,))
    core.tick()
    drain(core)
    assert core.lease_ticks_left() == LEASE_TICKS
    assert _read(core, 1)[0] == [ReadState(1, core.commit_index)]


# --- a restarted voter ------------------------------------------------------------------------


def test_a_restarted_voter_refuses_votes_for_an_election_timeout(make_net: MakeNet) -> None:
    """A restart forgets which leader this node acknowledged, not the lease it granted that
    leader: with lease reads on it refuses (pre)votes for election_timeout_ticks_min ticks,
    as if it had just heard from it."""
    net = make_net(3, **LEASE)
    net.tick_all(10)  # a fresh cluster refuses votes for its first election timeout
    net.campaign(1)
    net.stabilize()
    assert net.leader() == 1
    net.tick(1)  # a heartbeat round, acknowledged by 2 and 3: node 1 holds a lease
    net.stabilize()
    assert net.node(1).lease_ticks_left() == LEASE_TICKS
    net.isolate(1)
    net.crash(2)
    net.restart(2)
    net.campaign(3)  # 3 heard from 1 too, but an operator (or its timer) makes it campaign
    net.stabilize()
    assert net.node(3).role is not Role.LEADER  # 2 refused: 1's lease may still run
    net.tick(2, 10)
    net.tick(3, 10)
    net.campaign(3)
    net.stabilize()
    assert net.node(3).role is Role.LEADER


def test_lease_reads_off_a_restarted_voter_votes_at_once(make_net: MakeNet) -> None:
    net = make_net(3, **{**LEASE, "lease_reads": False})
    net.campaign(1)
    net.stabilize()
    assert net.leader() == 1
    net.isolate(1)
    net.crash(2)
    net.restart(2)
    net.campaign(3)
    net.stabilize()
    assert net.node(3).role is Role.LEADER


# --- the rounds it keeps -----------------------------------------------------------------------


def test_rounds_older_than_the_lease_are_forgotten() -> None:
    core = _leader()
    for _ in range(50):
        ack_all(core, _heartbeat_round(core)[:1])
    assert core.role is Role.LEADER
    assert len(core._lease.rounds) <= LEASE_TICKS


def test_rounds_of_an_earlier_term_never_count() -> None:
    lease = Lease()
    lease.stamp(1, 5)
    assert lease.ticks_left(1, 5, 10) == 10
    assert lease.ticks_left(2, 5, 10) == 0
    lease.stamp(2, 6)
    assert list(lease.rounds) == [(6, 0)]


def test_lease_rounds_are_bounded_and_ordered() -> None:
    lease = Lease()
    for seq in range(1, LEASE_ROUNDS_MAX + 10):
        lease.stamp(1, seq)
    lease.check()
    assert len(lease.rounds) == LEASE_ROUNDS_MAX
    with pytest.raises(AssertionError, match="stamped after"):
        lease.stamp(1, 5)


# --- the safety argument, on a scripted network with skewed clocks -----------------------------


def _skewed_run(make_net: MakeNet, leader_period: int, follower_period: int,
                drift: int, steps: int = 500) -> list[str]:
    """Whoever leads at step 150 is cut off, and from then on ticks every ``leader_period``
    time steps while the others tick every ``follower_period`` (phases staggered). Returns
    the moments when another node led while the cut-off leader still held a lease."""
    # Every election timeout exactly the minimum: followers campaign at the earliest moment.
    net = make_net(3, **{**LEASE, "lease_drift_ticks": drift, "election_timeout_ticks_max": 11})
    periods = dict.fromkeys(net.ids, follower_period)
    old = 0
    violations: list[str] = []
    for t in range(1, steps):
        if t == 150:
            old = net.leader() or 0
            assert old, "no leader before the cut"
            net.isolate(old)
            periods[old] = leader_period
        for node_id, period in periods.items():
            if (t + node_id) % period == 0:
                net.tick(node_id)
        net.stabilize()
        if old and net.node(old).role is Role.LEADER and net.node(old).lease_ticks_left() > 0:
            rivals = [n for n in net.ids if n != old and net.node(n).role is Role.LEADER]
            if rivals:
                violations.append(f"t={t}: node {rivals[0]} leads while node {old} has "
                                  f"{net.node(old).lease_ticks_left()} lease ticks left")
    assert any(net.node(n).role is Role.LEADER for n in net.ids if n != old), "no new leader"
    return violations


def test_no_rival_leader_while_the_lease_lasts_under_skew_within_the_bound(
    make_net: MakeNet,
) -> None:
    """Leader ticks 9 steps apart, followers 7: ratio 9/7, the most (min - 1) / (min - drift)
    covers with drift 3."""
    assert _skewed_run(make_net, leader_period=9, follower_period=7, drift=3) == []


def test_a_drift_bound_too_small_for_the_skew_lets_a_rival_lead_within_the_lease(
    make_net: MakeNet,
) -> None:
    """The same run with drift 1 (ratio 9/7 > 9/9): the lease outlives the followers'
    refusal to vote, the hole lease reads must not have."""
    assert _skewed_run(make_net, leader_period=9, follower_period=7, drift=1) != []
