"""ReadIndex (thesis §6.4): linearizable reads confirmed by a heartbeat round, never by a
leader cut off from its quorum."""

from __future__ import annotations

from collections.abc import Callable

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    ReadIndexRequest,
    ReadState,
    Role,
)
from tests.raftlib.core.network import Network, ack_all, become_leader, drain, make_core, sent

MakeNet = Callable[..., Network]
NO_PREVOTE = {"pre_vote": False, "check_quorum": False}


def test_read_index_confirmed_by_quorum_heartbeat_round() -> None:
    """§6.4: the leader records its commit index, sends a heartbeat round carrying the read's
    context, and answers once a quorum (itself included) echoed it."""
    core = make_core(voters=(1, 2, 3, 4, 5), **NO_PREVOTE)
    ack_all(core, become_leader(core))
    drain(core)
    core.read_index(7)
    ready = drain(core)[0]
    assert ready.read_states == ()
    beats = [m for m in ready.messages if isinstance(m, AppendEntries)]
    assert [m.dst for m in beats] == [2, 3, 4, 5]
    assert all(m.read_ctx == 1 and m.entries == () for m in beats)
    ack_all(core, beats[:1])
    assert [r for r in drain(core) for r in r.read_states] == []  # 2 of 5: not yet
    ack_all(core, beats[1:2])
    states = [s for r in drain(core) for s in r.read_states]
    assert states == [ReadState(7, core.commit_index)]


def test_read_index_waits_for_commit_in_own_term() -> None:
    """§6.4: a new leader answers reads only after committing an entry of its own term (its
    commit index may lag the cluster's until then)."""
    core = make_core(term=1, log_terms=[1, 1], **NO_PREVOTE)
    appends = become_leader(core)
    core.read_index(1)
    beats = [m for m in sent(core) if isinstance(m, AppendEntries)]
    # Followers confirm leadership (echo read_ctx) but have not stored the NOOP yet.
    for beat in beats:
        core.step(AppendEntriesResponse(beat.term, beat.dst, 1, True, 2, read_ctx=beat.read_ctx,
                                        stream=beat.stream))
    readies = drain(core)
    assert [s for r in readies for s in r.read_states] == []
    # The heartbeats' answers started a new stream: the NOOP goes out again in it (the first
    # appends' answers are stale now and count for nothing).
    resent = [m for r in readies for m in r.messages if isinstance(m, AppendEntries)]
    ack_all(core, [*appends, *resent])
    assert core.commit_index == 3
    assert [s for r in drain(core) for s in r.read_states] == [ReadState(1, 3)]


def test_read_index_at_least_every_acknowledged_write(make_net: MakeNet) -> None:
    """Linearizability: a read issued after a write was acknowledged gets a read index at or
    beyond that write."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    index = net.propose(1, b"w")
    net.stabilize()
    assert net.applied_data(1) == [b"w"]
    net.read_index(1, 42)
    net.stabilize()
    assert net.read_states[1] == [ReadState(42, index)]


def test_leader_cut_off_from_quorum_never_emits_read_state(make_net: MakeNet) -> None:
    """§6.4: a leader partitioned from its quorum can never confirm a read, even while it
    still believes it leads; the read is dropped when it steps down (CheckQuorum)."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.isolate(1)
    net.read_index(1, 5)
    for _ in range(30):
        net.tick_all()
        net.stabilize()
    assert net.read_states[1] == []
    assert net.dropped_reads[1] == [5]
    assert net.node(1).role is Role.FOLLOWER


def test_deposed_leader_without_check_quorum_never_confirms_read(make_net: MakeNet) -> None:
    """§6.4: even without CheckQuorum, a stale leader (a newer leader exists) cannot gather a
    quorum of acknowledgements for a read; it learns the new term and drops the read."""
    net = make_net(3, **NO_PREVOTE)
    net.campaign(1)
    net.stabilize()
    net.isolate(1)
    net.campaign(2)
    net.stabilize()
    net.propose(2, b"newer")
    net.stabilize()
    net.read_index(1, 9)
    for _ in range(5):
        net.tick(1)
        net.stabilize()
    assert net.node(1).role is Role.LEADER  # still believes it leads...
    assert net.read_states[1] == []  # ...but never answers the read
    net.heal()
    net.tick(1)
    net.stabilize()
    assert net.read_states[1] == []
    assert net.dropped_reads[1] == [9]
    assert net.node(1).role is Role.FOLLOWER


def test_follower_forwards_read_index_to_leader(make_net: MakeNet) -> None:
    """§6.4: a follower asks the leader for a read index and serves the read once it has
    applied up to it."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.propose(1, b"w")
    net.stabilize()
    net.read_index(2, 3)
    queued = [m for m in net.queue if isinstance(m, ReadIndexRequest)]
    assert [(m.src, m.dst, m.request_id) for m in queued] == [(2, 1, 3)]
    net.stabilize()
    assert net.read_states[2] == [ReadState(3, 2)]
    assert net.applied[2][-1].index >= 2


def test_read_without_known_leader_is_dropped() -> None:
    """A node that knows no leader cannot serve a read: it is dropped at once for retry."""
    core = make_core()
    core.read_index(4)
    (ready,) = drain(core)
    assert ready.dropped_reads == (4,)
    assert ready.read_states == ()


def test_forwarded_read_dropped_when_leader_changes(make_net: MakeNet) -> None:
    """A read forwarded to a leader that is then replaced is dropped, not left waiting."""
    net = make_net(3)
    net.campaign(1)
    net.stabilize()
    net.isolate(1)
    net.read_index(2, 8)
    net.stabilize()
    for _ in range(40):
        net.tick_all()
        net.stabilize()
    assert net.leader() in (2, 3)
    assert net.dropped_reads[2] == [8]
    assert net.read_states[2] == []


def test_single_node_read_index_needs_no_round_trip() -> None:
    """A one-node cluster is its own quorum: a read is answered once its NOOP committed."""
    core = make_core(voters=(1,))
    core.campaign()
    core.read_index(1)
    states = [s for r in drain(core) for s in r.read_states]
    assert states == [ReadState(1, 1)]
    assert [m for m in sent(core)] == []
